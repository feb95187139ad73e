"""Chapter 3 benchmarks: DNC training-step time, repeat-copy convergence, and the memory-reuse task.

Examples (the commands behind benchmarks/RESULTS.md, Chapter 3):

    python benchmarks/dnc.py speed                       # ms per training step, B=1 and B=32
    python benchmarks/dnc.py repeat-copy --seeds 0 1 2   # steps to < 0.1 bit/seq, deepmind/dnc defaults
    python benchmarks/dnc.py reuse --model dnc --seeds 0  # the reuse task (and --model ntm: same memory size)

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


def make_training_step(batch: int, slots: int, word: int, reads: int, steps: int, hidden: int, bits: int,
                       compile_step: bool = False, port_path: str | None = None):
    """One optimisation step (forward + backward + gradient clipping + Adam) as a closure."""
    seed_everything(0)
    if port_path:  # the public PyTorch port (ixaxaar/pytorch-dnc, PyPI "dnc" 1.1.0), for comparison
        model = _port_model(port_path, bits, slots, word, reads, hidden)
    else:
        model = DNC(bits, bits, slots, word, reads, hidden)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.randint(0, 2, (batch, steps, bits)).float()
    target = torch.randint(0, 2, (batch, steps, bits)).float()
    forward = torch.compile(model) if compile_step else model

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        y = forward(x)[0]
        loss = F.binary_cross_entropy_with_logits(y, target)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()

    return step


def time_steps(steps: list, repeats: int, warmup: int) -> list[list[float]]:
    """Process-time seconds per call of each closure; the closures are interleaved so that they share the
    machine's load equally (one call of each per round)."""
    for _ in range(warmup):
        for step in steps:
            step()
    times: list[list[float]] = [[] for _ in steps]
    for _ in range(repeats):
        for k, step in enumerate(steps):
            t0 = time.process_time()
            step()
            times[k].append(time.process_time() - t0)
    return times


def _port_model(path: str, bits: int, slots: int, word: int, reads: int, hidden: int) -> torch.nn.Module:
    """Wrap the public port so that ``model(x)[0]`` is its output. ``path`` holds a package ``portdnc`` with the
    port's ``dnc.py``, ``memory.py`` and ``util.py`` (its ``__init__`` imports FLANN/FAISS, so it is not used).
    Not shipped with the course; see benchmarks/RESULTS.md for how it was obtained."""
    sys.path.insert(0, path)
    from portdnc.dnc import DNC as PortDNC  # type: ignore

    class Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = PortDNC(bits, hidden, rnn_type="lstm", num_layers=1, nr_cells=slots, cell_size=word,
                               read_heads=reads, batch_first=True, gpu_id=-1)

        def forward(self, x):
            return self.net(x, (None, None, None), reset_experience=True)

    return Wrapped()


