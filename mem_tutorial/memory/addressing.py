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


# ----------------------------------------------------------------------------------------------------------------
# NTM location-based addressing (Graves, Wayne & Danihelka 2014, Section 3.3.2, Eq. 7-9).
# Chapter 2 teaches these; every function accepts one head ([B, N]) or several ([B, R, N]).
# ----------------------------------------------------------------------------------------------------------------

#: Added to the normaliser of the sharpened weighting (Eq. 9) so that an all-zero weighting gives zeros instead
#: of 0/0 = NaN. The normaliser is otherwise >= 1 (the peak is scaled to 1 first), so it changes nothing else.
SHARPEN_EPS = 1e-12


def _head_view(name: str, tensor: torch.Tensor, spec: str, sizes: dict[str, int], squeeze: bool) -> torch.Tensor:
    """Check ``tensor`` against ``spec`` (without the R axis when ``squeeze``) and return it with the R axis."""
    if squeeze:
        check_shape(name, tensor, spec.replace(" R", ""), sizes)
        return tensor.unsqueeze(1)
    check_shape(name, tensor, spec, sizes)
    return tensor


def _weights_view(name: str, weights: torch.Tensor) -> tuple[torch.Tensor, dict[str, int], bool]:
    """Return weights as ``[B, R, N]``, the bound sizes, and whether an R axis was added."""
    if weights.dim() == 2:
        sizes = check_shape(name, weights, "B N")
        sizes["R"] = 1
        return weights.unsqueeze(1), sizes, True
    return weights, check_shape(name, weights, "B R N"), False


