"""Chapter 2 benchmarks: NTM (and the LSTM baseline) on the NTM paper's copy and associative-recall tasks.

Subcommands (each prints a table; ``--json`` writes the figures):

  converge     sequences until the cost averaged over the last 1,000 sequences < 0.1 bit/seq, per seed, and
               whether it stays there for the next ``--stay`` sequences (paper setting: LSTM controller 100,
               one read and one write head, memory 128 x 20, 8-bit vectors, lengths 1-20)
  speed        training sequences per second (forward + backward + update) at given batch sizes
  generalise   bits error per sequence at lengths 20, 40, 80, 120 for saved NTM / LSTM checkpoints (mean, fraction
               of perfect sequences, worst sequence) on a fixed, seeded evaluation set
  recall       associative recall: sequences (episodes) until the windowed cost < ``--threshold``
  retrain      train the shipped copy checkpoint (mem_tutorial/checkpoints/ntm_copy.pt)
  repeat       train the shipped repeat-copy checkpoint (mem_tutorial/checkpoints/ntm_repeat_copy.pt)
  lstm         train the shipped LSTM copy baseline (mem_tutorial/checkpoints/lstm_copy.pt)

Examples:
  python benchmarks/ntm_copy.py converge --seeds 0 1 2 3 4 --batch 1
  python benchmarks/ntm_copy.py speed --batches 1 32
  python benchmarks/ntm_copy.py speed --batches 1 32 --compile cpp   # NTM.compile_step: compiled chunks of steps
  python benchmarks/ntm_copy.py retrain --out mem_tutorial/checkpoints/ntm_copy.pt
  python benchmarks/ntm_copy.py generalise            # shipped NTM and LSTM checkpoints
  python benchmarks/ntm_copy.py repeat                # small range (lengths 1-5, repeats 1-5), as shipped
  python benchmarks/ntm_copy.py repeat --max-len 10 --max-repeats 10 --out /tmp/rc.pt   # the paper's range
  python benchmarks/ntm_copy.py lstm                  # 1 x 192 LSTM baseline on copy, as shipped
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("MEM_TUTORIAL_PROGRESS", "0")

import torch  # noqa: E402

from mem_tutorial.models.lstm import LSTMBaseline, LSTMConfig  # noqa: E402
from mem_tutorial.models.ntm import NTM, NTMConfig  # noqa: E402
from mem_tutorial.runtime import get_device, seed_everything  # noqa: E402
from mem_tutorial.tasks import associative_recall_task, copy_task  # noqa: E402
from mem_tutorial.tasks.training import ConvergenceMonitor, evaluate, train_on_task, train_step  # noqa: E402
from mem_tutorial.train import load_checkpoint, save_checkpoint  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "mem_tutorial" / "checkpoints" / "ntm_copy.pt"
REPEAT_CHECKPOINT = ROOT / "mem_tutorial" / "checkpoints" / "ntm_repeat_copy.pt"
LSTM_CHECKPOINT = ROOT / "mem_tutorial" / "checkpoints" / "lstm_copy.pt"


class TimeUp(Exception):
    """Raised by :class:`PrintingMonitor` when its wall-clock budget is spent."""


class PrintingMonitor(ConvergenceMonitor):
    """Prints the windowed cost every ``every`` sequences (for long runs in a log); raises :class:`TimeUp` after
    ``max_minutes`` of wall time (None: never)."""

    def __init__(self, *args, every: int = 1000, label: str = "", max_minutes: float | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.every, self.label, self._next, self._t0 = every, label, every, time.time()
        self.deadline = None if max_minutes is None else self._t0 + 60 * max_minutes

    def update(self, costs):
        if self.deadline is not None and time.time() > self.deadline:
            raise TimeUp(f"{self.label}: wall-clock budget spent after {self.seen} sequences")
        mean = super().update(costs)
        if self.seen >= self._next:
            self._next += self.every
            print(f"  {self.label} seq {self.seen:>7d}  avg bits/seq {mean:8.3f}  {time.time() - self._t0:6.0f} s",
                  flush=True)
        return mean


def ntm_for(task: str, args) -> NTM:
    sizes = {"copy": (9, 8), "associative_recall": (8, 6), "repeat_copy": (10, 9)}[task]
    cfg = NTMConfig(input_size=sizes[0], output_size=sizes[1], controller=args.controller,
                    controller_size=args.controller_size, memory_slots=args.slots, memory_width=args.width,
                    memory_init=args.memory_init)
    model = NTM(cfg)
    if args.compile != "none":  # torch.compile of one step; "cpp" also compiles the graphs' Python glue to C++
        model.compile_step(**({"options": {"cpp_wrapper": True}} if args.compile == "cpp" else {}))
    return model


def cmd_converge(args, task: str = "copy") -> dict:
    device = get_device(args.device, verbose=False)
    rows = []
    for seed in args.seeds:
        seed_everything(seed)
        model = ntm_for(task, args).to(device)
        mon = PrintingMonitor(args.window, args.threshold, every=args.print_every, label=f"seed {seed}",
                              max_minutes=getattr(args, "max_minutes", None))
        t0 = time.time()
        try:
            run = train_on_task(model, task, batch_size=args.batch, max_sequences=args.max_sequences,
                                optimizer=args.optimizer, lr=args.lr, seed=seed, device=device, window=args.window,
                                threshold=args.threshold, stop_after=args.stay, monitor=mon, log_every=10,
                                anneal_on_converge=args.anneal_on_converge)
            history = run.history
        except TimeUp as e:
            print(f"  stopped: {e} (windowed cost {mon.mean:.3f})", flush=True)
            history = None
        wall = time.time() - t0
        conv = mon.converged_at
        stayed = conv is not None and mon.relapsed_at is None and mon.seen >= conv + args.stay
        rows.append({"seed": seed, "converged_at": conv, "stayed": stayed, "worst_after": mon.worst_after,
                     "sequences": mon.seen, "wall_s": wall,
                     "wall_to_converge_s": wall * conv / mon.seen if conv else None})
        if args.save and conv is not None and seed == args.seeds[0]:
            save_checkpoint(args.save, model, model.config.to_dict(), history, task=task, converged_at=conv)
    print(f"\n{task}: batch {args.batch}, {args.optimizer} lr {args.lr}, threshold {args.threshold} bit/seq over "
          f"{args.window} sequences, device {device}, load {os.getloadavg()[0]:.1f}")
    print(f"{'seed':>4} {'converged at (seq)':>19} {'stays (next %d)' % args.stay:>16} {'worst after':>12} "
          f"{'wall to conv (s)':>17}")
    for r in rows:
        conv = r["converged_at"] if r["converged_at"] is not None else "not converged"
        wall = f"{r['wall_to_converge_s']:.0f}" if r["wall_to_converge_s"] else "-"
        print(f"{r['seed']:>4} {conv!s:>19} {str(r['stayed']):>16} {r['worst_after']:>12.3f} {wall:>17}")
    convs = [r["converged_at"] for r in rows if r["converged_at"] is not None]
    if convs:
        print(f"median sequences to converge: {statistics.median(convs):.0f} ({len(convs)}/{len(rows)} seeds)")
    return {"task": task, "args": _args_dict(args), "rows": rows}


def cmd_speed(args) -> dict:
    device = get_device(args.device, verbose=False)
    rows = []
    for batch_size in args.batches:
        seed_everything(0)
        model = ntm_for("copy", args).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        gen = torch.Generator().manual_seed(0)
        batches = [copy_task(batch_size, generator=gen).to(device) for _ in range(args.steps + 2)]
        # warm-up; with --compile, lengths 1 and 2 (T = 3, 5) also compile the single-step and the chunk graphs
        warmup = [copy_task(batch_size, min_len=n, max_len=n, generator=gen).to(device) for n in (1, 2)]
        t0 = time.time()
        for b in batches[:2] + warmup:
            train_step(model, opt, b)
        if device.type == "cuda":
            torch.cuda.synchronize()
        warm = time.time() - t0
        t0, c0 = time.time(), time.process_time()
        for b in batches[2:]:
            train_step(model, opt, b)
        if device.type == "cuda":
            torch.cuda.synchronize()
        dt, cpu = time.time() - t0, time.process_time() - c0
        rows.append({"batch": batch_size, "seq_per_s": batch_size * args.steps / dt, "ms_per_update": 1000 * dt / args.steps,
                     "seq_per_cpu_s": batch_size * args.steps / cpu, "warmup_s": warm, "compile": args.compile})
    print(f"\nspeed: copy lengths 1-20, NTM controller {args.controller_size}, memory {args.slots}x{args.width}, "
          f"device {device}, threads {torch.get_num_threads()}, compile {args.compile}, load {os.getloadavg()[0]:.1f}")
    print("(sequences per CPU-second = per second of this process's CPU time: robust to other processes' load)")
    print(f"{'batch':>6} {'sequences/s (wall)':>19} {'ms/update':>10} {'sequences/CPU-s':>16} {'warm-up s':>10}")
    for r in rows:
        print(f"{r['batch']:>6} {r['seq_per_s']:>19.1f} {r['ms_per_update']:>10.1f} {r['seq_per_cpu_s']:>16.1f}"
              f" {r['warmup_s']:>10.1f}")
    return {"args": _args_dict(args), "rows": rows}


def load_model(path: str, memory_slots: int | None = None):
    """Rebuild a saved NTM or LSTM. ``memory_slots`` replaces an NTM's N (no parameter depends on N with the
    ``constant`` memory initialisation, so the trained weights run unchanged on a larger memory)."""
    payload = load_checkpoint(path)
    cfg = payload["config"]
    if "hidden_size" in cfg:
        model = LSTMBaseline(LSTMConfig(**cfg))
    else:
        if memory_slots is not None:
            if cfg.get("memory_init") == "learned":
                raise ValueError("a learned initial memory has N rows: the memory size cannot be changed")
            cfg = {**cfg, "memory_slots": memory_slots}
        model = NTM(NTMConfig(**cfg))
    model.load_state_dict(payload["state_dict"])
    return model


def cmd_generalise(args) -> dict:
    from mem_tutorial.tasks.training import sequence_errors

    models = []
    if args.ntm:
        models.append(("NTM N=128", load_model(args.ntm)))
        for n in args.ntm_slots:
            models.append((f"NTM N={n}", load_model(args.ntm, memory_slots=n)))
    if args.lstm:
        models.append(("LSTM", load_model(args.lstm)))
    results = {}
    t0, c0 = time.time(), time.process_time()
    for name, model in models:
        results[name] = {}
        for length in args.lengths:
            errors, _ = sequence_errors(model, "copy", sequences=args.sequences, batch_size=args.eval_batch,
                                        seed=args.seed + length, task_kwargs={"min_len": length, "max_len": length})
            results[name][length] = {"mean": errors.mean().item(), "perfect": (errors == 0).float().mean().item(),
                                     "median": errors.median().item(), "worst": errors.max().item(),
                                     "over_10": int((errors > 10).sum())}
    print(f"\ngeneralisation on copy (trained on lengths 1-20): wrong bits per sequence over {args.sequences} "
          f"sequences per length (seed {args.seed} + length), load {os.getloadavg()[0]:.1f}, "
          f"{time.time() - t0:.0f} s wall, {time.process_time() - c0:.0f} s CPU")
    print("mean / % perfect sequences / worst sequence / sequences with > 10 wrong bits")
    print(f"{'model':>10} " + " ".join(f"{'L=' + str(n):>24}" for n in args.lengths))
    for name, r in results.items():
        cells = [f"{r[n]['mean']:.3g} / {100 * r[n]['perfect']:.0f}% / {r[n]['worst']:.0f} / {r[n]['over_10']}"
                 for n in args.lengths]
        print(f"{name:>10} " + " ".join(f"{c:>24}" for c in cells))
    return {"args": _args_dict(args), "results": results}


def cmd_retrain(args) -> dict:
    """Train the shipped checkpoint: converge on copy (lengths 1-20), then train on for --stay sequences.

    With ``--curriculum`` the maximum length starts at 2 and grows by 2 whenever the mean cost of the last 20
    updates is below 0.5 bit per sequence; once it reaches 20 the usual criterion (< 0.1 bit/seq over the last
    1,000 sequences, all lengths 1-20) decides convergence.
    """
    if not args.curriculum:
        args.seeds = [args.seed]
        args.save = args.out
        return cmd_converge(args, "copy")
    seed_everything(args.seed)
    device = get_device(args.device, verbose=False)
    model = ntm_for("copy", args).to(device)
    if args.init_from:
        load_checkpoint(args.init_from, model)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed)
    mon = PrintingMonitor(args.window, args.threshold, every=args.print_every, label="curriculum")
    max_len, recent, seen, t0 = args.start_len, [], 0, time.time()

    while seen < args.max_sequences:
        batch = copy_task(args.batch, min_len=1, max_len=max_len, generator=gen).to(device)
        cost = train_step(model, opt, batch)[1].cpu()
        seen += args.batch
        recent = (recent + [cost.mean().item()])[-20:]
        if max_len < 20 and len(recent) == 20 and sum(recent) / 20 < args.advance_below:
            max_len, recent = min(20, max_len + 2), []
            print(f"  seq {seen}: max length -> {max_len} ({time.time() - t0:.0f} s)", flush=True)
        if args.save_every and (seen // args.batch) % args.save_every == 0:
            save_checkpoint(args.out, model, model.config.to_dict(), None, task="copy", converged_at=None,
                            recipe=f"curriculum (unfinished, max length {max_len})", sequences=seen)
            print(f"  seq {seen}: saved (max length {max_len}, {time.time() - t0:.0f} s)", flush=True)
        if max_len == 20:
            mon.update(cost)
            if mon.converged_at is not None and mon.seen >= mon.converged_at + args.stay:
                break
    conv = None if mon.converged_at is None else seen - mon.seen + mon.converged_at
    save_checkpoint(args.out, model, model.config.to_dict(), None, task="copy", converged_at=conv,
                    recipe=f"curriculum 2..20, Adam lr {args.lr}, batch {args.batch}, seed {args.seed}",
                    sequences=seen)
    print(f"curriculum: converged at {conv} sequences (of {seen}); saved {args.out} ({time.time() - t0:.0f} s)")
    return {"converged_at": conv, "sequences": seen, "wall_s": time.time() - t0}


def warm_start_from_copy(model: NTM, copy_checkpoint: str) -> None:
    """Initialise a repeat-copy NTM (inputs: 8 bits, delimiter, repeat count; outputs: 8 bits, end marker) from a
    trained copy NTM (inputs: 8 bits, delimiter; outputs: 8 bits) of the same sizes: every weight is copied, the
    repeat-count input column and the end-marker output row keep their fresh initialisation. The copy NTM already
    writes a sequence to consecutive slots and reads it back; repeat copy adds the jumps back and the counting."""
    payload = load_checkpoint(copy_checkpoint)
    src, dst = payload["state_dict"], model.state_dict()
    cfg = model.config
    n_in = payload["config"]["input_size"]  # copy: 9 = 8 bits + delimiter; repeat copy has one more
    n_out = payload["config"]["output_size"]
    for name, value in src.items():
        target = dst[name]
        if target.shape == value.shape:
            target.copy_(value)
        elif name == "controller.weight_ih" or name == "controller.weight":  # columns: [x (input_size), reads]
            target[:, :n_in] = value[:, :n_in]
            target[:, cfg.input_size:] = value[:, n_in:]
        elif name == "output.weight":
            target[:n_out] = value
        elif name == "output.bias":
            target[:n_out] = value
        else:
            raise ValueError(f"cannot transfer {name}: {tuple(value.shape)} -> {tuple(target.shape)}")
    model.load_state_dict(dst)


def cmd_repeat(args) -> dict:
    """Train an NTM on repeat copy (Section 4.2) and save it, with its recipe, for the notebook.

    With ``--curriculum`` the maximum length and repeat count start at ``--start`` and grow by one (each, up to
    ``--max-len`` / ``--max-repeats``) whenever the mean cost of the last 20 updates is below ``--advance-below``
    bit per sequence; once both reach their maxima the usual criterion (< ``--threshold`` bit/seq over the last
    ``--window`` sequences) decides convergence. Stops ``--stay`` sequences after convergence, after
    ``--max-sequences`` or after ``--max-minutes`` of wall time, and saves in every case (``converged_at`` None if
    it did not converge).
    """
    from mem_tutorial.tasks import repeat_copy_task
    from mem_tutorial.tasks.training import make_optimizer

    seed_everything(args.seed)
    device = get_device(args.device, verbose=False)
    model = ntm_for("repeat_copy", args).to(device)
    prior, prior_recipe = 0, None
    if args.warm_start:
        warm_start_from_copy(model, args.warm_start)
    if args.init_from:
        extra = load_checkpoint(args.init_from, model)["extra"]
        prior, prior_recipe = int(extra.get("sequences") or 0), extra.get("recipe")
    opt = make_optimizer(model, args.optimizer, args.lr)
    gen = torch.Generator().manual_seed(args.seed)
    mon = PrintingMonitor(args.window, args.threshold, every=args.print_every, label="repeat copy")
    cur = args.start if args.curriculum else max(args.max_len, args.max_repeats)
    recent, seen, t0, c0, at_full = [], 0, time.time(), time.process_time(), None
    max_len, max_rep = min(cur, args.max_len), min(cur, args.max_repeats)
    while seen < args.max_sequences and time.time() - t0 < 60 * args.max_minutes:
        max_len, max_rep = min(cur, args.max_len), min(cur, args.max_repeats)
        batch = repeat_copy_task(args.batch, max_len=max_len, max_repeats=max_rep, repeat_norm=args.max_repeats,
                                 generator=gen).to(device)
        cost = train_step(model, opt, batch)[1].cpu()
        seen += args.batch
        if (max_len, max_rep) != (args.max_len, args.max_repeats):
            recent = (recent + [cost.mean().item()])[-20:]
            if len(recent) == 20 and sum(recent) / 20 < args.advance_below:
                cur, recent = cur + 1, []
                print(f"  seq {seen}: curriculum -> lengths 1-{min(cur, args.max_len)}, repeats "
                      f"1-{min(cur, args.max_repeats)} ({time.time() - t0:.0f} s)", flush=True)
            continue
        if at_full is None:
            at_full = seen - args.batch
        mon.update(cost)
        if mon.converged_at is not None and mon.seen >= mon.converged_at + args.stay:
            break
    wall, cpu = time.time() - t0, time.process_time() - c0
    conv = None if mon.converged_at is None else prior + at_full + mon.converged_at
    recipe = (f"python benchmarks/ntm_copy.py repeat --max-len {args.max_len} --max-repeats {args.max_repeats} "
              f"--batch {args.batch} --optimizer {args.optimizer} --lr {args.lr} --seed {args.seed}"
              + (f" --curriculum --start {args.start} --advance-below {args.advance_below}" if args.curriculum else "")
              + (f" --init-from <a checkpoint trained {prior} sequences by: {prior_recipe}>" if args.init_from else "")
              + (f" --warm-start {Path(args.warm_start).name} (weights of the copy NTM)" if args.warm_start else ""))
    save_checkpoint(args.out, model, model.config.to_dict(), None, task="repeat_copy", converged_at=conv,
                    sequences=prior + seen, recipe=recipe, wall_s=round(wall), cpu_s=round(cpu),
                    task_kwargs={"max_len": max_len, "max_repeats": max_rep, "repeat_norm": args.max_repeats},
                    target_range={"max_len": args.max_len, "max_repeats": args.max_repeats},
                    final_windowed_cost=mon.mean if mon.seen else None)
    if at_full is None:
        print(f"curriculum unfinished: trained up to lengths 1-{max_len}, repeats 1-{max_rep} (continue with "
              f"--init-from {args.out} --start {cur})")
    print(f"repeat copy (lengths 1-{args.max_len}, repeats 1-{args.max_repeats}): converged at {conv} sequences "
          f"(of {seen}; full range from {at_full}); last windowed cost {mon.mean:.3f}; {wall:.0f} s wall, "
          f"{cpu:.0f} s CPU, load {os.getloadavg()[0]:.1f}; saved {args.out}")
    return {"converged_at": conv, "sequences": seen, "full_range_from": at_full, "wall_s": wall, "cpu_s": cpu,
            "last_windowed_cost": mon.mean}


def cmd_lstm(args) -> dict:
    """Train the LSTM baseline on copy (lengths 1-20) and save it (the notebook's and `generalise`'s baseline)."""
    seed_everything(args.seed)
    model = LSTMBaseline(LSTMConfig(hidden_size=args.hidden, layers=args.layers))
    mon = PrintingMonitor(1000, 0.1, every=args.print_every, label="LSTM")
    t0, c0 = time.time(), time.process_time()
    run = train_on_task(model, "copy", batch_size=args.batch, max_sequences=args.max_sequences, lr=args.lr,
                        seed=args.seed, monitor=mon, stop_after=args.stay, log_every=100)
    wall, cpu = time.time() - t0, time.process_time() - c0
    recipe = (f"python benchmarks/ntm_copy.py lstm --hidden {args.hidden} --layers {args.layers} --batch "
              f"{args.batch} --lr {args.lr} --max-sequences {args.max_sequences} --seed {args.seed} (Adam, clip 10)")
    save_checkpoint(args.out, model, model.config.to_dict(), run.history, task="copy", converged_at=mon.converged_at,
                    sequences=mon.seen, recipe=recipe, wall_s=round(wall), cpu_s=round(cpu),
                    final_windowed_cost=mon.mean)
    print(f"LSTM {args.layers}x{args.hidden}: converged at {mon.converged_at}, {mon.seen} sequences, last windowed "
          f"cost {mon.mean:.3f} bit/seq; {wall:.0f} s wall, {cpu:.0f} s CPU, load {os.getloadavg()[0]:.1f}")
    return {"converged_at": mon.converged_at, "last": mon.mean, "sequences": mon.seen, "wall_s": wall, "cpu_s": cpu}


def cmd_lstm_curriculum(args) -> dict:
    """Train the LSTM baseline on copy with a curriculum over lengths and save it (the notebook's baseline).

    The maximum length starts at ``--start`` and grows by ``--step`` (up to ``--max-len``) whenever the mean cost
    of the last 50 updates is below ``--advance-below`` bit per sequence; lengths are uniform in 1..current max.
    Once the full range is reached the windowed criterion (< 0.1 bit/seq over the last 1,000 sequences) counts
    convergence; on convergence the learning rate is multiplied by ``--anneal``. Saves every ``--save-every``
    minutes and at the end (``--max-minutes`` of wall time or ``--max-sequences``), with the curriculum state.
    Weights are stored as float16 when ``--half`` (a 3 x 256 LSTM is 5.3 MB in float32; loading casts back).
    """
    from mem_tutorial.tasks.training import make_optimizer

    seed_everything(args.seed)
    model = LSTMBaseline(LSTMConfig(hidden_size=args.hidden, layers=args.layers))
    prior, prior_recipe, prior_log = 0, None, []
    if args.init_from:  # continue a saved run (weights only: Adam's moments restart)
        payload = load_checkpoint(args.init_from)
        model.load_state_dict({k: v.float() for k, v in payload["state_dict"].items()})
        extra = payload["extra"]
        prior, prior_recipe, prior_log = int(extra.get("sequences") or 0), extra.get("recipe"), extra.get(
            "curriculum_log") or []
    opt = make_optimizer(model, "adam", args.lr)
    gen = torch.Generator().manual_seed(args.seed + prior)
    mon = PrintingMonitor(1000, 0.1, every=args.print_every, label="LSTM")
    cur, recent, seen, at_full, annealed = args.start, [], 0, None, False
    t0, c0, last_save = time.time(), time.process_time(), time.time()
    log: list[tuple[int, int, float]] = []

    def save():
        wall, cpu = time.time() - t0, time.process_time() - c0
        recipe = (f"python benchmarks/ntm_copy.py lstm-curriculum --hidden {args.hidden} --layers {args.layers} "
                  f"--batch {args.batch} --lr {args.lr} --start {args.start} --step {args.step} --advance-below "
                  f"{args.advance_below} --anneal {args.anneal} --seed {args.seed} --max-minutes {args.max_minutes}"
                  f"{' --half' if args.half else ''} (Adam, clip 10, curriculum over lengths)"
                  + (f" --init-from <a checkpoint trained {prior} sequences by: {prior_recipe}>" if prior else ""))
        shift = lambda n: None if n is None else prior + n  # noqa: E731
        save_checkpoint(args.out, model, model.config.to_dict(), None, task="copy",
                        converged_at=shift(mon.converged_at if at_full is None or mon.converged_at is None
                                           else at_full + mon.converged_at),
                        sequences=prior + seen, full_range_from=shift(at_full),
                        curriculum_max_len=min(cur, args.max_len), recipe=recipe, wall_s=round(wall),
                        cpu_s=round(cpu), final_windowed_cost=mon.mean if mon.seen else None,
                        curriculum_log=prior_log + [(prior + n, m, t) for n, m, t in log])
        if args.half:  # rewrite the weights as float16 (load_state_dict casts them back to the model's dtype)
            payload = torch.load(args.out, weights_only=True)
            payload["state_dict"] = {k: v.half() for k, v in payload["state_dict"].items()}
            torch.save(payload, args.out)
        return wall, cpu

    while seen < args.max_sequences and time.time() - t0 < 60 * args.max_minutes:
        max_len = min(cur, args.max_len)
        batch = copy_task(args.batch, min_len=1, max_len=max_len, generator=gen)
        cost = train_step(model, opt, batch)[1]
        seen += args.batch
        if max_len < args.max_len:
            recent = (recent + [cost.mean().item()])[-50:]
            if len(recent) == 50 and sum(recent) / 50 < args.advance_below:
                cur, recent = cur + args.step, []
                log.append((seen, min(cur, args.max_len), round(time.time() - t0)))
                print(f"  seq {seen}: curriculum -> lengths 1-{min(cur, args.max_len)} ({time.time() - t0:.0f} s)",
                      flush=True)
        else:
            if at_full is None:
                at_full = seen - args.batch
            mon.update(cost)
            if mon.converged_at is not None and not annealed:
                annealed = True
                for g in opt.param_groups:
                    g["lr"] *= args.anneal
                print(f"  converged at {seen} sequences; lr x {args.anneal}", flush=True)
            if mon.converged_at is not None and mon.seen >= mon.converged_at + args.stay:
                break
        if time.time() - last_save > 60 * args.save_every:
            save()
            last_save = time.time()
    wall, cpu = save()
    print(f"LSTM {args.layers}x{args.hidden}: curriculum at 1-{min(cur, args.max_len)}, full range from {at_full}, "
          f"converged at {mon.converged_at}, {seen} sequences, last windowed cost {mon.mean:.3f} bit/seq; "
          f"{wall:.0f} s wall, {cpu:.0f} s CPU, load {os.getloadavg()[0]:.1f}; saved {args.out}")
    return {"converged_at": mon.converged_at, "full_range_from": at_full, "last": mon.mean, "sequences": seen,
            "wall_s": wall, "cpu_s": cpu, "curriculum_log": log}


def _args_dict(args) -> dict:
    return {k: v for k, v in vars(args).items() if k != "func"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", help="write the figures to this JSON file")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    sub = parser.add_subparsers(dest="command", required=True)

    def model_args(p):
        p.add_argument("--controller", default="lstm", choices=["lstm", "feedforward"])
        p.add_argument("--controller-size", type=int, default=100)
        p.add_argument("--slots", type=int, default=128)
        p.add_argument("--width", type=int, default=20)
        p.add_argument("--memory-init", default="constant", choices=["constant", "learned", "random"])
        p.add_argument("--compile", default="none", choices=["none", "inductor", "cpp"],
                       help="run the NTM step through torch.compile (NTM.compile_step); 'cpp' adds inductor's "
                            "C++ wrapper (longer first compile, less per-step overhead)")

    def train_args(p, batch=16, lr=1e-3, max_sequences=100_000):
        model_args(p)
        p.add_argument("--batch", type=int, default=batch)
        p.add_argument("--optimizer", default="adam", choices=["adam", "rmsprop"])
        p.add_argument("--lr", type=float, default=lr)
        p.add_argument("--max-sequences", type=int, default=max_sequences)
        p.add_argument("--window", type=int, default=1000)
        p.add_argument("--threshold", type=float, default=0.1)
        p.add_argument("--stay", type=int, default=5000)
        p.add_argument("--anneal-on-converge", type=float, default=None,
                       help="multiply the learning rate by this once converged (e.g. 0.1)")
        p.add_argument("--print-every", type=int, default=1000)

    p = sub.add_parser("converge")
    train_args(p)
    p.add_argument("--max-minutes", type=float, help="stop each seed after this much wall time")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--save", help="save the first seed's model here if it converges")
    p.set_defaults(func=cmd_converge)

    p = sub.add_parser("recall")
    train_args(p, max_sequences=60_000)
    p.add_argument("--max-minutes", type=float, help="stop each seed after this much wall time")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--save")
    p.set_defaults(func=lambda a: cmd_converge(a, "associative_recall"))

    p = sub.add_parser("speed")
    model_args(p)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    p.add_argument("--steps", type=int, default=30)
    p.set_defaults(func=cmd_speed)

    p = sub.add_parser("generalise")
    p.add_argument("--ntm", default=str(CHECKPOINT))
    p.add_argument("--ntm-slots", type=int, nargs="*", default=[256],
                   help="also evaluate the NTM's weights with these memory sizes N")
    p.add_argument("--lstm", default=str(LSTM_CHECKPOINT))
    p.add_argument("--lengths", type=int, nargs="+", default=[20, 40, 80, 120])
    p.add_argument("--sequences", type=int, default=100)
    p.add_argument("--eval-batch", type=int, default=50)
    p.add_argument("--seed", type=int, default=1000, help="the sequences of length L come from seed + L")
    p.set_defaults(func=cmd_generalise)

    p = sub.add_parser("retrain")
    train_args(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(CHECKPOINT))
    p.add_argument("--curriculum", action="store_true", help="grow the maximum length from 2 to 20")
    p.add_argument("--save-every", type=int, default=0, help="(curriculum) also save every this many updates")
    p.add_argument("--start-len", type=int, default=2, help="(curriculum) first maximum length")
    p.add_argument("--advance-below", type=float, default=0.5,
                   help="(curriculum) grow the length when the last 20 updates average below this cost (bit/seq)")
    p.add_argument("--init-from", help="(curriculum) start from this checkpoint's weights")
    p.set_defaults(func=cmd_retrain)

    p = sub.add_parser("repeat")
    train_args(p, max_sequences=200_000)
    p.add_argument("--max-len", type=int, default=5, help="lengths 1..max-len (paper: 10)")
    p.add_argument("--max-repeats", type=int, default=5, help="repeats 1..max-repeats (paper: 10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--curriculum", action="store_true")
    p.add_argument("--start", type=int, default=2, help="(curriculum) first maximum length and repeat count")
    p.add_argument("--advance-below", type=float, default=1.0)
    p.add_argument("--max-minutes", type=float, default=60.0, help="stop (and save) after this much wall time")
    p.add_argument("--init-from", help="start from this checkpoint's weights")
    p.add_argument("--warm-start", help="start from a trained COPY checkpoint's weights (e.g. the shipped ntm_copy.pt)")
    p.add_argument("--out", default=str(REPEAT_CHECKPOINT))
    p.set_defaults(func=cmd_repeat)

    p = sub.add_parser("lstm")
    p.add_argument("--hidden", type=int, default=192)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--max-sequences", type=int, default=200_000)
    p.add_argument("--stay", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--print-every", type=int, default=20000)
    p.add_argument("--out", default=str(LSTM_CHECKPOINT))
    p.set_defaults(func=cmd_lstm)

    p = sub.add_parser("lstm-curriculum")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--start", type=int, default=4)
    p.add_argument("--step", type=int, default=2)
    p.add_argument("--max-len", type=int, default=20)
    p.add_argument("--advance-below", type=float, default=1.0)
    p.add_argument("--anneal", type=float, default=0.1)
    p.add_argument("--max-sequences", type=int, default=10_000_000)
    p.add_argument("--max-minutes", type=float, default=45.0)
    p.add_argument("--save-every", type=float, default=5.0)
    p.add_argument("--stay", type=int, default=20000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--half", action="store_true")
    p.add_argument("--init-from", help="continue from this checkpoint's weights (give --start its curriculum length)")
    p.add_argument("--print-every", type=int, default=20000)
    p.add_argument("--out", default=str(LSTM_CHECKPOINT))
    p.set_defaults(func=cmd_lstm_curriculum)

    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = args.func(args)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
