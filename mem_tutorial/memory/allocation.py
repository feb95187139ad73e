"""Dynamic memory allocation: free gates, retention, usage and the allocation weighting (DNC).

Graves et al. 2016, "Hybrid computing using a neural network with dynamic external memory", Nature 538,
Methods, "Dynamic memory allocation" and "Write weighting". The NTM can only reach a fresh slot by shifting
its head; the DNC keeps a *usage* u in [0, 1] per slot, lets each read head *free* what it has just read, and
writes to the least-used slots through the *allocation weighting*.

Symbols: B batch, N slots, R read heads. One write head (as in the paper).

Order within one time step t (the model follows it):

1. ``retention_vector(f_t, w^r_{t-1})``          psi_t
2. ``usage_update(u_{t-1}, w^w_{t-1}, psi_t)``     u_t
3. ``allocation_weighting(u_t)``                 a_t
4. ``write_weighting(a_t, c^w_t, g^a_t, g^w_t)``   w^w_t

No epsilon is needed: every formula here is a product or sum of numbers in [0, 1], and the gradient of the
cumulative product is finite at zero, so an all-zero usage (the initial state) gives finite values and
gradients (tested).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from mem_tutorial.memory._shapes import check_shape


def retention_vector(free_gates: torch.Tensor, prev_read_weights: torch.Tensor) -> torch.Tensor:
    """Memory retention psi_t = prod_i (1 - f^i_t w^{r,i}_{t-1}) (Graves et al. 2016, Methods, Eq. for psi).

    Each read head i has a free gate f^i in [0, 1]: with f^i = 1 the slots it read at t-1 may be reused.
    psi_t[n] is how much of slot n is *not* freed.

    Args:
        free_gates: [B, R] free gates f_t in [0, 1].
        prev_read_weights: [B, R, N] read weightings w^r_{t-1}.

    Returns:
        [B, N] retention in [0, 1].
    """
    sizes = check_shape("free_gates", free_gates, "B R")
    check_shape("prev_read_weights", prev_read_weights, "B R N", sizes)
    return torch.prod(1 - free_gates.unsqueeze(-1) * prev_read_weights, dim=1)


def usage_update(prev_usage: torch.Tensor, prev_write_weights: torch.Tensor, retention: torch.Tensor) -> torch.Tensor:
    """Usage u_t = (u_{t-1} + w^w_{t-1} - u_{t-1} * w^w_{t-1}) * psi_t (Graves et al. 2016, Methods).

    Writing raises a slot's usage towards 1 (u + w - u w = 1 - (1 - u)(1 - w)); freeing (psi < 1) lowers it.

    Args:
        prev_usage: [B, N] usage u_{t-1} in [0, 1] (zeros at t = 0).
        prev_write_weights: [B, N] write weighting w^w_{t-1}.
        retention: [B, N] retention psi_t from :func:`retention_vector`.

    Returns:
        [B, N] usage u_t in [0, 1].
    """
    sizes = check_shape("prev_usage", prev_usage, "B N")
    check_shape("prev_write_weights", prev_write_weights, "B N", sizes)
    check_shape("retention", retention, "B N", sizes)
    # u + w - u w, written as u + w (1 - u): one fewer temporary
    return torch.addcmul(prev_usage, prev_write_weights, 1 - prev_usage) * retention


def allocation_weighting(usage: torch.Tensor) -> torch.Tensor:
    """Allocation a_t[phi_j] = (1 - u_t[phi_j]) prod_{i<j} u_t[phi_i] (Graves et al. 2016, Methods).

    phi is the *free list*: the slot indices sorted by ascending usage (phi_1 is the least-used slot). The
    least-used slot gets weight 1 - u; each later slot gets what the less-used ones left over. Computed
    batched, with no loop over slots: sort, exclusive cumulative product, then scatter back to slot order.
    Ties are broken by the lower slot index first (a stable sort), so an all-zero usage allocates slot 0.
    Gradients flow through the usage values; the sort order itself is piecewise constant (as in the paper).

    Properties: a >= 0 and sum_n a[n] = 1 - prod_n u[n] <= 1.

    Args:
        usage: [B, N] usage u_t in [0, 1].

    Returns:
        [B, N] allocation weighting a_t, in slot order.
    """
    check_shape("usage", usage, "B N")
    sorted_usage, free_list = torch.sort(usage, dim=-1, stable=True)  # ascending: free_list = phi
    # exclusive cumulative product: prod_{i<j} u[phi_i], with an empty product = 1 for j = 1
    before = torch.cumprod(F.pad(sorted_usage[:, :-1], (1, 0), value=1.0), dim=-1)
    sorted_allocation = (1 - sorted_usage) * before
    return torch.empty_like(usage).scatter(-1, free_list, sorted_allocation)


def write_weighting(
    allocation: torch.Tensor, content_w: torch.Tensor, alloc_gate: torch.Tensor, write_gate: torch.Tensor
) -> torch.Tensor:
    """Write weighting w^w_t = g^w_t [g^a_t a_t + (1 - g^a_t) c^w_t] (Graves et al. 2016, Methods).

    The allocation gate g^a chooses between a fresh slot (allocation) and a slot found by content; the write
    gate g^w can switch writing off altogether.

    Args:
        allocation: [B, N] allocation weighting a_t.
        content_w: [B, N] write content weighting c^w_t = C(M_{t-1}, k^w_t, beta^w_t).
        alloc_gate: [B] (or [B, 1]) allocation gate g^a_t in [0, 1].
        write_gate: [B] (or [B, 1]) write gate g^w_t in [0, 1].

    Returns:
        [B, N] write weighting; non-negative, sums to at most 1.
    """
    sizes = check_shape("allocation", allocation, "B N")
    check_shape("content_w", content_w, "B N", sizes)
    ga = _gate("alloc_gate", alloc_gate, sizes)
    gw = _gate("write_gate", write_gate, sizes)
    # g^a a + (1 - g^a) c, written as c + g^a (a - c)
    return gw * torch.addcmul(content_w, ga, allocation - content_w)


def _gate(name: str, gate: torch.Tensor, sizes: dict[str, int]) -> torch.Tensor:
    """A per-batch scalar gate as ``[B, 1]`` (accepts ``[B]`` or ``[B, 1]``)."""
    if gate.dim() == 1:
        check_shape(name, gate, "B", sizes)
        return gate.unsqueeze(-1)
    check_shape(name, gate, "B 1", sizes)
    return gate
