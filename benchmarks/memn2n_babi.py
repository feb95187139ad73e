"""Chapter 4 benchmark: End-To-End Memory Networks on bAbI v1.2, the paper's Table 1 settings.

Joint training (one model for the 20 tasks, d = 50, 3 hops, PE LS RN) or single-task training (one model per
task, d = 20), with several seeds trained side by side as independent copies of the network
(``MemN2N(copies=S)``). Each copy keeps the weights of its best validation epoch; the table reports the
test error of every task for every seed, the mean, the number of failed tasks (error > 5 %), and the
median over seeds. "best-valid" is the copy with the lowest validation error (the paper picked the best of
10 restarts by training error).

Examples (2-core CPU; run niced, one thread):
    nice -n 10 python benchmarks/memn2n_babi.py joint --seeds 0 1 2
    nice -n 10 python benchmarks/memn2n_babi.py single --seeds 0 1 2
    nice -n 10 python benchmarks/memn2n_babi.py single --variant en-10k --seeds 0
    nice -n 10 python benchmarks/memn2n_babi.py single --variant en-10k --seeds 0 1 2 \
        --dim 100 --tying layerwise --nonlinearity relu      # the non-linear 10k model (RESULTS.md)
    python benchmarks/memn2n_babi.py protocol --files benchmarks/results/memn2n_joint_en_nilgrad_seed0.json

Joint runs use ``paper_recipe(joint=True)``: 30 fixed LS epochs and clipping with the nil word's gradient
(``--nil-gradient``, the official code's behaviour; without it task 16 stays at ~53 % in joint training).
``protocol`` prints both ways of reporting: the median of independent seeds and the paper's protocol (best of
N restarts, chosen on training error as the paper did, and on validation error). Both modes also record each
run's last-epoch model (the official code tests that one rather than the best-validation weights); ``protocol
--weights final`` tabulates those.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from mem_tutorial.data import babi
from mem_tutorial.models import memn2n as M
from mem_tutorial.train import save_checkpoint

PAPER_JOINT_PE_LS_RN = M.PAPER_ERRORS["joint_pe_ls_rn"]
PAPER_SINGLE_PE_LS_RN = M.PAPER_ERRORS["single_pe_ls_rn"]
FAIL_THRESHOLD = 0.05


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def summarise(errors: dict[int, float]) -> tuple[float, int]:
    values = list(errors.values())
    return 100 * sum(values) / len(values), sum(e > FAIL_THRESHOLD for e in values)


def run_joint(args) -> dict:
    data = babi.load_babi(args.tasks, args.variant, args.data_dir, seed=args.split_seed)
    S = len(args.seeds)
    torch.manual_seed(args.seeds[0])
    cfg = model_config(args, data, joint=True)
    model = M.MemN2N(cfg, copies=S)
    recipe = M.paper_recipe(joint=True, ten_k=args.variant == "en-10k", linear_start=not args.no_ls,
                            random_noise=not args.no_rn, seed=args.seeds[0], **overrides(args))
    last = {}  # the official code tests the model of the last epoch: keep its weights (before fit restores
    #            the best-validation ones) so that one run gives both selections

    def at_epoch(epoch, result, state):  # called after every softmax-phase epoch
        last.update(epoch=epoch, state={k: v.detach().clone() for k, v in model.state_dict().items()},
                    softmax_epochs=last.get("softmax_epochs", 0) + 1)
        if args.out and last["softmax_epochs"] % args.report_every == 0:
            snapshot = M.MemN2N(cfg, copies=S)
            snapshot.load_state_dict(state)
            write_partial(args, joint_report(args, data, cfg, snapshot, result, save=True, partial_epoch=epoch),
                          epoch)

    result = M.fit(model, data.train, data.valid, recipe, log=log, desc="joint", report_every=1, report=at_epoch)
    report = joint_report(args, data, cfg, model, result, save=True)
    if last:
        add_last_epoch(report, cfg, last, data)
    return report


def add_last_epoch(report: dict, cfg, last: dict, data) -> None:
    """Add each joint run's last-epoch model to ``report``: ``run["final"]`` = its per-task test error, the last
    epoch's training and validation error, and that epoch as ``best_epoch`` (so ``protocol --weights final``
    reads the training error of that epoch from the history)."""
    model = M.MemN2N(cfg, copies=len(report["runs"]))
    model.load_state_dict(last["state"])
    tests = M.evaluate_copies(model, [data.test] * model.copies)
    for s, run in enumerate(report["runs"]):
        metrics = run["history"]["metrics"]
        run["final"] = {"per_task": M.per_task_error(tests[s]["correct"], data.test.tasks),
                        "valid_error": metrics["valid_error"][-1], "train_error": metrics["train_error"][-1],
                        "best_epoch": last["epoch"]}


def joint_report(args, data, cfg, model, result, save=False, partial_epoch=None) -> dict:
    S = model.copies
    tests = M.evaluate_copies(model, [data.test] * S)
    runs = []
    for s, seed in enumerate(args.seeds):
        per_task = M.per_task_error(tests[s]["correct"], data.test.tasks)
        runs.append({"seed": seed, "per_task": per_task, "valid_error": result.best_valid_error[s],
                     "best_epoch": result.best_epoch[s], "history": result.history[s].to_dict()})
    if args.save and save:
        best = min(range(S), key=lambda s: result.best_valid_error[s])
        save_checkpoint(args.save, model.select_copy(best), {"model": cfg.__dict__, "recipe": result.config},
                        result.history[best], vocab=data.vocab.words, tasks=list(data.tasks),
                        seed=args.seeds[best], test_error=runs[best]["per_task"], partial_epoch=partial_epoch)
    return {"runs": runs, "seconds": result.seconds, "recipe": result.config, "model": cfg.__dict__}


def model_config(args, data, joint: bool) -> M.MemN2NConfig:
    """M.paper_config (official PE matrix, fixed-size memory with empty slots) with the command-line changes."""
    return M.paper_config(data, joint=joint, embedding_dim=args.dim or (50 if joint else 20), hops=args.hops,
                          encoding=args.encoding, pe_formula=args.pe_formula, tying=args.tying,
                          nonlinearity=None if args.nonlinearity == "none" else args.nonlinearity,
                          slots=None if args.padding == "mask" else int(data.train.stories.shape[1]),
                          **({} if args.time_word is None else {"time_word": args.time_word == "yes"}))


def run_single(args) -> dict:
    """One model per task, as the official run_babi.m: each task has its own vocabulary, sentence length J and
    memory size min(50, longest story); the seeds of a task train side by side as copies."""
    tasks = [t for t in args.tasks if babi.task_available(t, "train", args.variant, args.data_dir)]
    skipped = [t for t in args.tasks if t not in tasks]
    for t in skipped:
        log(f"skipping task {t}: {babi.TASK_NAMES[t]} train file missing in {args.variant} (see RESULTS.md)")
    S = len(args.seeds)
    runs = [{"seed": seed, "per_task": {}, "valid_error": {}, "best_epoch": {}, "train_error": {},
             "final": {"per_task": {}, "valid_error": {}, "train_error": {}}} for seed in args.seeds]
    seconds, configs, recipe = 0.0, {}, None
    for t in tasks:
        data = babi.load_babi(t, args.variant, args.data_dir, seed=args.split_seed)
        torch.manual_seed(1000 * args.seeds[0] + t)
        cfg = model_config(args, data, joint=False)
        model = M.MemN2N(cfg, copies=S)
        recipe = M.paper_recipe(joint=False, ten_k=args.variant == "en-10k", linear_start=not args.no_ls,
                                random_noise=not args.no_rn, seed=1000 * args.seeds[0] + t, **overrides(args))
        # the official code tests the model of the last epoch: record it too (the callback runs before fit
        # restores the best-validation weights), so one run gives both selections
        last_epoch = (recipe.ls_epochs if recipe.linear_start else 0) + recipe.epochs
        final = {}

        def at_epoch(epoch, partial, _best_state, data=data, last_epoch=last_epoch, final=final):
            if epoch == last_epoch:
                final["test"] = M.evaluate_copies(model, [data.test] * S)
                final["history"] = [vars(h) for h in partial.history]

        result = M.fit(model, data.train, data.valid, recipe, log=log if args.verbose else None, desc=f"task {t}",
                       report_every=1, report=at_epoch)
        tests = M.evaluate_copies(model, [data.test] * S)
        for s in range(S):
            runs[s]["per_task"][t] = tests[s]["error"]
            runs[s]["valid_error"][t] = result.best_valid_error[s]
            runs[s]["best_epoch"][t] = result.best_epoch[s]
            runs[s]["train_error"][t] = _train_error_at_best({"history": vars(result.history[s]),
                                                              "best_epoch": result.best_epoch[s]})
            if final:  # the last epoch's model: test error, and the last epoch's training and validation error
                metrics = final["history"][s]["metrics"]
                runs[s]["final"]["per_task"][t] = final["test"][s]["error"]
                runs[s]["final"]["train_error"][t] = metrics["train_error"][-1]
                runs[s]["final"]["valid_error"][t] = metrics["valid_error"][-1]
        seconds += result.seconds
        configs[t] = dict(cfg.__dict__)
        log(f"task {t}: test error per seed " + " ".join(f"{100 * tests[s]['error']:.1f}" for s in range(S))
            + f" ({result.seconds:.0f} s, {time.process_time():.0f} s CPU so far)")
        if args.save and t == 1:
            best = min(range(S), key=lambda s: result.best_valid_error[s])
            save_checkpoint(args.save, model.select_copy(best), {"model": cfg.__dict__, "recipe": result.config},
                            result.history[best], vocab=data.vocab.words, tasks=[1], seed=args.seeds[best],
                            test_error={1: tests[best]["error"]})
        if args.out:
            write_partial(args, {"runs": runs, "seconds": seconds, "recipe": result.config, "model": configs,
                                 "skipped_tasks": skipped}, f"task {t}")
    return {"runs": runs, "seconds": seconds, "recipe": recipe and vars(recipe), "model": configs,
            "skipped_tasks": skipped}


def write_partial(args, report: dict, epoch: int) -> None:
    """Write the results so far (weights selected on validation up to ``epoch``) to ``<out>.partial.json``."""
    report = dict(report, mode=args.mode, variant=args.variant, partial=True, epochs_done=epoch, argv=sys.argv,
                  written=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), loadavg=os.getloadavg())
    path = Path(args.out).with_suffix(".partial.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, default=str))
    means = [summarise(r["per_task"]) for r in report["runs"]]
    log(f"partial report after epoch {epoch}: mean test error per seed "
        + ", ".join(f"{m:.2f}% ({f} failed)" for m, f in means))


def overrides(args) -> dict:
    out = {}
    if args.epochs is not None:
        out["epochs"] = args.epochs
    if args.ls_epochs is not None:
        out["ls_epochs"] = args.ls_epochs
    if args.lr is not None:
        out["lr"] = out["ls_lr"] = args.lr
    if args.anneal_every is not None:
        out["anneal_every"] = args.anneal_every
    if args.ls_patience is not None:
        out["ls_patience"] = args.ls_patience
    out["clip"] = args.clip
    if args.nil_gradient is not None:
        out["nil_gradient"] = args.nil_gradient == "yes"
    if args.sampling is not None:
        out["sampling"] = args.sampling
    return out


def table(report: dict, paper: dict[int, float] | None) -> str:
    runs = report["runs"]
    tasks = sorted(runs[0]["per_task"])
    head = "| task | " + " | ".join(f"seed {r['seed']}" for r in runs) + " | median |" + (" paper |" if paper else "")
    rule = "|---:|" + "---:|" * (len(runs) + 1) + ("---:|" if paper else "")
    lines = [head, rule]
    for t in tasks:
        vals = [100 * r["per_task"][t] for r in runs]
        row = f"| {t} | " + " | ".join(f"{v:.1f}" for v in vals) + f" | {statistics.median(vals):.1f} |"
        if paper:
            row += f" {paper[t]:.1f} |"
        lines.append(row)
    means = [summarise(r["per_task"]) for r in runs]
    lines.append("| **mean** | " + " | ".join(f"**{m:.1f}**" for m, _ in means)
                 + f" | **{statistics.median(m for m, _ in means):.1f}** |"
                 + (f" **{sum(paper[t] for t in tasks) / len(tasks):.1f}** |" if paper else ""))
    lines.append("| failed (>5%) | " + " | ".join(str(f) for _, f in means)
                 + f" | {statistics.median(f for _, f in means):g} |"
                 + (f" {sum(paper[t] > 5 for t in tasks)} |" if paper else ""))
    return "\n".join(lines)


def _train_error_at_best(run: dict) -> float | None:
    """A joint run's training error at its selected (best-validation) epoch, from the saved history."""
    history = run.get("history")
    if not history or run.get("best_epoch", -1) < 0:
        return None
    steps, errors = history["steps"], history["metrics"]["train_error"]
    return errors[steps.index(run["best_epoch"])]


