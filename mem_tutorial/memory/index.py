"""Finding the K best slots without scoring all N: nearest-neighbour indexes for memory lookup (Chapter 6).

Every index has the same two calls::

    index.build(keys)                       # keys [N, W]
    scores, ids = index.search(queries, k)  # queries [Q, W] -> [Q, k] each, best first

* :class:`ExactIndex` scores every key (O(N W) per query): the reference.
* :class:`IVFIndex`, written here for teaching: an inverted-file partition. ``build`` groups the keys
  under L k-means centroids (Lloyd 1982; spherical k-means for the cosine); ``search`` scores the L
  centroids, opens the ``n_probe`` best lists and scores only their keys (Jegou, Douze & Schmid 2011,
  "Product quantization for nearest neighbor search", Section 4, the IVF part without quantization).
  About O((L + N n_probe / L) W) per query.
* :class:`FaissIndex`: the same interface over FAISS (Johnson, Douze & Jegou 2019) when ``faiss`` is
  installed (``pip install "mem-tutorial[faiss]"``).
* :class:`HierarchicalMemory`: the two-level memory of Chandar et al. 2016, "Hierarchical Memory
  Networks": keys grouped under centroids, search the centroids first, then exact maximum inner product
  search (MIPS) inside the chosen groups, then a softmax over the K retrieved slots only. MIPS is turned
  into a cosine search with the augmentation of Bachrach et al. 2014 / Neyshabur & Srebro 2015
  (:func:`mips_to_cosine`), as in the clustering approach Chandar et al. use (Auvolat et al. 2015).

Metrics: ``"cosine"`` (the content addressing of Chapter 1, same ``COSINE_EPS``) or ``"ip"`` (inner
product). Scores are similarities: larger is better. Symbols: N keys, W width, Q queries, L lists
(centroids), P probed lists, k neighbours.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch

from mem_tutorial.memory._shapes import check_shape
from mem_tutorial.memory.addressing import COSINE_EPS

#: Metrics every index understands.
METRICS = ("cosine", "ip")

FAISS_MISSING = (
    "FAISS is not installed. It is optional: install it with\n"
    "    pip install \"mem-tutorial[faiss]\"      (or: pip install faiss-cpu)\n"
    "or use the teaching index mem_tutorial.memory.index.IVFIndex, which has the same interface."
)


class NearestNeighbourIndex(Protocol):
    """What the chapter's code needs from an index."""

    def build(self, keys: torch.Tensor) -> "NearestNeighbourIndex": ...

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]: ...


def _check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    return metric


def normalize(x: torch.Tensor) -> torch.Tensor:
    """x / sqrt(|x|^2 + COSINE_EPS) row-wise, so that dot products are Chapter 1's cosine similarities."""
    return x / torch.sqrt((x * x).sum(-1, keepdim=True) + COSINE_EPS)


def _check_k(k: int, n: int) -> None:
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, N={n}] (the number of indexed keys), got {k}")


def recall_at_k(found: torch.Tensor, exact: torch.Tensor) -> float:
    """Recall@k: the fraction of the exact k nearest neighbours that the approximate search found.

    Args:
        found: [Q, k] ids from an approximate index.
        exact: [Q, k] ids from exact search.
    """
    sizes = check_shape("exact", exact, "Q k")
    check_shape("found", found, "Q k", sizes)
    hits = (found.unsqueeze(-1) == exact.unsqueeze(1)).any(1)  # [Q, k]: exact neighbour j was found
    return float(hits.float().mean())


