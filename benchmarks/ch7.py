"""Chapter 7 benchmarks: kNN-LM, retrieve-then-generate, one-shot image memory (MANN) — and the checkpoints.

    python benchmarks/ch7.py --section lm --size fast --train      # train + save tinylm_fast.pt, then measure
    python benchmarks/ch7.py --section lm --size full --train
    python benchmarks/ch7.py --section mann --train                # train + save mann_digits.pt / lstm_digits.pt
    python benchmarks/ch7.py --section all                         # measure with the shipped checkpoints

Writes benchmarks/results/ch7_<section>_<size>.json. Single-threaded (torch.set_num_threads(1)).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from mem_tutorial.tasks import lm_world as lmworld

OUT = Path(__file__).resolve().parent / "results"


def section_lm(size: str, train: bool) -> dict:
    t0 = time.process_time()
    if train:
        model, vocab, losses = lmworld.train_world_lm(size, seed=0, log_every=100)
        lmworld.save_lm(model, size, losses)
    train_cpu = time.process_time() - t0
    model, vocab = lmworld.load_lm(size)
    res = lmworld.evaluate_all(model, vocab)
    res["train_cpu_s"] = round(train_cpu, 1)
    return res


def section_mann(train: bool, size: str) -> dict:
    t0 = time.process_time()
    from mem_tutorial.tasks import oneshot

    if train:
        oneshot.train_and_save(size)
    res = {"train_cpu_s": round(time.process_time() - t0, 1)}
    res.update(oneshot.evaluate_checkpoints(episodes=500))
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--section", choices=["lm", "mann", "all"], default="all")
    ap.add_argument("--size", choices=["fast", "full"], default="fast")
    ap.add_argument("--train", action="store_true")
    ap.add_argument("--out", help="folder for the MANN/LSTM checkpoints (default: the library's checkpoints/)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    OUT.mkdir(exist_ok=True)
    meta = {"machine": platform.processor() or platform.machine(), "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    for sec in (["lm", "mann"] if args.section == "all" else [args.section]):
        res = section_lm(args.size, args.train) if sec == "lm" else section_mann(args.train, args.size, args.out)
        res.update(meta)
        path = OUT / f"ch7_{sec}_{args.size}.json"
        path.write_text(json.dumps(res, indent=2))
        print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
