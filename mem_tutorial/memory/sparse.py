"""Sparse reads and writes: touch K slots instead of N (Chapter 6).

Rae et al. 2016, "Scaling Memory-Augmented Neural Networks with Sparse Reads and Writes" (Sparse Access
Memory, SAM), Section 3:

* Sparse read (Section 3.1): keep the K slots most similar to the key and renormalise the content
  softmax over them, w~(i) = exp(beta K(k, M_i)) / sum_{j in S} exp(beta K(k, M_j)) for i in S (the top-K
  set), 0 elsewhere; then r = sum_{i in S} w~(i) M_i. The choice of S is not differentiable: gradients
  flow through the K selected rows (and the key, through their similarities) only.
* Sparse write (Section 3.2): w^W_t = alpha_t (gamma_t w^R_{t-1} + (1 - gamma_t) I^U_t), a gated mix of
  the previous read locations and the least-used slot, then the usual erase-then-add on those slots.
* Usage (Section 3.3, discounted form): U_t(i) = lambda U_{t-1}(i) + w^R_t(i) + w^W_t(i).

The similarity K is the cosine similarity of Chapter 1 (``COSINE_EPS`` included), so on the same
support a sparse read equals a dense read whose softmax is restricted to that support.

The candidate search (which K slots?) is the only O(N) part left. Pass ``candidates`` from an
approximate nearest-neighbour index (:mod:`mem_tutorial.memory.index`) to make the whole read
sub-linear, as SAM does; without it the top-K is taken over all N similarities (exact, O(N W), but with
no gradient work on the N - K other slots).

Symbols: B batch, N slots, W word size, R read heads, H write heads, K selected slots, C candidates.
A sparse weighting is a pair (indices [..., K] int64, weights [..., K]).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from mem_tutorial.memory._shapes import check_shape
from mem_tutorial.memory.addressing import COSINE_EPS


class SparseWeights(NamedTuple):
    """A weighting over N slots stored by its support: ``weights[..., j]`` sits on slot ``indices[..., j]``."""

    indices: torch.Tensor  # [B, R, K] (or [B, K]) int64
    weights: torch.Tensor  # [B, R, K] (or [B, K])


def _heads(memory: torch.Tensor, keys: torch.Tensor, strengths: torch.Tensor):
    sizes = check_shape("memory", memory, "B N W")
    squeeze = keys.dim() == 2
    if squeeze:
        check_shape("keys", keys, "B W", sizes)
        check_shape("strengths", strengths, "B", sizes)
        keys, strengths = keys.unsqueeze(1), strengths.unsqueeze(1)
    else:
        sizes = check_shape("keys", keys, "B R W", sizes)
        check_shape("strengths", strengths, "B R", sizes)
    return keys, strengths, squeeze, sizes


def gather_rows(memory: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """The memory rows M_i for the given slot indices, batched.

    Args:
        memory: [B, N, W]
        indices: [B, R, K] int64 slot indices in [0, N).

    Returns:
        [B, R, K, W] rows; the backward pass scatters gradients to those rows only.
    """
    sizes = check_shape("memory", memory, "B N W")
    sizes = check_shape("indices", indices, "B R K", sizes)
    b, r, k = indices.shape
    flat = indices.reshape(b, r * k, 1).expand(b, r * k, memory.shape[-1])
    return memory.gather(1, flat).view(b, r, k, memory.shape[-1])


def row_cosine(rows: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of each key with its own gathered rows (NTM Eq. 6, same ``COSINE_EPS``).

    Args:
        rows: [B, R, C, W]
        keys: [B, R, W]

    Returns:
        [B, R, C]
    """
    sizes = check_shape("rows", rows, "B R C W")
    check_shape("keys", keys, "B R W", sizes)
    dot = torch.einsum("brcw,brw->brc", rows, keys)
    key_norm = torch.sqrt((keys * keys).sum(-1) + COSINE_EPS)  # [B, R]
    row_norm = torch.sqrt((rows * rows).sum(-1) + COSINE_EPS)  # [B, R, C]
    return dot / (key_norm.unsqueeze(-1) * row_norm)


