"""GPU check (issue #17): full-mode training of each chapter's models on CUDA, with timings, optionally under
float16 mixed precision, and (from ``gpu_check.sh``) the solution notebooks executed on CUDA.

    python benchmarks/gpu_check.py --json gpu_check.json            # float32
    python benchmarks/gpu_check.py --amp --json gpu_check_amp.json  # float16 autocast + GradScaler (T4: no bf16)
    python benchmarks/gpu_check.py --device cpu --scale 0.01        # a smoke run of the code paths, no GPU

Without a CUDA device (and without ``--device cpu``) it exits at once with status 2 and says so. Each section
trains one chapter's model at the notebook's full-mode sizes for a fixed number of steps and reports wall time
(CUDA-synchronised), steps per second and the final loss; metrics stay on the GPU until the end of a section
(no per-step host reads). A failing section is reported and the others still run; the exit status is 1 if any
failed. Sections: ch1 associative memory, ch2 NTM copy (eager and compiled) and the LSTM baseline, ch3 DNC on the
reuse task (eager, compiled, sparse link) and at paper size, ch4 MemN2N on bAbI task 1 (needs the data), ch5
KV-MemNN on the generated movie KB, ch6 SAM on associative recall.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402


class Runner:
    """Mixed precision and timing shared by the sections."""

    def __init__(self, device: torch.device, amp: bool, scale: float):
        self.device, self.amp, self.scale = device, amp, scale
        use_scaler = amp and device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda") if use_scaler else None

    def steps(self, n: int) -> int:
        return max(2, int(n * self.scale))

    def autocast(self):
        if not self.amp:
            return contextlib.nullcontext()
        dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        return torch.autocast(self.device.type, dtype=dtype)

    def update(self, loss: torch.Tensor, model: torch.nn.Module, opt: torch.optim.Optimizer, clip: float | None):
        opt.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(opt)
        else:
            loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        if self.scaler is not None:
            self.scaler.step(opt)
            self.scaler.update()
        else:
            opt.step()

    def sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def timed_loop(self, n: int, one_step, warmup: int = 1) -> dict:
        """Run ``one_step(i) -> loss tensor`` n times; time the steps after ``warmup`` (compilation, caches)."""
        t0 = time.perf_counter()
        losses = [one_step(i) for i in range(warmup)]
        self.sync()
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        losses += [one_step(i) for i in range(warmup, n)]
        self.sync()
        seconds = time.perf_counter() - t0
        last = torch.stack([loss.detach().float() for loss in losses[-10:]]).mean().item()  # one read at the end
        return dict(steps=n, warmup_s=round(first, 2), seconds=round(seconds, 2),
                    steps_per_s=round((n - warmup) / max(seconds, 1e-9), 2), final_loss=round(last, 4))


def sequence_section(r: Runner, model, make_batch, n: int, lr: float, clip: float | None = 10.0) -> dict:
    from mem_tutorial.tasks.training import task_loss

    model = model.to(r.device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(0)

    def one_step(i):
        batch = make_batch(gen).to(r.device)
        with r.autocast():
            logits, _ = model(batch.inputs)
        loss = task_loss(logits.float(), batch)
        r.update(loss, model, opt, clip)
        return loss

    return r.timed_loop(n, one_step, warmup=2 if getattr(model, "_compiled_steps", None) is not None else 1)


def ch1_associative(r: Runner) -> dict:
    from mem_tutorial.models.associative import AssociativeMemory
    from mem_tutorial.tasks.kv_recall import kv_recall_batch

    model = AssociativeMemory(8, 8, 32).to(r.device)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)

    def one_step(i):
        b = kv_recall_batch(64, 8, generator=gen, device=r.device)  # keys, values, query, target, index
        with r.autocast():
            logits = model(b[0], b[1], b[2])
        loss = F.binary_cross_entropy_with_logits(logits.float(), b[3])
        r.update(loss, model, opt, None)
        return loss

    return r.timed_loop(r.steps(3000), one_step)


def ch2_ntm(r: Runner, compiled: bool) -> dict:
    from mem_tutorial.models.ntm import NTM
    from mem_tutorial.tasks.algorithmic import copy_task

    model = NTM()  # the paper's copy setting: LSTM 100, 128 x 20, one read and one write head
    if compiled:
        model.compile_step(chunk=4)
    return sequence_section(r, model, lambda g: copy_task(32, max_len=20, generator=g), r.steps(1500), 1e-3)


def ch2_lstm(r: Runner) -> dict:
    from mem_tutorial.models.lstm import LSTMBaseline
    from mem_tutorial.tasks.algorithmic import copy_task

    return sequence_section(r, LSTMBaseline(), lambda g: copy_task(32, max_len=20, generator=g), r.steps(1500), 1e-3)


def ch3_dnc(r: Runner, variant: str) -> dict:
    from mem_tutorial.models.dnc import DNC
    from mem_tutorial.tasks.reuse import reuse_task

    task = dict(slots=6, rounds=2, min_frees=2, max_frees=5, keys=8, width=8)  # the notebook's TASK
    config = dict(input_size=18, output_size=8, memory_slots=6, word_size=16, read_heads=1, hidden_size=32)
    model = DNC(**config, **(dict(link="sparse", link_k=2) if variant == "sparse" else {}))
    if variant == "compiled":
        model.compile_step(chunk=4)
    return sequence_section(r, model, lambda g: reuse_task(32, generator=g, **task), r.steps(2000), 3e-3)


def ch3_dnc_paper_size(r: Runner, variant: str) -> dict:
    """The speed benchmark's sizes (N = 128, W = 20, R = 4, LSTM 100) on copy length 20, batch 32."""
    from mem_tutorial.models.dnc import DNC
    from mem_tutorial.tasks.algorithmic import copy_task

    model = DNC(9, 8, 128, 20, 4, 100, **(dict(link="sparse", link_k=8) if variant == "sparse" else {}))
    if variant == "compiled":
        model.compile_step(chunk=4)
    return sequence_section(r, model, lambda g: copy_task(32, min_len=20, max_len=20, generator=g), r.steps(300), 1e-4)