def interpolate(content_w: torch.Tensor, prev_w: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """Interpolation gate: w^g_t = g_t w^c_t + (1 - g_t) w_{t-1} (NTM Eq. 7).

    g = 1 takes the content weighting, g = 0 keeps the previous step's weighting (so the head can ignore
    content and move from where it was).

    Args:
        content_w: [B, R, N] (or [B, N]) content weightings w^c_t.
        prev_w: [B, R, N] (or [B, N]) the head's final weighting at the previous step w_{t-1}.
        gate: [B, R] (or [B]) interpolation gates g_t in [0, 1].

    Returns:
        [B, R, N] (or [B, N]) gated weightings (distributions if both inputs are).
    """
    wc, sizes, squeeze = _weights_view("content_w", content_w)
    wp = _head_view("prev_w", prev_w, "B R N", sizes, squeeze)
    g = _head_view("gate", gate, "B R", sizes, squeeze)
    out = _interpolate(wc, wp, g)
    return out.squeeze(1) if squeeze else out


def _interpolate(wc: torch.Tensor, wp: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Eq. 7 on checked [B, R, N], [B, R, N], [B, R] tensors."""
    g = g.unsqueeze(-1)
    return g * wc + (1 - g) * wp


def shift(weights: torch.Tensor, shift_dist: torch.Tensor) -> torch.Tensor:
    """Rotation by circular convolution: w~_t(i) = sum_j w^g_t(j) s_t(i - j), indices modulo N (NTM Eq. 8).

    Convention (the paper leaves it implicit): ``shift_dist`` has an odd number S of entries and entry j is
    the probability of the shift OFFSET ``j - S // 2``; with S = 3 the entries are offsets (-1, 0, +1).
    An offset of +1 moves the focus FORWARD: a one-hot weighting at slot i becomes a one-hot at slot
    (i + 1) mod N, so slot N - 1 wraps around to slot 0. Equivalently
    ``w~ = sum_j s[j] * torch.roll(w, j - S // 2)``. Offsets larger than N wrap around too.

    Args:
        weights: [B, R, N] (or [B, N]) gated weightings w^g_t.
        shift_dist: [B, R, S] (or [B, S]) shift distributions s_t over the S offsets -(S//2) .. +(S//2).

    Returns:
        [B, R, N] (or [B, N]) shifted weightings (a distribution if both inputs are).
    """
    w, sizes, squeeze = _weights_view("weights", weights)
    s = _head_view("shift_dist", shift_dist, "B R S", sizes, squeeze)
    if s.shape[-1] % 2 != 1:
        raise ValueError(f"shift_dist: expected an odd number S of shift offsets (-(S//2)..S//2), got S={s.shape[-1]}")
    out = _shift(w, s)
    return out.squeeze(1) if squeeze else out


def _shift_index(n_slots: int, n_shifts: int, device: torch.device) -> torch.Tensor:
    """idx[i, j] = (i - (j - S//2)) mod N: the slot that offset j brings to slot i. [N, S]."""
    i = torch.arange(n_slots, device=device).unsqueeze(1)
    offsets = torch.arange(n_shifts, device=device).unsqueeze(0) - n_shifts // 2
    return torch.remainder(i - offsets, n_slots)


def _shift(w: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Eq. 8 on checked [B, R, N] weights and [B, R, S] shift distributions (S odd).

    Gathers, for every slot i, the S slots (i - offset) mod N, [B, R, N, S], then contracts with s: one
    gather and one batched matrix product (no loop over slots or offsets).
    """
    idx = _shift_index(w.shape[-1], s.shape[-1], w.device)
    return torch.matmul(w[..., idx], s.unsqueeze(-1)).squeeze(-1)


def sharpen(weights: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """Sharpening: w_t(i) = w~_t(i)^gamma / sum_j w~_t(j)^gamma with gamma >= 1 (NTM Eq. 9).

    Counteracts the blur that a fractional shift introduces. Computed as (w~/max w~)^gamma, renormalised
    (the same value, but safe from underflow for large gamma); ``SHARPEN_EPS`` is added to the normaliser.

    Args:
        weights: [B, R, N] (or [B, N]) shifted weightings w~_t (non-negative).
        gamma: [B, R] (or [B]) sharpening exponents gamma_t >= 1.

    Returns:
        [B, R, N] (or [B, N]) distributions.
    """
    w, sizes, squeeze = _weights_view("weights", weights)
    g = _head_view("gamma", gamma, "B R", sizes, squeeze)
    out = _sharpen(w, g)
    return out.squeeze(1) if squeeze else out


def _sharpen(w: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """Eq. 9 on checked [B, R, N] weights and [B, R] exponents."""
    # Divide by the largest entry first (the ratio is unchanged): the peak becomes 1, so w^gamma cannot
    # underflow to an all-zero row in float32 for large gamma, and the normaliser is >= 1.
    peak = w.amax(-1, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)
    powered = (w / peak).pow(gamma.unsqueeze(-1))
    return powered / (powered.sum(-1, keepdim=True) + SHARPEN_EPS)


def ntm_addressing(
    memory: torch.Tensor,
    key: torch.Tensor,
    beta: torch.Tensor,
    gate: torch.Tensor,
    shift_dist: torch.Tensor,
    gamma: torch.Tensor,
    prev_w: torch.Tensor,
) -> torch.Tensor:
    """The NTM addressing pipeline (Graves et al. 2014, Figure 2; Eq. 5-9).

    content weighting (Eq. 5-6) -> interpolation with the previous weighting (Eq. 7) -> circular shift (Eq. 8)
    -> sharpening (Eq. 9). See :func:`shift` for the shift-direction convention.

    Args:
        memory: [B, N, W] memory M_t (the memory being addressed).
        key: [B, R, W] (or [B, W]) keys k_t.
        beta: [B, R] (or [B]) key strengths beta_t >= 0.
        gate: [B, R] (or [B]) interpolation gates g_t in [0, 1].
        shift_dist: [B, R, S] (or [B, S]) shift distributions s_t (S odd).
        gamma: [B, R] (or [B]) sharpening exponents gamma_t >= 1.
        prev_w: [B, R, N] (or [B, N]) previous weightings w_{t-1}.

    Returns:
        [B, R, N] (or [B, N]) weightings w_t.
    """
    content_w = content_weighting(memory, key, beta)  # checks memory, key, beta
    wc, sizes, squeeze = _weights_view("content_w", content_w)
    wp = _head_view("prev_w", prev_w, "B R N", sizes, squeeze)
    g = _head_view("gate", gate, "B R", sizes, squeeze)
    s = _head_view("shift_dist", shift_dist, "B R S", sizes, squeeze)
    if s.shape[-1] % 2 != 1:
        raise ValueError(f"shift_dist: expected an odd number S of shift offsets (-(S//2)..S//2), got S={s.shape[-1]}")
    gam = _head_view("gamma", gamma, "B R", sizes, squeeze)
    out = _sharpen(_shift(_interpolate(wc, wp, g), s), gam)
    return out.squeeze(1) if squeeze else out