def topk_support(memory: torch.Tensor, keys: torch.Tensor, k: int, candidates: torch.Tensor | None = None) -> torch.Tensor:
    """The set S of the K slots most similar to each key (Rae et al. 2016, Section 3.1). Not differentiable.

    Args:
        memory: [B, N, W]
        keys: [B, R, W]
        k: K, the number of slots to keep (1 <= K <= N, or <= C with candidates).
        candidates: optional [B, R, C] slot indices proposed by an approximate nearest-neighbour index;
            S is then the top-K among them (cost O(C W) instead of O(N W)).

    Returns:
        [B, R, K] int64 slot indices, most similar first.
    """
    sizes = check_shape("memory", memory, "B N W")
    check_shape("keys", keys, "B R W", sizes)
    with torch.no_grad():
        if candidates is None:
            if not 1 <= k <= memory.shape[1]:
                raise ValueError(f"k must be in [1, N={memory.shape[1]}], got {k}")
            norms = torch.sqrt((memory * memory).sum(-1) + COSINE_EPS)  # [B, N]
            scores = torch.einsum("brw,bnw->brn", keys, memory) / norms.unsqueeze(1)
            return scores.topk(k, dim=-1).indices
        check_shape("candidates", candidates, "B R C", {"B": sizes["B"], "R": keys.shape[1]})
        if not 1 <= k <= candidates.shape[-1]:
            raise ValueError(f"k must be in [1, C={candidates.shape[-1]}] (the number of candidates), got {k}")
        scores = row_cosine(gather_rows(memory, candidates), keys)
        return candidates.gather(-1, scores.topk(k, dim=-1).indices)


def sparse_content_weighting(
    memory: torch.Tensor,
    keys: torch.Tensor,
    strengths: torch.Tensor,
    k: int,
    candidates: torch.Tensor | None = None,
) -> SparseWeights:
    """Top-K content weighting with the softmax renormalised over the K kept slots (Rae et al. 2016, Sec. 3.1).

    w~(i) = exp(beta K(k, M_i)) / sum_{j in S} exp(beta K(k, M_j)) for i in S, the top-K set. Equal to the
    dense ``content_weighting`` restricted to S and renormalised. Gradients reach the key, the strength and
    the K selected rows only.

    Args:
        memory: [B, N, W]
        keys: [B, R, W] (or [B, W])
        strengths: [B, R] (or [B]) key strengths beta.
        k: K, slots kept per key.
        candidates: optional [B, R, C] (or [B, C]) slot indices from an ANN index (see :func:`topk_support`).

    Returns:
        SparseWeights with indices and weights [B, R, K] (or [B, K]); each weight row sums to 1.
    """
    keys, strengths, squeeze, _ = _heads(memory, keys, strengths)
    if candidates is not None and squeeze:
        candidates = candidates.unsqueeze(1)
    indices = topk_support(memory, keys, k, candidates)
    sims = row_cosine(gather_rows(memory, indices), keys)  # [B, R, K], differentiable
    weights = torch.softmax(strengths.unsqueeze(-1) * sims, dim=-1)
    if squeeze:
        return SparseWeights(indices.squeeze(1), weights.squeeze(1))
    return SparseWeights(indices, weights)


