"""DNC speed side by side with the most-used public PyTorch port (issue #17): training step and inference.

Four models, same sizes on both sides (N = 128 slots, W = 20, R = 4 read heads, one write head, one-layer LSTM
controller of 100, copy sequences of length 20: T = 41 steps, 9 channels in and out):

- ``eager``: ``mem_tutorial.models.dnc.DNC`` as the course uses it;
- ``compiled``: the same with ``compile_step(chunk=4)`` (``torch.compile`` of chunks of steps);
- ``sparse``: eager with the sparse DNC's link (``link="sparse", link_k=8``, Rae et al. 2016);
- ``peer``: ``ixaxaar/pytorch-dnc`` (PyPI ``dnc``), unmodified, imported from a source snapshot given by
  ``--peer-path`` (the folder that holds its ``dnc/`` package; not shipped with the course). Constructed as
  ``DNC(9, 100, rnn_type="lstm", num_layers=1, num_hidden_layers=1, nr_cells=128, cell_size=20, read_heads=4,
  batch_first=True)`` (94,492 parameters, as ours) and called with ``reset_experience=True``; its output comes
  time-major whatever ``batch_first`` says, so it is transposed (a view) before the loss.

A training step is forward + BCE loss + backward + global gradient-norm clip (10) + Adam; inference is a forward
pass under ``torch.no_grad``. Timings are CPU process time with one thread (``torch.set_num_threads(1)``), in
interleaved rounds (one call of each model per round, so they share the machine's load); the table gives, per
model, the median and range of ms per call and of the per-round ratio peer time / model time (the speed-up).

    python benchmarks/dnc_speed.py --peer-path /tmp/peer_dnc --rounds 15 --json benchmarks/results/dnc_speed.json

The compiled model's first call (compilation) is timed separately: wall time and CPU time of this process and of
its finished child processes (the C++ compiler), with inductor's on-disk cache as found (``--fresh-cache`` points
inductor at an empty cache folder first).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _cpu_seconds() -> tuple[float, float]:
    """(CPU seconds of this process, CPU seconds of its waited-for children)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def build_models(names: list[str], peer_path: str | None, X: int, N: int, W: int, R: int, H: int, k: int):
    import torch

    from mem_tutorial.models.dnc import DNC

    models = {}
    for name in names:
        torch.manual_seed(0)
        if name == "peer":
            if not peer_path:
                raise SystemExit("--peer-path is required for the peer model (a snapshot of ixaxaar/pytorch-dnc)")
            sys.path.insert(0, str(Path(peer_path).resolve()))  # before benchmarks/ (which holds a dnc.py)
            sys.modules.pop("dnc", None)
            from dnc.dnc import DNC as PeerDNC  # type: ignore

            net = PeerDNC(X, H, rnn_type="lstm", num_layers=1, num_hidden_layers=1, nr_cells=N, cell_size=W,
                          read_heads=R, batch_first=True)
            # its output is time-major [T, B, X] even with batch_first=True (the port stacks the steps on dim 0)
            models[name] = (net, lambda x, net=net: net(x, (None, None, None), reset_experience=True)[0].transpose(0, 1))
        else:
            extra = dict(link="sparse", link_k=k) if name == "sparse" else {}
            net = DNC(X, X, N, W, R, H, **extra)
            if name == "compiled":
                net.compile_step(chunk=4)
            models[name] = (net, lambda x, net=net: net(x)[0])
    return models


def make_calls(models: dict, batch: int, T: int, X: int, mode: str, seed: int = 0):
    """One closure per model: a training step (``mode="train"``) or a no-grad forward (``"infer"``)."""
    import torch
    from torch.nn import functional as F

    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 2, (batch, T, X), generator=gen).float()
    target = torch.randint(0, 2, (batch, T, X), generator=gen).float()
    calls = {}
    for name, (net, fwd) in models.items():
        if mode == "train":
            opt = torch.optim.Adam(net.parameters(), lr=1e-4)

            def call(net=net, fwd=fwd, opt=opt):
                opt.zero_grad(set_to_none=True)
                loss = F.binary_cross_entropy_with_logits(fwd(x), target)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
                opt.step()
        else:
            def call(fwd=fwd):
                with torch.no_grad():
                    fwd(x)
        calls[name] = call
    return calls


def run_rounds(calls: dict, rounds: int, warmup: int) -> tuple[dict, dict]:
    """Warm up (first call timed apart), then ``rounds`` interleaved rounds of CPU process time per call."""
    first = {}
    for name, call in calls.items():
        t0, (s0, c0) = time.perf_counter(), _cpu_seconds()
        call()
        s1, c1 = _cpu_seconds()
        first[name] = dict(wall_s=time.perf_counter() - t0, cpu_s=s1 - s0, children_cpu_s=c1 - c0)
    for _ in range(warmup - 1):
        for call in calls.values():
            call()
    times = {name: [] for name in calls}
    for r in range(rounds):
        order = list(calls.items())
        if r % 2:  # alternate the order so that no model always runs right after the same one
            order.reverse()
        for name, call in order:
            t0 = time.process_time()
            call()
            times[name].append(time.process_time() - t0)
    return first, times