class ExactIndex:
    """Exhaustive search: score every key (the reference every approximate index is measured against)."""

    def __init__(self, metric: str = "cosine"):
        self.metric = _check_metric(metric)
        self.keys: torch.Tensor | None = None

    def build(self, keys: torch.Tensor) -> "ExactIndex":
        """Store the keys [N, W] (normalised for the cosine)."""
        check_shape("keys", keys, "N W")
        self.keys = normalize(keys) if self.metric == "cosine" else keys
        return self

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The k best keys for each query [Q, W]: (scores [Q, k], ids [Q, k]), best first."""
        if self.keys is None:
            raise RuntimeError("call build(keys) before search")
        check_shape("queries", queries, "Q W", {"W": self.keys.shape[1]})
        _check_k(k, self.keys.shape[0])
        q = normalize(queries) if self.metric == "cosine" else queries
        return (q @ self.keys.T).topk(k, dim=-1)


def kmeans(
    x: torch.Tensor, n_clusters: int, iters: int = 10, spherical: bool = True, seed: int = 0, chunk: int = 65536
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means: assign each point to its nearest centroid, move each centroid to its points' mean.

    Spherical (for unit-norm x, the cosine): assign by the largest dot product and renormalise the
    centroids (Dhillon & Modha 2001). Otherwise assign by the smallest Euclidean distance. A cluster
    left empty is re-seeded with a random point. Assignment runs in chunks of ``chunk`` points.

    Args:
        x: [N, W] points.
        n_clusters: L <= N.
        iters: Lloyd iterations.

    Returns:
        (centroids [L, W], assignment [N] int64).
    """
    check_shape("x", x, "N W")
    n = x.shape[0]
    if not 1 <= n_clusters <= n:
        raise ValueError(f"n_clusters must be in [1, N={n}], got {n_clusters}")
    g = torch.Generator(device="cpu").manual_seed(seed)
    centroids = x[torch.randperm(n, generator=g)[:n_clusters].to(x.device)].clone()
    assign = assign_to_centroids(x, centroids, spherical, chunk)
    for _ in range(iters):
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=n_clusters).to(x.dtype)
        empty = counts == 0
        centroids = sums / counts.clamp(min=1).unsqueeze(-1)
        if empty.any():
            refill = torch.randint(0, n, (int(empty.sum()),), generator=g).to(x.device)
            centroids[empty] = x[refill]
        if spherical:
            centroids = normalize(centroids)
        assign = assign_to_centroids(x, centroids, spherical, chunk)
    return centroids, assign


def assign_to_centroids(x: torch.Tensor, centroids: torch.Tensor, spherical: bool = True, chunk: int = 65536) -> torch.Tensor:
    """Index of the best centroid for each point: largest dot product (spherical) or nearest (Euclidean).

    Args:
        x: [N, W]; centroids: [L, W]. Returns [N] int64.
    """
    sizes = check_shape("x", x, "N W")
    check_shape("centroids", centroids, "L W", {"W": sizes["W"]})
    out = []
    c_sq = (centroids * centroids).sum(-1)
    for start in range(0, x.shape[0], chunk):  # chunks of points bound the [chunk, L] score matrix
        dots = x[start : start + chunk] @ centroids.T
        out.append(dots.argmax(-1) if spherical else (c_sq - 2 * dots).argmin(-1))
    return torch.cat(out)


