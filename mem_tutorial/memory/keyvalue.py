"""Key-Value Memory Network reading: key addressing, value reading and the hop update.

Miller, Fisch, Dodge, Karimi, Bordes & Weston 2016, "Key-Value Memory Networks for Directly Reading
Documents" (EMNLP; arXiv:1606.03126), Section 3. Memory slots are pairs (k_hi, v_hi) retrieved for a question by
key hashing (``mem_tutorial.data.hashing``); the model then

- addresses the keys:       p_hi = Softmax(A Phi_X(x) . A Phi_K(k_hi))          (Section 3, "Key Addressing")
- reads the values:         o = sum_i p_hi A Phi_V(v_hi)                        (Section 3, "Value Reading")
- updates the query:        q_{j+1} = R_j (q_j + o)                             (Section 3, hops j = 1..H)
- scores the candidates:    a_hat = argmax_i Softmax(q_{H+1}^T B Phi_Y(y_i))   (Section 3, final prediction)

The functions below take the already-embedded vectors (A Phi_X(x), A Phi_K(k), A Phi_V(v), B Phi_Y(y)); the
feature maps live in ``mem_tutorial.models.kvmemnn``.

Symbols: B batch, K memory slots (key-value pairs) retrieved per question, d embedding size, C candidates.
Slots that are padding (questions in a batch retrieve different numbers of memories) are switched off with a
boolean ``key_mask: [B, K]`` (True = a real memory) and get exactly zero weight.
"""

from __future__ import annotations

import torch

from mem_tutorial.memory._shapes import check_shape


def key_addressing(query: torch.Tensor, keys: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Key addressing p_hi = Softmax_i(q . k_hi) over the K retrieved keys (Miller et al. 2016, Section 3).

    The score is the plain dot product between the (embedded) query and each (embedded) key, as in the paper;
    there is no key strength or normalisation. Masked keys (padding) are left out of the softmax: they get
    weight exactly 0 and the real keys' weights sum to 1. A row whose keys are all masked (a question that
    retrieved no memory) gets all-zero weights, with finite gradients.

    Args:
        query: [B, d] the embedded query q_j (A Phi_X(x) at the first hop).
        keys: [B, K, d] the embedded keys A Phi_K(k_hi).
        key_mask: [B, K] bool, True where the slot holds a real memory; None means all are real.

    Returns:
        [B, K] addressing weights p_h: non-negative, summing to 1 over the unmasked keys of each row.
    """
    sizes = check_shape("query", query, "B d")
    sizes = check_shape("keys", keys, "B K d", sizes)
    scores = torch.einsum("bd,bkd->bk", query, keys)
    if key_mask is None:
        return torch.softmax(scores, dim=-1)
    check_shape("key_mask", key_mask, "B K", sizes)
    mask = key_mask.to(torch.bool)
    # The most negative finite value (not -inf): exp underflows to exactly 0 when a row has a real key, and a
    # fully masked row gives a uniform softmax (no NaN) that the final multiplication zeroes.
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=-1) * mask.to(scores.dtype)


def value_reading(weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Value reading o = sum_i p_hi v_hi, the addressing-weighted sum of the values (Miller et al. 2016, Sec. 3).

    Args:
        weights: [B, K] addressing weights p_h (from :func:`key_addressing`).
        values: [B, K, d] the embedded values A Phi_V(v_hi).

    Returns:
        [B, d] the read vector o.
    """
    sizes = check_shape("weights", weights, "B K")
    check_shape("values", values, "B K d", sizes)
    return torch.einsum("bk,bkd->bd", weights, values)


def hop_update(query: torch.Tensor, read: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
    """Query update between hops q_{j+1} = R_j (q_j + o) (Miller et al. 2016, Section 3).

    Convention: as in the paper, R_j is a d x d matrix acting on column vectors, so for batched row vectors
    the result is (q + o) R_j^T, i.e. ``out[b] = R @ (query[b] + read[b])``.

    Args:
        query: [B, d] the current query q_j.
        read: [B, d] the value read o at hop j.
        R: [d, d] the hop's matrix R_j.

    Returns:
        [B, d] the next query q_{j+1}.
    """
    sizes = check_shape("query", query, "B d")
    check_shape("read", read, "B d", sizes)
    check_shape("R", R, "d d", sizes)
    return (query + read) @ R.transpose(0, 1)


def candidate_scores(query: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """Candidate answer scores q_{H+1}^T B Phi_Y(y_i) (Miller et al. 2016, Section 3, final prediction).

    The prediction is a_hat = argmax_i of these scores (equivalently of their softmax).

    Args:
        query: [B, d] the final query q_{H+1}.
        candidates: [C, d] the embedded candidates B Phi_Y(y_i) shared by the batch, or [B, C, d] per question.

    Returns:
        [B, C] scores (logits).
    """
    sizes = check_shape("query", query, "B d")
    if candidates.dim() == 2:
        check_shape("candidates", candidates, "C d", sizes)
        return query @ candidates.transpose(0, 1)
    check_shape("candidates", candidates, "B C d", sizes)
    return torch.einsum("bd,bcd->bc", query, candidates)