def count_ops(calls: dict, T: int) -> dict:
    """Aten operations dispatched per time step by one call of each eager model (forward + backward + update),
    counted with a ``TorchDispatchMode``: at batch 1 the step time is mostly per-operation overhead."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Count.n += 1
            return func(*args, **(kwargs or {}))

    out = {}
    for name, call in calls.items():
        if name == "compiled":
            continue
        Count.n = 0
        with Count():
            call()
        out[name] = round(Count.n / T, 1)
    return out


def summarise(times: dict) -> dict:
    out = {}
    peer = times.get("peer")
    for name, ts in times.items():
        row = dict(median_ms=1000 * statistics.median(ts), min_ms=1000 * min(ts), max_ms=1000 * max(ts))
        if peer is not None and name != "peer":
            ratios = [p / t for p, t in zip(peer, ts)]
            row.update(speedup_median=statistics.median(ratios), speedup_min=min(ratios), speedup_max=max(ratios))
        out[name] = row
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peer-path", help="folder holding the peer's dnc/ package (a snapshot of ixaxaar/pytorch-dnc)")
    ap.add_argument("--models", nargs="+", default=["eager", "compiled", "sparse", "peer"],
                    choices=["eager", "compiled", "sparse", "peer"])
    ap.add_argument("--cases", nargs="+", default=["train:1", "train:32", "infer:1"],
                    help="mode:batch pairs (mode train or infer)")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3, help="untimed calls per model before the rounds (>= 1)")
    ap.add_argument("--slots", type=int, default=128)
    ap.add_argument("--word", type=int, default=20)
    ap.add_argument("--reads", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=100)
    ap.add_argument("--length", type=int, default=20, help="copy length L: T = 2L + 1 steps")
    ap.add_argument("--bits", type=int, default=8, help="copy width: X = bits + 1 channels in and out")
    ap.add_argument("--link-k", type=int, default=8)
    ap.add_argument("--fresh-cache", action="store_true", help="compile into an empty inductor cache (time it)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)

    if args.fresh_cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor_fresh_")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.path.insert(0, str(ROOT))
    import torch

    torch.set_num_threads(1)
    X, T = args.bits + 1, 2 * args.length + 1
    size = dict(N=args.slots, W=args.word, R=args.reads, H=args.hidden, T=T, X=X)
    print(f"DNC speed, {size}, sparse K={args.link_k}, one thread, CPU process time, {args.rounds} interleaved rounds;"
          f" torch {torch.__version__}, load average {os.getloadavg()[0]:.1f}", flush=True)
    results = dict(size=size, link_k=args.link_k, rounds=args.rounds, torch=torch.__version__,
                   machine=platform.processor() or platform.machine(), cases=[],
                   started=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), load_start=os.getloadavg()[0])
    for case in args.cases:
        mode, batch = case.split(":")
        batch = int(batch)
        models = build_models(args.models, args.peer_path, X, args.slots, args.word, args.reads, args.hidden,
                              args.link_k)
        calls = make_calls(models, batch, T, X, mode)
        first, times = run_rounds(calls, args.rounds, max(1, args.warmup))
        table = summarise(times)
        ops = count_ops(calls, T)
        results["cases"].append(dict(mode=mode, batch=batch, first_call=first, summary=table, times_s=times,
                                     ops_per_time_step=ops))
        print(f"\n{mode} B={batch}   (load average {os.getloadavg()[0]:.1f})")
        print(f"{'model':<9} {'median ms':>10} {'range ms':>17} {'speed-up vs peer: median (range)':>34}"
              f" {'first call: wall / cpu / children s':>38}")
        for name, row in table.items():
            sp = (f"{row['speedup_median']:.2f}x ({row['speedup_min']:.2f}-{row['speedup_max']:.2f})"
                  if "speedup_median" in row else "")
            f = first[name]
            print(f"{name:<9} {row['median_ms']:>10.1f} {row['min_ms']:>8.1f}-{row['max_ms']:<8.1f} {sp:>34}"
                  f" {f['wall_s']:>14.1f} / {f['cpu_s']:.1f} / {f['children_cpu_s']:.1f}", flush=True)
        print(f"aten ops per time step (eager models, one call): {ops}", flush=True)
        if args.json:  # after every case: a partial run still leaves its figures
            results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
            results["load_end"] = os.getloadavg()[0]
            Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