def cmd_speed(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    size = (args.slots, args.word, args.reads, args.steps, args.hidden, args.bits)
    names = ["mem_tutorial"] + (["public port"] if args.port_path else [])
    print(f"DNC training step (forward + backward + clip + Adam), N={args.slots} W={args.word} R={args.reads} "
          f"T={args.steps} H={args.hidden} X=Y={args.bits}, threads={args.threads}, compile={args.compile}; "
          f"{args.repeats} timed steps per model, interleaved")
    print(f"{'model':<14} {'B':>4} {'median ms/step':>15} {'min ms/step':>12} {'ms/sequence':>12}")
    for batch in args.batch:
        steps = [make_training_step(batch, *size, compile_step=args.compile)]
        if args.port_path:
            steps.append(make_training_step(batch, *size, port_path=args.port_path))
        results = time_steps(steps, args.repeats, args.warmup)
        medians = []
        for name, times in zip(names, results):
            med, best = 1000 * statistics.median(times), 1000 * min(times)
            medians.append(med)
            print(f"{name:<14} {batch:>4} {med:>15.1f} {best:>12.1f} {med / batch:>12.2f}")
        if len(medians) == 2:
            print(f"{'speed-up':<14} {batch:>4} {medians[1] / medians[0]:>14.2f}x")


def train_until(model, make_batch, steps: int, lr: float, eval_batch, eval_every: int, threshold: float,
                optimizer: str = "adam", clip: float = 10.0, log=None, on_eval=None) -> dict:
    """Train on fresh batches; every ``eval_every`` steps measure bits/sequence on ``eval_batch``.

    Returns a dict with ``converged_step`` (first evaluation below ``threshold``, or None), the eval curve
    and the final error. Loss: binary cross-entropy in bits per sequence (mean over the batch).
    """
    from mem_tutorial.tasks import bits_error, cross_entropy_bits

    if optimizer == "rmsprop":  # deepmind/dnc's train.py: RMSProp, lr 1e-4, eps 1e-10, global-norm clip 50
        opt = torch.optim.RMSprop(model.parameters(), lr=lr, eps=1e-10)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=lr)
    curve, converged = [], None
    t0 = time.process_time()
    for step in range(1, steps + 1):
        batch = make_batch()
        y = model(batch.inputs)[0]
        loss = cross_entropy_bits(y, batch.targets, batch.masks).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        if step % eval_every == 0 or step == steps:
            with torch.no_grad():
                err = float(bits_error(model(eval_batch.inputs)[0], eval_batch.targets, eval_batch.masks).mean())
            curve.append((step, err, float(loss.detach())))
            if on_eval is not None:  # e.g. save a checkpoint of the run so far
                on_eval(curve)
            if log:
                log(f"step {step:6d}  loss {float(loss.detach()):8.4f} bits/seq  eval error {err:7.4f} bits/seq")
            if err < threshold and converged is None:
                converged = step
                break
    return {"converged_step": converged, "curve": curve, "final_error": curve[-1][1],
            "cpu_s": time.process_time() - t0, "steps_run": curve[-1][0]}


def cmd_repeat_copy(args: argparse.Namespace) -> None:
    from mem_tutorial.tasks import repeat_copy_task

    torch.set_num_threads(1)
    results = []
    for seed in args.seeds:
        seed_everything(seed)
        gen = torch.Generator().manual_seed(seed)
        kw = dict(min_len=1, max_len=2, min_repeats=1, max_repeats=2, width=args.bits)
        eval_batch = repeat_copy_task(512, generator=torch.Generator().manual_seed(10_000 + seed), **kw)
        model = DNC(args.bits + 2, args.bits + 1, 16, 16, 4, 64)
        res = train_until(model, lambda: repeat_copy_task(16, generator=gen, **kw), args.max_steps, args.lr,
                          eval_batch, args.eval_every, 0.1, args.optimizer, args.clip,
                          log=lambda m, s=seed: print(f"[seed {s}] {m}", flush=True) if args.verbose else None)
        res["seed"] = seed
        results.append(res)
        print(f"seed {seed}: converged at step {res['converged_step']} (final error {res['final_error']:.4f} "
              f"bits/seq, {res['steps_run']} steps, {res['cpu_s']:.0f} CPU s)", flush=True)
        if args.out:
            Path(args.out).write_text(json.dumps(results, indent=1))


#: The reuse-task configuration used for the shipped checkpoint, the notebook and RESULTS.md: a key-value store of
#: 6 live items over 8 keys with 8-bit values; 2 rounds that delete 2-5 random items and store as many new ones;
#: then every live item is asked for. A memory of 6 slots must reuse the freed slots, which are out of write order,
#: and the 48 stored bits are more than the 32-unit controller learns to hold by itself.
REUSE_TASK = dict(slots=6, rounds=2, min_frees=2, max_frees=5, keys=8, width=8)
#: Both models get the same memory (6 x 16), the same LSTM controller (32) and one read and one write head.
REUSE_MEMORY = dict(slots=6, word=16, reads=1, hidden=32)


def reuse_io(task: dict) -> tuple[int, int]:
    """Input and output sizes of :func:`mem_tutorial.tasks.reuse.reuse_task` with this configuration."""
    return 2 + task["keys"] + task["width"], task["width"]


