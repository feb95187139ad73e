"""How much the nil word's gradient changes per-matrix clipping (MemN2N, issue #20): a measurement, no training.

For batches of 32 training questions (joint 1k data, or a subset of tasks), the gradient of the summed loss is
computed twice with the same weights: as our library computes it (padding words and empty slots are not looked
up: the nil rows get no gradient from the memories) and as the official code computes it
(``nil_gradient=True``). For every word matrix E_k it prints the 2-norm (largest singular value) of the gradient
with and without its nil row, and the share of steps in which Weight.m's clipping at 40 would rescale it.

    nice -n 10 python benchmarks/memn2n_nil_gradient.py --tasks 1 6 15 16 --batches 20
    nice -n 10 python benchmarks/memn2n_nil_gradient.py --batches 20                 # all 20 tasks
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch
import torch.nn.functional as F

from mem_tutorial.data import babi
from mem_tutorial.models import memn2n as M


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, nargs="+", default=list(babi.ALL_TASKS))
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--checkpoint", default=None, help="weights to measure at (default: the initialisation)")
    parser.add_argument("--linear", action="store_true", help="linear-start mode (no memory softmax)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    data = babi.load_babi(args.tasks)
    torch.manual_seed(args.seed)
    if args.checkpoint:
        model, _ = M.load_memn2n(args.checkpoint)
    else:
        model = M.MemN2N(M.paper_config(data, joint=True))
    g = torch.Generator().manual_seed(args.seed)
    T = model.config.memory_size
    rows = {False: [], True: []}
    for _ in range(args.batches):
        idx = torch.randint(len(data.train), (32,), generator=g)
        stories, mask, queries, answers = (t.unsqueeze(0) for t in data.train.subset(idx).as_tuple()[:4])
        stories, mask, queries = M._trim(stories, mask, queries)
        ages = M.random_noise_ages(mask[0], max_age=T - 1, generator=g).unsqueeze(0)
        for flag in (False, True):
            model.zero_grad()
            logits = model(stories, mask, queries, ages=ages, linear=args.linear, nil_gradient=flag).logits
            F.cross_entropy(logits.transpose(1, 2), answers, reduction="sum").backward()
            norms = []
            for E in model.embeddings:
                grad = E.grad[0]
                norms.append((float(torch.linalg.matrix_norm(grad, ord=2)),
                              float(torch.linalg.matrix_norm(grad[1:], ord=2)), float(grad[0].norm())))
            rows[flag].append(norms)
    report = {"tasks": args.tasks, "batches": args.batches, "linear": args.linear, "checkpoint": args.checkpoint,
              "slots": model.config.slots, "J": model.config.sentence_length, "matrices": {}}
    print(f"tasks {args.tasks if len(args.tasks) < 20 else 'all 20'}; slots {model.config.slots}, "
          f"J {model.config.sentence_length}; {'linear start' if args.linear else 'softmax'}; "
          f"{args.batches} batches of 32; medians")
    print("matrix | ||grad|| ours | ||grad|| official | ||nil row|| official | clipped at 40: ours / official")
    for k in range(len(model.embeddings)):
        ours = [r[k][0] for r in rows[False]]
        official = [r[k][0] for r in rows[True]]
        nil = [r[k][2] for r in rows[True]]
        entry = {"ours": statistics.median(ours), "official": statistics.median(official),
                 "nil_row": statistics.median(nil), "clipped_ours": sum(n > 40 for n in ours) / len(ours),
                 "clipped_official": sum(n > 40 for n in official) / len(official)}
        report["matrices"][f"E{k}"] = entry
        print(f"E{k} | {entry['ours']:.1f} | {entry['official']:.1f} | {entry['nil_row']:.1f} | "
              f"{entry['clipped_ours']:.0%} / {entry['clipped_official']:.0%}")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(report, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