def group_by_list(assign: torch.Tensor, n_lists: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverted lists: the key ids sorted by list, and where each list starts.

    Args:
        assign: [N] list of each key.

    Returns:
        (order [N]: key ids, list 0's first; offsets [L + 1]: list l is order[offsets[l]:offsets[l+1]]).
    """
    order = torch.argsort(assign, stable=True)
    counts = torch.bincount(assign, minlength=n_lists)
    offsets = torch.zeros(n_lists + 1, dtype=torch.long, device=assign.device)
    offsets[1:] = counts.cumsum(0)
    return order, offsets


def probe_candidates(
    centroid_scores: torch.Tensor, offsets: torch.Tensor, n_probe: int, min_candidates: int = 1
) -> torch.Tensor:
    """Positions (in list order) of every key in the ``n_probe`` best lists of each query, padded with -1.

    A query whose probed lists hold fewer than ``min_candidates`` keys opens further lists, best first,
    until it has enough. Vectorised over queries and lists (no loop over lists).

    Args:
        centroid_scores: [Q, L] query-centroid similarities.
        offsets: [L + 1] list boundaries from :func:`group_by_list`.
        n_probe: P, lists opened per query.
        min_candidates: at least this many candidates per query (e.g. k).

    Returns:
        [Q, C] int64 positions into the list-ordered keys (C = the largest candidate count; -1 pads).
    """
    q, n_lists = centroid_scores.shape
    device = centroid_scores.device
    ranked = centroid_scores.argsort(dim=-1, descending=True)  # [Q, L]
    sizes = (offsets[1:] - offsets[:-1])[ranked]  # [Q, L]
    before = sizes.cumsum(-1) - sizes  # keys in the better lists
    rank = torch.arange(n_lists, device=device).expand(q, n_lists)
    opened = (rank < n_probe) | (before < min_candidates)
    lens = torch.where(opened, sizes, torch.zeros_like(sizes)).reshape(-1)  # [Q L]
    starts = offsets[:-1][ranked].reshape(-1)
    per_query = lens.view(q, n_lists).sum(-1)  # [Q]
    # the output's size depends on the data: one host read for both numbers (then no other sync)
    total, width = torch.stack([per_query.sum(), per_query.max()]).tolist()
    seg = torch.repeat_interleave(torch.arange(q * n_lists, device=device), lens, output_size=total)  # segment of each candidate
    flat = torch.arange(total, device=device)
    within = flat - (lens.cumsum(0) - lens)[seg]
    qid = seg // n_lists
    col = flat - (per_query.cumsum(0) - per_query)[qid]
    out = torch.full((q, width), -1, dtype=torch.long, device=device)
    out[qid, col] = starts[seg] + within
    return out


def score_candidates(keys: torch.Tensor, queries: torch.Tensor, positions: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact scores of each query against its candidates only, and the top k of them.

    Args:
        keys: [N, W] (list-ordered); queries: [Q, W]; positions: [Q, C] rows of ``keys`` (-1 = padding).

    Returns:
        (scores [Q, k], positions [Q, k]), best first.
    """
    valid = positions >= 0
    rows = keys.index_select(0, positions.clamp(min=0).reshape(-1)).view(*positions.shape, -1)  # [Q, C, W]
    scores = torch.bmm(rows, queries.unsqueeze(-1)).squeeze(-1).masked_fill(~valid, float("-inf"))
    top = scores.topk(k, dim=-1)
    return top.values, positions.gather(-1, top.indices)


class IVFIndex:
    """Inverted-file index written for teaching: k-means lists, probe the best ``n_probe`` (Jegou et al. 2011).

    Args:
        n_lists: L, the number of k-means lists (default round(sqrt(N)) at build time).
        n_probe: P, lists scored per query (more: higher recall, slower).
        metric: "cosine" or "ip" (inner product, via :func:`mips_to_cosine`).
        iters: k-means iterations.
        train_size: k-means is fitted on at most this many keys (a random sample); all keys are assigned.
        seed: k-means seed.
    """

    def __init__(
        self,
        n_lists: int | None = None,
        n_probe: int = 8,
        metric: str = "cosine",
        iters: int = 10,
        train_size: int = 100_000,
        seed: int = 0,
    ):
        if n_probe < 1:
            raise ValueError(f"n_probe must be >= 1, got {n_probe}")
        self.n_lists, self.n_probe, self.metric = n_lists, n_probe, _check_metric(metric)
        self.iters, self.train_size, self.seed = iters, train_size, seed
        self.centroids = self.keys = self.ids = self.offsets = None
        self._max_norm = 1.0

    def _prepare_keys(self, keys: torch.Tensor) -> torch.Tensor:
        if self.metric == "cosine":
            return normalize(keys)
        self._max_norm = float(keys.norm(dim=-1).max()) or 1.0
        return mips_to_cosine(keys, self._max_norm)

    def _prepare_queries(self, queries: torch.Tensor) -> torch.Tensor:
        q = normalize(queries)
        if self.metric == "ip":
            q = torch.cat([q, q.new_zeros(q.shape[0], 1)], dim=-1)
        return q

    def build(self, keys: torch.Tensor) -> "IVFIndex":
        """Fit the centroids and fill the inverted lists with the keys [N, W]."""
        check_shape("keys", keys, "N W")
        n = keys.shape[0]
        self.width = keys.shape[1]
        lists = self.n_lists or max(1, round(math.sqrt(n)))
        lists = min(lists, n)
        x = self._prepare_keys(keys)
        g = torch.Generator().manual_seed(self.seed)
        sample = x if n <= self.train_size else x[torch.randperm(n, generator=g)[: self.train_size].to(x.device)]
        self.centroids, _ = kmeans(sample, lists, self.iters, spherical=True, seed=self.seed)
        assign = assign_to_centroids(x, self.centroids, spherical=True)
        self.ids, self.offsets = group_by_list(assign, lists)
        self.keys = x[self.ids].contiguous()  # list-ordered, so each list is one contiguous block
        self._raw_norms = keys.norm(dim=-1)[self.ids] if self.metric == "ip" else None
        return self

    def list_sizes(self) -> torch.Tensor:
        """[L] number of keys in each list."""
        return self.offsets[1:] - self.offsets[:-1]

    def search(self, queries: torch.Tensor, k: int, n_probe: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Score the centroids, open the ``n_probe`` best lists, return the k best keys found.

        Args:
            queries: [Q, W]
            k: neighbours per query.
            n_probe: overrides the index's P for this call.

        Returns:
            (scores [Q, k], ids [Q, k]), best first; scores are cosines (or inner products for "ip").
        """
        if self.centroids is None:
            raise RuntimeError("call build(keys) before search")
        check_shape("queries", queries, "Q W", {"W": self.width})
        _check_k(k, self.keys.shape[0])
        q = self._prepare_queries(queries)
        positions = probe_candidates(q @ self.centroids.T, self.offsets, n_probe or self.n_probe, k)
        scores, pos = score_candidates(self.keys, q, positions, k)
        if self.metric == "ip":  # q'.x' = q.x / (sqrt(|q|^2 + eps) max_norm): undo the scaling
            scores = scores * torch.sqrt((queries * queries).sum(-1, keepdim=True) + COSINE_EPS) * self._max_norm
        return scores, self.ids[pos]


def mips_to_cosine(keys: torch.Tensor, max_norm: float | None = None) -> torch.Tensor:
    """Map keys so that maximum inner product search becomes maximum cosine search.

    x' = [x / m, sqrt(1 - |x|^2 / m^2)] with m = max |x| (Bachrach et al. 2014; Neyshabur & Srebro 2015),
    so |x'| = 1; a query maps to q' = [q / |q|, 0] and q'.x' = q.x / (|q| m): the same ranking.

    Args:
        keys: [N, W]; max_norm: m (default: the largest key norm).

    Returns:
        [N, W + 1] unit-norm keys.
    """
    check_shape("keys", keys, "N W")
    m = max_norm if max_norm is not None else float(keys.norm(dim=-1).max())
    m = m or 1.0
    scaled = keys / m
    extra = torch.sqrt((1 - (scaled * scaled).sum(-1, keepdim=True)).clamp(min=0))
    return torch.cat([scaled, extra], dim=-1)


class FaissIndex:
    """The same interface over FAISS: ``kind`` "flat" (exact), "ivf" (IVF-Flat) or "hnsw" (Malkov & Yashunin 2018).

    Raises ImportError with install instructions when ``faiss`` is missing.
    """

    def __init__(self, kind: str = "ivf", n_lists: int | None = None, n_probe: int = 8, metric: str = "cosine",
                 hnsw_m: int = 32, ef_search: int = 64, threads: int | None = 1):
        try:
            import faiss  # noqa: F401
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(FAISS_MISSING) from exc
        if kind not in ("flat", "ivf", "hnsw"):
            raise ValueError(f"kind must be 'flat', 'ivf' or 'hnsw', got {kind!r}")
        self.kind, self.n_lists, self.n_probe, self.metric = kind, n_lists, n_probe, _check_metric(metric)
        self.hnsw_m, self.ef_search, self.threads = hnsw_m, ef_search, threads
        self.index = None

    def _np(self, x: torch.Tensor):
        x = normalize(x) if self.metric == "cosine" else x
        return x.detach().to("cpu", torch.float32).contiguous().numpy()

    def build(self, keys: torch.Tensor) -> "FaissIndex":
        """Train (IVF) and add the keys [N, W]."""
        import faiss

        check_shape("keys", keys, "N W")
        if self.threads:
            faiss.omp_set_num_threads(self.threads)
        n, w = keys.shape
        x = self._np(keys)
        metric = faiss.METRIC_INNER_PRODUCT
        if self.kind == "flat":
            index = faiss.IndexFlatIP(w)
        elif self.kind == "ivf":
            lists = min(self.n_lists or max(1, round(math.sqrt(n))), n)
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(w), w, lists, metric)
            index.train(x)
            index.nprobe = self.n_probe
        else:
            index = faiss.IndexHNSWFlat(w, self.hnsw_m, metric)
            index.hnsw.efSearch = self.ef_search
        index.add(x)
        self.index, self.width, self.n = index, w, n
        return self

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(scores [Q, k], ids [Q, k]) as torch tensors on the queries' device; ids -1 where none was found."""
        if self.index is None:
            raise RuntimeError("call build(keys) before search")
        check_shape("queries", queries, "Q W", {"W": self.width})
        _check_k(k, self.n)
        scores, ids = self.index.search(self._np(queries), k)
        return (torch.from_numpy(scores).to(queries.device, queries.dtype),
                torch.from_numpy(ids).to(queries.device, torch.long))


def faiss_available() -> bool:
    """Whether the optional ``faiss`` package can be imported."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


class HierarchicalMemory:
    """Two-level memory (Chandar et al. 2016): groups of keys under centroids; read the K best slots only.

    ``lookup`` searches the ``n_probe`` best groups by their centroid, then exact MIPS inside them
    (Chandar et al. 2016, Section 3, clustering-based approximate K-MIPS). ``read`` applies the softmax over
    those K slots only and returns the weighted values (Section 3: "the reader ... softmax over the
    retrieved subset"), differentiable with respect to the queries.

    Args:
        n_groups: number of centroids (default round(sqrt(N))).
        n_probe: groups searched per query.
        metric: "ip" (the paper's inner product) or "cosine".
    """

    def __init__(self, n_groups: int | None = None, n_probe: int = 4, metric: str = "ip", iters: int = 10, seed: int = 0):
        self.index = IVFIndex(n_lists=n_groups, n_probe=n_probe, metric=metric, iters=iters, seed=seed)
        self.metric = metric

    def build(self, keys: torch.Tensor, values: torch.Tensor | None = None) -> "HierarchicalMemory":
        """Store keys [N, W] and values [N, V] (default: the keys) and group the keys under centroids."""
        sizes = check_shape("keys", keys, "N W")
        if values is not None:
            check_shape("values", values, "N V", sizes)
        self.keys, self.values = keys, (keys if values is None else values)
        self.index.build(keys.detach())
        return self

    @property
    def centroids(self) -> torch.Tensor:
        """[L, W'] the top level (unit norm; W' = W + 1 for "ip")."""
        return self.index.centroids

    def group_of(self) -> torch.Tensor:
        """[N] the group of each key."""
        sizes = self.index.list_sizes()
        groups = torch.repeat_interleave(torch.arange(len(sizes), device=sizes.device), sizes,
                                         output_size=self.index.ids.numel())  # size known: no host sync
        out = torch.empty_like(groups)
        out[self.index.ids] = groups
        return out

    def lookup(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Level 1: best groups by centroid; level 2: exact top-k inside them. (scores [Q, k], ids [Q, k])."""
        return self.index.search(queries, k)

    def read(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Softmax over the k retrieved slots and the weighted sum of their values.

        Args:
            queries: [Q, W]

        Returns:
            (reads [Q, V], ids [Q, k], weights [Q, k]); gradients reach the queries (and the k keys/values).
        """
        _, ids = self.lookup(queries.detach(), k)
        keys = self.keys[ids]  # [Q, k, W]
        if self.metric == "cosine":
            scores = torch.einsum("qkw,qw->qk", normalize(keys), normalize(queries))
        else:
            scores = torch.einsum("qkw,qw->qk", keys, queries)
        weights = torch.softmax(scores, dim=-1)
        return torch.einsum("qk,qkv->qv", weights, self.values[ids]), ids, weights