def ch4_memn2n(r: Runner) -> dict:
    from mem_tutorial.data import babi
    from mem_tutorial.models import memn2n as M

    data = babi.load_babi(1)  # MEM_TUTORIAL_BABI_DIR, the course cache, or a download
    model = M.MemN2N(M.paper_config(data)).to(r.device)
    recipe = M.paper_recipe()
    recipe.epochs, recipe.ls_epochs = max(1, int(recipe.epochs * r.scale)), max(0, int(recipe.ls_epochs * r.scale))
    t0 = time.perf_counter()
    result = M.fit(model, data.train, data.valid, recipe)
    r.sync()
    return dict(epochs=recipe.epochs + recipe.ls_epochs, seconds=round(time.perf_counter() - t0, 2),
                best_valid_error=[round(float(e), 4) for e in result.best_valid_error])


def ch5_kvmemnn(r: Runner) -> dict:
    from mem_tutorial.data.moviekb import generate_kb, generate_questions, kb_memories, tokenize
    from mem_tutorial.models.kvmemnn import KVMemNN, KVReader, build_vocab, train_kvmemnn

    kb = generate_kb(seed=0)
    qs = generate_questions(kb, seed=0)
    toks = [tokenize(q.text, kb) for q in qs]
    mems = kb_memories(kb)
    vocab = build_vocab(mems, toks, kb.entities)
    reader = KVReader(kb.entities, mems, vocab, entity_dim=64)
    model = KVMemNN(len(vocab)).to(r.device)
    steps = r.steps(2000)
    t0 = time.perf_counter()
    history = train_kvmemnn(model, reader, toks, [q.answers for q in qs], steps=steps)
    r.sync()
    seconds = time.perf_counter() - t0
    return dict(steps=steps, seconds=round(seconds, 2), steps_per_s=round(steps / seconds, 2),
                final_loss=round(history.last("loss"), 4))


def ch6_sam(r: Runner, dense: bool) -> dict:
    from mem_tutorial.models.sam import SAM
    from mem_tutorial.tasks.algorithmic import associative_recall_task

    model = SAM(dense=dense)
    return sequence_section(r, model, lambda g: associative_recall_task(32, generator=g), r.steps(1500), 1e-3)


SECTIONS = {
    "ch1_associative": ch1_associative,
    "ch2_ntm_eager": lambda r: ch2_ntm(r, False),
    "ch2_ntm_compiled": lambda r: ch2_ntm(r, True),
    "ch2_lstm": ch2_lstm,
    "ch3_dnc_eager": lambda r: ch3_dnc(r, "eager"),
    "ch3_dnc_compiled": lambda r: ch3_dnc(r, "compiled"),
    "ch3_dnc_sparse": lambda r: ch3_dnc(r, "sparse"),
    "ch3_dnc_paper_eager": lambda r: ch3_dnc_paper_size(r, "eager"),
    "ch3_dnc_paper_compiled": lambda r: ch3_dnc_paper_size(r, "compiled"),
    "ch3_dnc_paper_sparse": lambda r: ch3_dnc_paper_size(r, "sparse"),
    "ch4_memn2n": ch4_memn2n,
    "ch5_kvmemnn": ch5_kvmemnn,
    "ch6_sam": lambda r: ch6_sam(r, False),
    "ch6_dam": lambda r: ch6_sam(r, True),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu for a smoke run of the code paths")
    ap.add_argument("--amp", action="store_true", help="float16 autocast with a GradScaler (bfloat16 on CPU)")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every section's step count")
    ap.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=list(SECTIONS))
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device is available (torch.cuda.is_available() is False; torch "
              f"{torch.__version__}, built with CUDA {torch.version.cuda}). Nothing was run. Use a machine with an "
              "NVIDIA GPU and a CUDA build of torch, or --device cpu for a smoke run.", file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = False  # float32 means float32 (the notebooks' numerics)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"gpu_check on {name}, torch {torch.__version__}, amp={args.amp}, scale={args.scale}", flush=True)
    results = dict(device=name, torch=torch.__version__, amp=args.amp, scale=args.scale, sections={},
                   started=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))
    failed = []
    for section in args.sections:
        torch.manual_seed(0)
        runner = Runner(device, args.amp, args.scale)
        try:
            row = SECTIONS[section](runner)
            if device.type == "cuda":
                row["max_memory_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
                torch.cuda.reset_peak_memory_stats(device)
        except Exception as exc:  # report and go on with the other sections
            failed.append(section)
            row = dict(error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc(limit=4))
        results["sections"][section] = row
        print(f"{section:<24} {json.dumps({k: v for k, v in row.items() if k != 'traceback'})}", flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
    print("FAILED: " + ", ".join(failed) if failed else "all sections ran", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
