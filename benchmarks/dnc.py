"""Chapter 3 benchmarks: DNC training-step time, repeat-copy convergence, and the memory-reuse task.

Examples (the commands behind benchmarks/RESULTS.md, Chapter 3):

    python benchmarks/dnc.py speed                       # ms per training step, B=1 and B=32
    python benchmarks/dnc.py repeat-copy --seeds 0 1 2   # steps to < 0.1 bit/seq, deepmind/dnc defaults
    python benchmarks/dnc.py reuse --seeds 0             # DNC vs NTM at equal memory size

Timings are CPU *process* time with one thread (less sensitive to other processes on a shared machine than
wall time); the table prints the median and the minimum over the timed repeats.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mem_tutorial.models.dnc import DNC  # noqa: E402
from mem_tutorial.runtime import seed_everything  # noqa: E402


def time_training_step(batch: int, slots: int, word: int, reads: int, steps: int, hidden: int, bits: int,
                       repeats: int, warmup: int, compile_step: bool = False) -> list[float]:
    """Process-time seconds of one optimisation step (forward + backward + Adam), ``repeats`` times."""
    seed_everything(0)
    model = DNC(bits, bits, slots, word, reads, hidden)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.randint(0, 2, (batch, steps, bits)).float()
    target = torch.randint(0, 2, (batch, steps, bits)).float()
    forward = torch.compile(model) if compile_step else model

    def step() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        y, _ = forward(x)
        loss = F.binary_cross_entropy_with_logits(y, target)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        return loss

    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        step()
        times.append(time.process_time() - t0)
    return times


def cmd_speed(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    rows = []
    for batch in args.batch:
        times = time_training_step(batch, args.slots, args.word, args.reads, args.steps, args.hidden, args.bits,
                                   args.repeats, args.warmup, args.compile)
        med, best = 1000 * statistics.median(times), 1000 * min(times)
        rows.append((batch, med, best, med / batch))
    print(f"DNC training step (forward + backward + Adam), N={args.slots} W={args.word} R={args.reads} "
          f"T={args.steps} H={args.hidden} X=Y={args.bits}, threads={args.threads}, compile={args.compile}")
    print(f"{'B':>4} {'median ms/step':>15} {'min ms/step':>12} {'ms/sequence':>12}")
    for batch, med, best, per_seq in rows:
        print(f"{batch:>4} {med:>15.1f} {best:>12.1f} {per_seq:>12.2f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("speed", help="ms per training step")
    sp.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    sp.add_argument("--slots", type=int, default=128)
    sp.add_argument("--word", type=int, default=20)
    sp.add_argument("--reads", type=int, default=4)
    sp.add_argument("--steps", type=int, default=20, help="sequence length T")
    sp.add_argument("--hidden", type=int, default=64)
    sp.add_argument("--bits", type=int, default=8, help="input and output size")
    sp.add_argument("--repeats", type=int, default=20)
    sp.add_argument("--warmup", type=int, default=3)
    sp.add_argument("--threads", type=int, default=1)
    sp.add_argument("--compile", action="store_true", help="wrap the model in torch.compile")
    sp.set_defaults(func=cmd_speed)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