def build_reuse_model(kind: str, task: dict | None = None, slots: int | None = None, word: int | None = None,
                      reads: int | None = None, hidden: int | None = None, shift_range: int = 3) -> torch.nn.Module:
    """The DNC or the NTM for the reuse task, with the same memory (N x W), controller and read heads."""
    inputs, outputs = reuse_io(task or REUSE_TASK)
    N = slots or REUSE_MEMORY["slots"]
    W = word or REUSE_MEMORY["word"]
    R = reads or REUSE_MEMORY["reads"]
    H = hidden or REUSE_MEMORY["hidden"]
    if kind == "dnc":
        return DNC(inputs, outputs, memory_slots=N, word_size=W, read_heads=R, hidden_size=H)
    from mem_tutorial.models.ntm import NTM  # Chapter 2

    return NTM(input_size=inputs, output_size=outputs, memory_slots=N, memory_width=W, read_heads=R,
               controller_size=H, shift_range=shift_range)


def reuse_config(args: argparse.Namespace) -> tuple[dict, dict]:
    """The task and the memory of a ``reuse`` run: the defaults with the command line's overrides."""
    task, memory = dict(REUSE_TASK), dict(REUSE_MEMORY)
    for key in ("rounds", "min_frees", "max_frees", "keys", "width"):
        if getattr(args, key) is not None:
            task[key] = getattr(args, key)
    for key in ("word", "reads", "hidden"):
        if getattr(args, key) is not None:
            memory[key] = getattr(args, key)
    if args.slots is not None:  # the task's live items and the memory's slots change together
        task["slots"] = memory["slots"] = args.slots
    return task, memory


def cmd_reuse(args: argparse.Namespace) -> None:
    from mem_tutorial.tasks.reuse import reuse_task
    from mem_tutorial.train import History, save_checkpoint

    torch.set_num_threads(1)
    task, memory = reuse_config(args)
    print(f"reuse task {task}; {args.model} with memory {memory}"
          + (f", shift range {args.shift_range}" if args.model == "ntm" else ""), flush=True)
    for seed in args.seeds:
        seed_everything(seed)
        gen = torch.Generator().manual_seed(seed)
        eval_batch = reuse_task(512, generator=torch.Generator().manual_seed(10_000 + seed), **task)
        model = build_reuse_model(args.model, task, shift_range=args.shift_range, **memory)
        recipe = dict(seed=seed, batch_size=args.batch, lr=args.lr, clip=args.clip, optimizer="adam",
                      eval_every=args.eval_every, eval_batch=f"reuse_task(512, seed {10_000 + seed})")

        def save(curve, model=model, recipe=recipe):
            res = {"curve": curve, "model": args.model, "task": task, "memory": memory, "steps_run": curve[-1][0],
                   "final_error": curve[-1][1], "shift_range": args.shift_range if args.model == "ntm" else None,
                   **recipe}
            if args.out:
                Path(args.out).write_text(json.dumps(res, indent=1))
            if args.checkpoint:
                history = History()
                for step, err, loss in curve:
                    history.log(step, loss=loss, error=err)
                config = model.config() if args.model == "dnc" else model.config.to_dict()
                save_checkpoint(args.checkpoint, model, config, history, task=task, recipe=recipe)

        res = train_until(model, lambda: reuse_task(args.batch, generator=gen, **task), args.max_steps,
                          args.lr, eval_batch, args.eval_every, 0.1 if args.stop else -1.0, "adam", args.clip,
                          log=lambda m, s=seed: print(f"[{args.model} seed {s}] {m}", flush=True), on_eval=save)
        print(f"{args.model} seed {seed}: converged at step {res['converged_step']}, final error "
              f"{res['final_error']:.4f} bits/seq after {res['steps_run']} steps ({res['cpu_s']:.0f} CPU s)",
              flush=True)


