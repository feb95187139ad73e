"""Chapter 5 benchmark: Key-Value Memory Networks on the generated WikiMovies-style KB.

Trains one KV-MemNN per memory representation (KB triples, sentences, windows, windows + title, windows +
centre encoding + title) on the same generated questions, reports test hits@1 and CPU training time, then edits
the KB (new films with people the model never saw; changed directors) and reports the fraction of the edited
facts answered correctly WITHOUT retraining.

    python benchmarks/kvmemnn.py                       # the RESULTS.md configuration
    python benchmarks/kvmemnn.py --kinds kb --steps 300 --films 100   # quick look
    python benchmarks/kvmemnn.py --save-checkpoints    # also (re)write the shipped checkpoints

Paper figures for comparison (WikiMovies, Miller et al. 2016, Table 2): KB 93.9, documents (window + centre
encoding + title) 76.2 hits@1.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("MEM_TUTORIAL_PROGRESS", "0")

import torch  # noqa: E402

from mem_tutorial.data.moviekb import (  # noqa: E402
    MEMORY_KINDS,
    generate_kb,
    generate_questions,
    make_edits,
    split_questions,
    tokenize,
)
from mem_tutorial.models.kvmemnn import (  # noqa: E402
    CHECKPOINT_DIR,
    KVMemNN,
    build_vocab,
    evaluate,
    movie_reader,
    train_kvmemnn,
)
from mem_tutorial.runtime import seed_everything  # noqa: E402
from mem_tutorial.train import save_checkpoint  # noqa: E402

SHIPPED = ("kb", "window+center+title")


def run_kind(kind, kb, train_q, test_q, args, restrict=True):
    seed_everything(args.seed, threads=args.threads)
    reader0 = movie_reader(kb, kind, entity_dim=args.entity_dim, window=args.window)
    train_tok = [tokenize(q.text, kb) for q in train_q]
    vocab = build_vocab(reader0.memories, train_tok, kb.entities)
    reader = movie_reader(kb, kind, vocab, entity_dim=args.entity_dim, window=args.window,
                          restrict_candidates=restrict)
    model = KVMemNN(len(vocab), word_dim=args.word_dim, entity_dim=args.entity_dim, hops=args.hops)
    t0, c0 = time.perf_counter(), time.process_time()
    history = train_kvmemnn(model, reader, train_tok, [q.answers for q in train_q], args.steps,
                            batch_size=args.batch_size, lr=args.lr, seed=args.seed, desc=kind)
    seconds = time.perf_counter() - t0
    cpu_seconds = time.process_time() - c0
    test_tok = [tokenize(q.text, kb) for q in test_q]
    hits = evaluate(model, reader, test_tok, [q.answers for q in test_q])
    return model, vocab, history, hits, seconds, cpu_seconds


def edit_accuracy(model, vocab, kind, kb, args, restrict=True):
    edited, questions = make_edits(kb, args.edits, args.edits, seed=args.seed + 1)
    reader = movie_reader(edited, kind, vocab, entity_dim=args.entity_dim, window=args.window,
                          restrict_candidates=restrict)
    toks = [tokenize(q.text, edited) for q in questions]
    new_films = [q for q in questions[: -args.edits]]
    changed = questions[-args.edits:]
    acc_new = evaluate(model, reader, toks[: len(new_films)], [q.answers for q in new_films])
    acc_changed = evaluate(model, reader, toks[len(new_films):], [q.answers for q in changed])
    acc_all = evaluate(model, reader, toks, [q.answers for q in questions])
    return acc_all, acc_new, acc_changed, len(questions)


def run_babi(args):
    """The bAbI bridge: KV memories over bAbI stories (mem_tutorial.data.babi_kv), 1k training set."""
    from mem_tutorial.data.babi import load_task
    from mem_tutorial.data.babi_kv import KINDS, babi_kv
    from mem_tutorial.models.kvmemnn import KVReader

    print("\n| bAbI task | memory | test accuracy (%) | training wall (s) | training CPU (s) |")
    print("|---|---|---|---|---|")
    for task in [int(t) for t in args.babi_tasks.split(",") if t]:
        train = load_task(task, "train", data_dir=args.babi_dir, download=False)
        test = load_task(task, "test", data_dir=args.babi_dir, download=False)
        for kind in KINDS:
            data = babi_kv(list(train) + list(test), kind)
            n = len(train)
            vocab = build_vocab(data.memories, data.questions[:n], data.entities)
            reader = KVReader(data.entities, data.memories, vocab, entity_dim=args.entity_dim, max_frequency=60,
                              max_memories=None)
            seed_everything(args.seed, threads=args.threads)
            model = KVMemNN(len(vocab), word_dim=args.word_dim, entity_dim=args.entity_dim, hops=3)
            t0, c0 = time.perf_counter(), time.process_time()
            train_kvmemnn(model, reader, data.questions[:n], data.answers[:n], args.steps, batch_size=args.batch_size,
                          lr=args.lr, seed=args.seed, desc=f"bAbI {task} {kind}")
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            acc = evaluate(model, reader, data.questions[n:], data.answers[n:])
            print(f"| {task} | {kind} | {100 * acc:.1f} | {wall:.1f} | {cpu:.1f} |", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--films", type=int, default=300, help="generated films (KB size)")
    p.add_argument("--seed", type=int, default=0, help="generator, split and training seed")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--hops", type=int, default=2)
    p.add_argument("--word-dim", type=int, default=32)
    p.add_argument("--entity-dim", type=int, default=64)
    p.add_argument("--window", type=int, default=7, help="window size W (tokens) for window memories")
    p.add_argument("--edits", type=int, default=50, help="new films and director changes (each)")
    p.add_argument("--kinds", default=",".join(MEMORY_KINDS), help=f"comma-separated subset of {MEMORY_KINDS}")
    p.add_argument("--no-unrestricted", action="store_true", help="skip the all-entities-as-candidates KB run")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--babi-tasks", default="", help="also run the bAbI bridge on these tasks (e.g. 1,2); "
                   "needs the bAbI files ($MEM_TUTORIAL_BABI_DIR or the cache)")
    p.add_argument("--babi-dir", default=None, help="folder holding tasks_1-20_v1-2 (default: loader's search)")
    p.add_argument("--save-checkpoints", action="store_true", help=f"write the shipped checkpoints ({SHIPPED})")
    args = p.parse_args(argv)

    if args.kinds == "none":
        return run_babi(args)
    kb = generate_kb(args.films, args.seed)
    questions = generate_questions(kb, args.seed)
    train_q, valid_q, test_q = split_questions(questions, args.seed)
    print(f"KB: {len(kb.films)} films, {len(kb.entities)} entities, {len(kb.triples())} facts; questions: "
          f"{len(train_q)} train / {len(valid_q)} valid / {len(test_q)} test")
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, threads {args.threads}, "
          f"load {os.getloadavg()[0]:.2f}")
    rows = []
    runs = [(k, True) for k in args.kinds.split(",")]
    if "kb" in args.kinds.split(",") and not args.no_unrestricted:
        runs.insert(1, ("kb", False))
    results, trained = {}, {}
    for kind, restrict in runs:
        model, vocab, history, hits, seconds, cpu = run_kind(kind, kb, train_q, test_q, args, restrict)
        label = kind if restrict else "kb (all entities as candidates)"
        edit = edit_accuracy(model, vocab, kind, kb, args, restrict)
        rows.append((label, hits, seconds, cpu, *edit))
        results[label] = {"hits@1": round(hits, 4), "train_s": round(seconds, 1), "train_cpu_s": round(cpu, 1),
                          "edit_all": round(edit[0], 4),
                          "edit_new_films": round(edit[1], 4), "edit_changed_directors": round(edit[2], 4)}
        print(f"  {label:34s} hits@1 {100 * hits:5.1f}  train {seconds:6.1f} s (CPU {cpu:6.1f} s)  "
              f"edits {100 * edit[0]:5.1f} (new films {100 * edit[1]:5.1f}, changed directors {100 * edit[2]:5.1f}, "
              f"{edit[3]} questions)", flush=True)
        if args.save_checkpoints and restrict and kind in SHIPPED:
            trained[kind] = (model, vocab, history, hits, edit[0])
    for kind, (model, vocab, history, hits, edit_all) in trained.items():
        path = CHECKPOINT_DIR / f"kvmemnn_{kind.replace('+', '_')}.pt"
        save_checkpoint(path, model, dataclasses.asdict(model.config), history, vocab=vocab.itos, kind=kind,
                        kb={"n_films": args.films, "seed": args.seed}, steps=args.steps,
                        test_hits_at_1=round(hits, 4), edit_accuracy=round(edit_all, 4), benchmark=results)
        print(f"  saved {path} ({path.stat().st_size / 1024:.0f} KiB)")
    print()
    print("| memory | test hits@1 (%) | training wall (s) | training CPU (s) | edited facts answered (%) "
          "| new films (%) | changed directors (%) |")
    print("|---|---|---|---|---|---|---|")
    for label, hits, seconds, cpu, acc, acc_new, acc_changed, n in rows:
        print(f"| {label} | {100 * hits:.1f} | {seconds:.1f} | {cpu:.1f} | {100 * acc:.1f} | {100 * acc_new:.1f} | "
              f"{100 * acc_changed:.1f} |")
    if args.babi_tasks:
        run_babi(args)
    print(f"\ncommand: python {' '.join([Path(sys.argv[0]).as_posix()] + (argv or sys.argv[1:]))}")
    return results


if __name__ == "__main__":
    main()