def protocol_table(runs: list[dict], paper: dict[int, float] | None) -> str:
    """Per task: every run, the *median of independent seeds*, and *the paper's protocol* (best of N restarts,
    chosen on training error as Sukhbaatar et al. Sec. 4.2 did, and on validation error). Joint runs are chosen
    as a whole (one model for all tasks); single-task runs per task (reports written before single mode saved
    the training error per task give only the validation choice)."""
    tasks = sorted(runs[0]["per_task"])
    joint = not isinstance(runs[0]["valid_error"], dict)
    n = len(runs)
    if joint:
        by_valid = min(range(n), key=lambda i: runs[i]["valid_error"])
        train_errs = [_train_error_at_best(r) for r in runs]
        by_train = min(range(n), key=lambda i: train_errs[i]) if None not in train_errs else None
        pick_valid = {t: by_valid for t in tasks}
        pick_train = {t: by_train for t in tasks} if by_train is not None else None
    else:
        pick_valid = {t: min(range(n), key=lambda i: runs[i]["valid_error"][t]) for t in tasks}
        have_train = all(r.get("train_error", {}).get(t) is not None for r in runs for t in tasks)
        pick_train = ({t: min(range(n), key=lambda i: runs[i]["train_error"][t]) for t in tasks}
                      if have_train else None)
    head = ("| task | " + " | ".join(f"seed {r['seed']}" for r in runs) + f" | **median of {n} seeds** | "
            f"best of {n} on training error | best of {n} on validation error |" + (" paper |" if paper else ""))
    lines = [head, "|---:|" + "---:|" * (n + 3) + ("---:|" if paper else "")]
    cols = {"seeds": [[100 * r["per_task"][t] for t in tasks] for r in runs]}
    median_col = [statistics.median(c[k] for c in cols["seeds"]) for k in range(len(tasks))]
    train_col = None if pick_train is None else [100 * runs[pick_train[t]]["per_task"][t] for t in tasks]
    valid_col = [100 * runs[pick_valid[t]]["per_task"][t] for t in tasks]
    fmt = lambda v: "–" if v is None else f"{v:.1f}"  # noqa: E731
    for k, t in enumerate(tasks):
        lines.append(f"| {t} | " + " | ".join(f"{c[k]:.1f}" for c in cols["seeds"]) + f" | **{median_col[k]:.1f}** | "
                     f"{fmt(None if train_col is None else train_col[k])} | {valid_col[k]:.1f} |"
                     + (f" {paper[t]:.1f} |" if paper else ""))
    mean = lambda col: sum(col) / len(col)  # noqa: E731
    failed = lambda col: sum(v > 100 * FAIL_THRESHOLD for v in col)  # noqa: E731
    seed_means = [mean(c) for c in cols["seeds"]]
    seed_failed = [failed(c) for c in cols["seeds"]]
    lines.append("| **mean** | " + " | ".join(f"{m:.1f}" for m in seed_means)
                 + f" | **{statistics.median(seed_means):.1f}** | {fmt(None if train_col is None else mean(train_col))}"
                 f" | {mean(valid_col):.1f} |" + (f" {mean([paper[t] for t in tasks]):.1f} |" if paper else ""))
    lines.append("| failed (> 5 %) | " + " | ".join(str(f) for f in seed_failed)
                 + f" | **{statistics.median(seed_failed):g}** | "
                 f"{'–' if train_col is None else failed(train_col)} | {failed(valid_col)} |"
                 + (f" {failed([paper[t] for t in tasks])} |" if paper else ""))
    note = ("median column: per task the median over seeds; its mean and failed rows are the medians of the "
            "seeds' means and failure counts.")
    return "\n".join(lines) + "\n\n" + note


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["joint", "single", "table", "protocol"],
                        help="'table' prints the table of a saved JSON report (--out); 'protocol' the two-column "
                             "table (median of seeds, best of N restarts) of the reports in --files")
    parser.add_argument("--files", nargs="+", default=None, help="protocol mode: JSON reports, one or more seeds each")
    parser.add_argument("--weights", default="best", choices=["best", "final"],
                        help="protocol mode, single-task reports: each run's best-validation weights (default) or "
                             "its last epoch's model, as the official code tests")
    parser.add_argument("--variant", default="en", choices=babi.VARIANTS)
    parser.add_argument("--tasks", type=int, nargs="+", default=list(babi.ALL_TASKS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--hops", type=int, default=3)
    parser.add_argument("--dim", type=int, default=None, help="embedding size (default 50 joint, 20 single)")
    parser.add_argument("--encoding", default="pe", choices=["pe", "bow"])
    parser.add_argument("--tying", default="adjacent", choices=["adjacent", "layerwise"])
    parser.add_argument("--nonlinearity", default="none", choices=["none", "relu"],
                        help="relu: u^{k+1} = ReLU(u^k + o^k), the official add_nonlin; with --dim 100 the "
                             "paper's PE LS RN* model (Table 3, 10k)")
    parser.add_argument("--pe-formula", default="official", choices=["paper", "official"],
                        help="PE matrix: the official code's (default) or the paper's printed formula (half as large)")
    parser.add_argument("--padding", default="empty", choices=["empty", "mask"],
                        help="unfilled memory slots: empty memories in the softmax (official code, default) or masked")
    parser.add_argument("--time-word", default=None, choices=["yes", "no"],
                        help="temporal encoding as the official code's time word (default: paper_config's)")
    parser.add_argument("--sampling", default=None, choices=["permutation", "replacement"],
                        help="batches: a permutation per epoch, or drawn with replacement (official train.m)")
    parser.add_argument("--verbose", action="store_true", help="log every epoch (single mode)")
    parser.add_argument("--no-ls", action="store_true", help="no linear start")
    parser.add_argument("--no-rn", action="store_true", help="no random noise")
    parser.add_argument("--epochs", type=int, default=None, help="override the number of softmax-phase epochs")
    parser.add_argument("--ls-epochs", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None, help="learning rate of both phases (default 0.005 with LS)")
    parser.add_argument("--anneal-every", type=int, default=None)
    parser.add_argument("--clip", default="per_matrix", choices=["global", "per_matrix"],
                        help="gradient clipping: global norm (paper) or per matrix (official code)")
    parser.add_argument("--ls-patience", type=int, default=None,
                        help="not recommended (warns): end linear start once the validation loss has not improved "
                             "for this many epochs; the linear-phase loss is too noisy to stop on (RESULTS)")
    parser.add_argument("--nil-gradient", default=None, choices=["yes", "no"],
                        help="the nil word's rows get the official code's gradient, counted in per-matrix "
                             "clipping (default: paper_recipe's)")
    parser.add_argument("--split-seed", type=lambda v: None if v == "tail" else int(v), default=0,
                        help="seed of the 10%% validation split; 'tail': each task's last 10%% (official single-task)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--report-every", type=int, default=5,
                        help="write <out>.partial.json every this many softmax-phase epochs")
    parser.add_argument("--out", default=None, help="write the JSON report here")
    parser.add_argument("--save", default=None, help="save the checkpoint of the best-validation model here")
    args = parser.parse_args(argv)
    if args.mode == "protocol":
        runs, modes, variants = [], set(), set()
        for name in args.files:
            report = json.loads(Path(name).read_text())
            modes.add(report.get("mode")), variants.add(report.get("variant", "en"))
            for run in report["runs"]:
                if args.weights == "final":
                    if "final" not in run:
                        parser.error(f"{name} has no last-epoch figures (written before the benchmark saved them)")
                    run.update(run["final"])
                run["per_task"] = {int(k): v for k, v in run["per_task"].items()}
                if isinstance(run["valid_error"], dict):
                    run["valid_error"] = {int(k): v for k, v in run["valid_error"].items()}
                    run["train_error"] = {int(k): v for k, v in run.get("train_error", {}).items()}
                same = [r for r in runs if r["seed"] == run["seed"] and isinstance(r["valid_error"], dict)
                        and isinstance(run["valid_error"], dict) and not set(r["per_task"]) & set(run["per_task"])]
                if same:  # single-task reports split over files (different tasks, same seed): merge them
                    for key in ("per_task", "valid_error", "best_epoch", "train_error"):
                        same[0].setdefault(key, {}).update({int(k): v for k, v in run.get(key, {}).items()})
                else:
                    runs.append(run)
        paper = None
        if variants == {"en"} and len(modes) == 1:
            paper = M.PAPER_ERRORS["joint_pe_ls_rn" if modes == {"joint"} else "single_pe_ls_rn"]
        print(protocol_table(runs, paper))
        return 0
    if args.mode == "table":
        report = json.loads(Path(args.out).read_text())
        for run in report["runs"]:
            run["per_task"] = {int(k): v for k, v in run["per_task"].items()}
        mode = report.get("mode") or ("joint" if "joint" in report.get("argv", []) else "single")
        paper = None  # the library holds the paper's 1k figures only
        if report.get("variant", "en") == "en":
            paper = M.PAPER_ERRORS["joint_pe_ls_rn" if mode == "joint" else "single_pe_ls_rn"]
        print(table(report, paper))
        means = [summarise(r["per_task"]) for r in report["runs"]]
        print(f"\nmedian over seeds: mean error {statistics.median(m for m, _ in means):.2f} %, failed tasks "
              f"{statistics.median(f for _, f in means):g}; partial: {report.get('partial', False)} "
              f"(epochs done: {report.get('epochs_done', 'all')}); training time {report['seconds']:.0f} s")
        return 0
    torch.set_num_threads(args.threads)
    start = time.time()
    load_before = os.getloadavg()
    report = run_joint(args) if args.mode == "joint" else run_single(args)
    report.update(mode=args.mode, variant=args.variant, argv=sys.argv, wall_seconds=time.time() - start,
                  cpu_seconds=time.process_time(),
                  loadavg_start=load_before, loadavg_end=os.getloadavg(),
                  finished=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))
    paper = None
    if args.variant == "en" and args.hops == 3 and not args.no_ls and not args.no_rn and args.encoding == "pe":
        paper = PAPER_JOINT_PE_LS_RN if args.mode == "joint" else PAPER_SINGLE_PE_LS_RN
    text = table(report, paper)
    print(text)
    means = [summarise(r["per_task"]) for r in report["runs"]]
    print(f"\nmedian over seeds: mean error {statistics.median(m for m, _ in means):.2f} %, "
          f"failed tasks {statistics.median(f for _, f in means):g}; wall {report['wall_seconds']:.0f} s, "
          f"CPU {report['cpu_seconds']:.0f} s")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
