"""Chapter 6 benchmarks: the cost of dense addressing and what sparse, indexed access saves.

Sections (``--section``):
  read       dense content read vs top-k read (exact top-k, and top-k over ANN candidates) against N.
  ann        recall@10 and speed-up of approximate indexes against exact search at one N.
  model      sparse vs dense NTM on associative recall (needs mem_tutorial.models.ntm and tasks.algorithmic).
  retrieval  retrieve-then-read on the generated movie KB with pretrained-encoder keys (needs the text extra).

Examples:
  python benchmarks/memory_at_scale.py --section read --sizes 1000 10000 100000 1000000
  python benchmarks/memory_at_scale.py --section ann --n 1000000
"""

from __future__ import annotations

import argparse
import time

import torch

from mem_tutorial.memory import index as ix
from mem_tutorial.memory.access import read
from mem_tutorial.memory.addressing import content_weighting
from mem_tutorial.memory.sparse import topk_read


def timeit(fn, repeats: int) -> float:
    """Best (minimum) wall time of ``fn()`` in milliseconds after one warm-up call.

    The minimum, not the median: on a shared, oversubscribed machine the other processes only ever add time."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
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
    if ix.faiss_available():
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
    else:
        print("(faiss not installed: pip install 'mem-tutorial[faiss]' for the FAISS rows)")
    for name, b, t, r in rows:
        print(f"{name:>28} {b:>8.1f} {t:>10.3f} {t_exact / t:>8.1f}x {r:>10.3f}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--section", choices=["read", "ann", "model", "retrieval"], default="read")
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
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=None, help="training steps for --section model")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.section == "read":
        bench_read(args)
    elif args.section == "ann":
        bench_ann(args)
    elif args.section == "model":
        bench_model(args)
    else:
        bench_retrieval(args)


def bench_model(args) -> None:  # filled in once the Chapter 2 NTM is merged
    raise SystemExit("the model section needs mem_tutorial.models.ntm (Chapter 2); not available in this build")


def bench_retrieval(args) -> None:  # filled in once the Chapter 5 movie KB is merged
    raise SystemExit("the retrieval section needs mem_tutorial.data.moviekb (Chapter 5); not available in this build")


if __name__ == "__main__":
    main()