def sparse_read(memory: torch.Tensor, indices: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Sparse read r = sum_{j} w~_j M_{s_j} over the K selected slots (Rae et al. 2016, Sec. 3.1; NTM Eq. 2).

    Args:
        memory: [B, N, W]
        indices: [B, R, K] (or [B, K]) slot indices.
        weights: [B, R, K] (or [B, K]) their weights.

    Returns:
        [B, R, W] (or [B, W]) read vectors.
    """
    sizes = check_shape("memory", memory, "B N W")
    squeeze = indices.dim() == 2
    if squeeze:
        sizes = check_shape("indices", indices, "B K", sizes)
        check_shape("weights", weights, "B K", sizes)
        indices, weights = indices.unsqueeze(1), weights.unsqueeze(1)
    else:
        sizes = check_shape("indices", indices, "B R K", sizes)
        check_shape("weights", weights, "B R K", sizes)
    reads = torch.einsum("brk,brkw->brw", weights, gather_rows(memory, indices))
    return reads.squeeze(1) if squeeze else reads


def topk_read(
    memory: torch.Tensor,
    keys: torch.Tensor,
    strengths: torch.Tensor,
    k: int,
    candidates: torch.Tensor | None = None,
) -> tuple[torch.Tensor, SparseWeights]:
    """Top-K content read: :func:`sparse_content_weighting` then :func:`sparse_read` (Rae et al. 2016, Sec. 3.1).

    Args:
        memory: [B, N, W]
        keys: [B, R, W] (or [B, W])
        strengths: [B, R] (or [B])
        k: K, slots read per key.
        candidates: optional [B, R, C] (or [B, C]) slot indices from an ANN index.

    Returns:
        (reads [B, R, W] (or [B, W]), SparseWeights with indices and weights [B, R, K] (or [B, K])).
    """
    sw = sparse_content_weighting(memory, keys, strengths, k, candidates)
    return sparse_read(memory, sw.indices, sw.weights), sw


def densify(indices: torch.Tensor, weights: torch.Tensor, n: int) -> torch.Tensor:
    """The dense weighting over N slots of a sparse one (repeated indices add up). For tests and plots.

    Args:
        indices: [..., K] slot indices.
        weights: [..., K]
        n: N, the number of slots.

    Returns:
        [..., N]
    """
    if indices.shape != weights.shape:
        raise ValueError(f"indices and weights must have the same shape, got {list(indices.shape)} and {list(weights.shape)}")
    out = weights.new_zeros(*weights.shape[:-1], n)
    return out.scatter_add(-1, indices, weights)


def merge_duplicates(indices: torch.Tensor, weights: torch.Tensor) -> SparseWeights:
    """Make the support of each row distinct: repeated slots get one entry with the summed weight.

    Freed entries keep a valid slot index (one already present in the row) with weight 0, so the shape
    stays [..., K] and ``densify`` is unchanged. Vectorised: sort, mark runs, sum each run.

    Args:
        indices: [..., K]
        weights: [..., K]

    Returns:
        SparseWeights [..., K], indices sorted within each row.
    """
    sorted_idx, order = indices.sort(dim=-1)
    sorted_w = weights.gather(-1, order)
    first = torch.ones_like(sorted_idx, dtype=torch.bool)
    first[..., 1:] = sorted_idx[..., 1:] != sorted_idx[..., :-1]
    run = first.long().cumsum(-1) - 1  # run id of each entry, 0..K-1
    merged_w = torch.zeros_like(sorted_w).scatter_add(-1, run, sorted_w)
    # Each run's slot lands at position run id; unused positions repeat the row's last slot (weight 0).
    merged_idx = sorted_idx[..., -1:].expand_as(sorted_idx).clone()
    merged_idx = merged_idx.scatter(-1, run, sorted_idx)
    return SparseWeights(merged_idx, merged_w)


def sparse_write(
    memory: torch.Tensor, indices: torch.Tensor, weights: torch.Tensor, erase: torch.Tensor, add: torch.Tensor
) -> torch.Tensor:
    """Erase-then-add on the selected slots only (Rae et al. 2016, Sec. 3.2; NTM Eq. 3-4).

    M_t(i) = M_{t-1}(i) prod_h (1 - w_h(i) e_h) + sum_h w_h(i) a_h for the slots i in the support; every
    other row is copied unchanged. Equal to ``access.write(memory, densify(indices, weights, N), erase,
    add)``: repeated slots within a head are merged first (their weights add, as in the dense weighting).
    The result is a new tensor (one O(N W) copy, no O(N W) arithmetic); gradients reach the K rows.
    Implemented as M + scatter_add(delta) with one delta row per written slot, so that the backward pass is a
    gather of K rows (a scatter with a product reduction over the whole memory would cost O(N W) there).

    Args:
        memory: [B, N, W]
        indices: [B, K] or [B, H, K] slot indices of the write weighting's support.
        weights: [B, K] or [B, H, K]
        erase: [B, W] or [B, H, W] erase vectors in [0, 1].
        add: [B, W] or [B, H, W] add vectors.

    Returns:
        [B, N, W] the new memory.
    """
    sizes = check_shape("memory", memory, "B N W")
    if indices.dim() == 2:
        sizes = check_shape("indices", indices, "B K", sizes)
        check_shape("weights", weights, "B K", sizes)
        check_shape("erase", erase, "B W", sizes)
        check_shape("add", add, "B W", sizes)
        indices, weights, erase, add = indices.unsqueeze(1), weights.unsqueeze(1), erase.unsqueeze(1), add.unsqueeze(1)
    else:
        sizes = check_shape("indices", indices, "B H K", sizes)
        check_shape("weights", weights, "B H K", sizes)
        check_shape("erase", erase, "B H W", sizes)
        check_shape("add", add, "B H W", sizes)
    indices, weights = merge_duplicates(indices, weights)  # within a head, repeated slots add their weights
    b, h, k = indices.shape
    w = weights.unsqueeze(-1)  # [B, H, K, 1]
    keep = (1 - w * erase.unsqueeze(2)).reshape(b, h * k, -1)  # [B, HK, W] per-entry erase factors
    new = (w * add.unsqueeze(2)).reshape(b, h * k, -1)  # [B, HK, W] per-entry adds
    # Across heads a slot may appear several times: group the entries by slot (sort, mark runs) and combine
    # each group on the small [B, HK, W] tensors: erase factors multiply, adds sum (NTM Eq. 3-4).
    slot, order = indices.reshape(b, h * k).sort(dim=-1)
    order_w = order.unsqueeze(-1).expand(b, h * k, memory.shape[-1])
    keep, new = keep.gather(1, order_w), new.gather(1, order_w)
    first = torch.ones_like(slot, dtype=torch.bool)
    first[:, 1:] = slot[:, 1:] != slot[:, :-1]
    run = (first.long().cumsum(-1) - 1).unsqueeze(-1).expand_as(keep)  # group of each entry
    group_keep = torch.ones_like(keep).scatter_reduce(1, run, keep, reduce="prod").gather(1, run)
    group_add = torch.zeros_like(new).scatter_add(1, run, new).gather(1, run)
    slot_w = slot.unsqueeze(-1).expand_as(keep)
    rows = memory.gather(1, slot_w)  # [B, HK, W] the old rows
    # One change per slot (on the group's first entry): M_i * prod_h(1 - w_h e_h) + sum_h w_h a_h - M_i.
    delta = (rows * (group_keep - 1) + group_add) * first.unsqueeze(-1).to(rows.dtype)
    return memory.scatter_add(1, slot_w, delta)


def update_usage(
    usage: torch.Tensor,
    read: SparseWeights | None,
    write: SparseWeights | None,
    decay: float,
) -> torch.Tensor:
    """Discounted usage U_t = lambda U_{t-1} + w^R_t + w^W_t (Rae et al. 2016, Sec. 3.3), sparse updates.

    Args:
        usage: [B, N]
        read: sparse read weighting, indices/weights [B, R, K] (or [B, K]), or None.
        write: sparse write weighting, indices/weights [B, H, K] (or [B, K]), or None.
        decay: lambda in [0, 1].

    Returns:
        [B, N] the new usage (not differentiated: usage only ranks slots).
    """
    sizes = check_shape("usage", usage, "B N")
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"decay must be in [0, 1], got {decay}")
    with torch.no_grad():
        out = usage * decay
        for name, sw in (("read", read), ("write", write)):
            if sw is None:
                continue
            if sw.indices.shape[0] != sizes["B"]:
                raise ValueError(f"{name}: batch size {sw.indices.shape[0]} does not match usage's {sizes['B']}")
            idx = sw.indices.reshape(sizes["B"], -1)
            out = out.scatter_add(1, idx, sw.weights.detach().reshape(sizes["B"], -1).to(out.dtype))
    return out


def least_used(usage: torch.Tensor, n: int = 1) -> torch.Tensor:
    """The n least-used slots I^U (Rae et al. 2016, Sec. 3.2), lowest usage first.

    Args:
        usage: [B, N]
        n: how many slots.

    Returns:
        [B, n] int64 slot indices.
    """
    check_shape("usage", usage, "B N")
    return usage.topk(n, dim=-1, largest=False).indices


def sparse_write_weighting(
    prev_read: SparseWeights, least_used_slot: torch.Tensor, alpha: torch.Tensor, gamma: torch.Tensor
) -> SparseWeights:
    """w^W_t = alpha_t (gamma_t w^R_{t-1} + (1 - gamma_t) I^U_t) (Rae et al. 2016, Sec. 3.2, Eq. 5).

    Convention: with R read heads, w^R_{t-1} is their mean (a distribution over slots).

    Args:
        prev_read: previous read weighting, indices/weights [B, R, K] (or [B, K]).
        least_used_slot: [B] int64, the slot with the lowest usage.
        alpha: [B] write gate in [0, 1].
        gamma: [B] interpolation gate in [0, 1] (1: rewrite what was read; 0: write to a fresh slot).

    Returns:
        SparseWeights [B, R*K + 1]: the read support followed by the least-used slot (repeats merged
        by :func:`sparse_write`).
    """
    sizes = check_shape("least_used_slot", least_used_slot, "B")
    check_shape("alpha", alpha, "B", sizes)
    check_shape("gamma", gamma, "B", sizes)
    idx, w = prev_read.indices, prev_read.weights
    if idx.dim() == 2:
        idx, w = idx.unsqueeze(1), w.unsqueeze(1)
    check_shape("prev_read.indices", idx, "B R K", sizes)
    r = idx.shape[1]
    idx = idx.reshape(sizes["B"], -1)
    w = w.reshape(sizes["B"], -1) / r
    g = gamma.unsqueeze(-1)
    indices = torch.cat([idx, least_used_slot.unsqueeze(-1)], dim=-1)
    weights = alpha.unsqueeze(-1) * torch.cat([g * w, 1 - g], dim=-1)
    return SparseWeights(indices, weights)