def cmd_ship(args: argparse.Namespace) -> None:
    """Write the course checkpoint: a trained DNC plus the DNC and NTM learning curves on the reuse task."""
    from mem_tutorial.train import load_checkpoint, save_checkpoint

    payload = load_checkpoint(args.dnc_checkpoint)
    model = DNC(**payload["config"])
    load_checkpoint(args.dnc_checkpoint, model)
    comparison = {}
    for name, paths in (("DNC", args.dnc_curve), ("NTM", args.ntm_curve)):
        for path in paths or []:
            res = json.loads(Path(path).read_text())
            label = name if name not in comparison else f"{name} (seed {res['seed']})"
            comparison[label] = {"steps": [c[0] for c in res["curve"]], "error": [c[1] for c in res["curve"]],
                                 "seed": res["seed"], "lr": res["lr"], "batch_size": res["batch_size"],
                                 "memory": res["memory"], "shift_range": res.get("shift_range")}
    extra = dict(payload["extra"], comparison=comparison)
    out = save_checkpoint(args.to, model, model.config(), payload["history"], **extra)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB)")


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
    sp.add_argument("--port-path", default=None, help="also time the public port, interleaved (see _port_model)")
    sp.set_defaults(func=cmd_speed)
    rc = sub.add_parser("repeat-copy", help="steps to < 0.1 bit/seq with deepmind/dnc's repeat-copy defaults")
    rc.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    rc.add_argument("--bits", type=int, default=4, help="deepmind/dnc default num_bits=4")
    rc.add_argument("--max-steps", type=int, default=20_000)
    rc.add_argument("--eval-every", type=int, default=100)
    rc.add_argument("--optimizer", choices=["adam", "rmsprop"], default="adam")
    rc.add_argument("--lr", type=float, default=1e-3)
    rc.add_argument("--clip", type=float, default=50.0, help="global gradient-norm clip (deepmind/dnc: 50)")
    rc.add_argument("--out", type=str, default=None, help="write the results as JSON here")
    rc.add_argument("--verbose", action="store_true")
    rc.set_defaults(func=cmd_repeat_copy)
    ru = sub.add_parser("reuse", help="the memory-reuse task: DNC or NTM with the same memory size")
    ru.add_argument("--model", choices=["dnc", "ntm"], default="dnc")
    ru.add_argument("--seeds", type=int, nargs="+", default=[0])
    ru.add_argument("--batch", type=int, default=32)
    ru.add_argument("--max-steps", type=int, default=2000)
    ru.add_argument("--eval-every", type=int, default=100)
    ru.add_argument("--lr", type=float, default=1e-2)
    ru.add_argument("--clip", type=float, default=10.0)
    ru.add_argument("--stop", action="store_true", help="stop at < 0.1 bit/seq")
    ru.add_argument("--slots", type=int, default=None, help="live items of the task = memory slots N of both models")
    ru.add_argument("--rounds", type=int, default=None, help="override REUSE_TASK")
    ru.add_argument("--min-frees", type=int, default=None)
    ru.add_argument("--max-frees", type=int, default=None)
    ru.add_argument("--keys", type=int, default=None)
    ru.add_argument("--width", type=int, default=None, help="value bits")
    ru.add_argument("--word", type=int, default=None, help="override REUSE_MEMORY (word size W)")
    ru.add_argument("--reads", type=int, default=None, help="read heads R (both models)")
    ru.add_argument("--hidden", type=int, default=None, help="LSTM controller size")
    ru.add_argument("--shift-range", type=int, default=3, help="the NTM's shift range (odd)")
    ru.add_argument("--out", type=str, default=None)
    ru.add_argument("--checkpoint", type=str, default=None, help="save the trained model here (DNC or NTM)")
    ru.set_defaults(func=cmd_reuse)
    sh = sub.add_parser("ship", help="write mem_tutorial/checkpoints/dnc_reuse.pt from a reuse run")
    sh.add_argument("--dnc-checkpoint", required=True)
    sh.add_argument("--dnc-curve", nargs="*", default=None, help="JSON curves of DNC runs (the first is the shipped run)")
    sh.add_argument("--ntm-curve", nargs="*", default=None, help="JSON curves of NTM runs")
    sh.add_argument("--to", default=str(ROOT / "mem_tutorial" / "checkpoints" / "dnc_reuse.pt"))
    sh.set_defaults(func=cmd_ship)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
