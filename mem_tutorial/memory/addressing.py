"""Content-based addressing, shared by every chapter.

Graves, Wayne & Danihelka 2014 (NTM), Section 3.3.1, Eq. 5-6; Graves et al. 2016 (DNC), Methods,
"Content-based addressing" C(M, k, beta). Chapter 1 teaches these functions; Chapters 2 and 3 import them.

Symbols: B batch, N memory slots, W word size, R heads (read or write keys issued at once).
Every function accepts one key per batch element (``keys: [B, W]``) or several (``keys: [B, R, W]``).
"""

from __future__ import annotations

import torch

from mem_tutorial.memory._shapes import check_shape

#: Added under each square root of the cosine similarity, ||u|| ~ sqrt(u.u + COSINE_EPS): keeps the similarity
#: finite and its gradient bounded (about 1/sqrt(COSINE_EPS)) for an all-zero or nearly-zero memory row or key,
#: as in the DNC's reference code. Small enough that the result matches the exact formula to about
#: 5e-9 / ||u||^2 relative, i.e. below 1e-7 for any vector whose squared norm exceeds 0.05.
COSINE_EPS = 1e-8


def _with_heads(memory: torch.Tensor, keys: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """Return keys as ``[B, R, W]`` and whether a head dimension was added."""
    sizes = check_shape("memory", memory, "B N W")
    if keys.dim() == 2:
        check_shape("keys", keys, "B W", sizes)
        return keys.unsqueeze(1), True
    check_shape("keys", keys, "B R W", sizes)
    return keys, False


def cosine_similarity(memory: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Cosine similarity K(k, M_i) between each key and each memory row (NTM Eq. 6).

    K[b, r, i] = k_br . M_bi / (||k_br|| ||M_bi||), with ``COSINE_EPS`` under each norm's square root.

    Args:
        memory: [B, N, W]
        keys: [B, R, W] (or [B, W] for one key)

    Returns:
        [B, R, N] (or [B, N]) similarities in [-1, 1].
    """
    k, squeeze = _with_heads(memory, keys)
    dot = torch.einsum("brw,bnw->brn", k, memory)
    key_norm = torch.sqrt((k * k).sum(-1) + COSINE_EPS)  # [B, R]
    mem_norm = torch.sqrt((memory * memory).sum(-1) + COSINE_EPS)  # [B, N]
    sim = dot / (key_norm.unsqueeze(-1) * mem_norm.unsqueeze(1))
    return sim.squeeze(1) if squeeze else sim


def content_weighting(memory: torch.Tensor, keys: torch.Tensor, strengths: torch.Tensor) -> torch.Tensor:
    """Content weighting w^c = softmax_i(beta K(k, M_i)) over the N slots (NTM Eq. 5; DNC C(M, k, beta)).

    The key strength beta >= 0 sharpens (large beta) or flattens (beta -> 0) the focus.

    Args:
        memory: [B, N, W]
        keys: [B, R, W] (or [B, W])
        strengths: [B, R] (or [B]) key strengths beta.

    Returns:
        [B, R, N] (or [B, N]) weightings: non-negative, each row sums to 1.
    """
    k, squeeze = _with_heads(memory, keys)
    beta = strengths.unsqueeze(-1) if squeeze else strengths
    check_shape("strengths", beta, "B R", {"B": k.shape[0], "R": k.shape[1]})
    scores = beta.unsqueeze(-1) * cosine_similarity(memory, k)  # [B, R, N]
    weights = torch.softmax(scores, dim=-1)
    return weights.squeeze(1) if squeeze else weights
