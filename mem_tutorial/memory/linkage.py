"""Temporal memory linkage: precedence, the link matrix, forward/backward weightings and read modes (DNC).

Graves et al. 2016, "Hybrid computing using a neural network with dynamic external memory", Nature 538,
Methods, "Temporal memory linkage" and "Read weighting". Allocation writes to whichever slot is free, so
slot order says nothing about write order; the link matrix L remembers it: L[i, j] ~ "slot i was written
right after slot j". A read head can then step forwards (f = L w^r) or backwards (b = L^T w^r) in write order.

Symbols: B batch, N slots, R read heads. One write head (as in the paper).

Order within one time step t (after the write weighting w^w_t is known):

1. ``temporal_link_update(L_{t-1}, p_{t-1}, w^w_t)``   L_t   (uses the *previous* precedence)
2. ``precedence_update(p_{t-1}, w^w_t)``               p_t
3. ``directional_weightings(L_t, w^r_{t-1})``          f_t, b_t
4. ``read_weighting(b_t, c^r_t, f_t, pi_t)``           w^r_t

Cost: L is an N x N matrix per batch element, so the link update and the directional weightings cost
O(B N^2) time and memory per step (O(B R N^2) for the R heads' weightings) -- the DNC's most expensive part
for large N (the sparse DNC of Rae et al. 2016 reduces it).

Variants for speed (same equations): :func:`temporal_link_update_plain` (one broadcast formula, for
``torch.compile``) and the sparse DNC's :func:`sparse_temporal_link_update` / :func:`sparse_precedence_update`
(top-K write weighting and precedence, O(B N K) arithmetic; equal to the exact ones when K >= N).
"""

from __future__ import annotations

import torch

from mem_tutorial.memory._shapes import check_shape

#: Read-mode order in ``read_modes[..., k]``, as in the paper's pi_t = (backward, content, forward).
READ_MODES = ("backward", "content", "forward")


def precedence_update(prev_precedence: torch.Tensor, write_weights: torch.Tensor) -> torch.Tensor:
    """Precedence p_t = (1 - sum_i w^w_t[i]) p_{t-1} + w^w_t, with p_0 = 0 (Graves et al. 2016, Methods).

    p_t[i] is the degree to which slot i was the last one written. A full write (sum w^w = 1) replaces p
    by w^w; no write (w^w = 0) leaves it unchanged.

    Args:
        prev_precedence: [B, N] precedence p_{t-1}.
        write_weights: [B, N] write weighting w^w_t.

    Returns:
        [B, N] precedence p_t; non-negative, sums to at most 1.
    """
    sizes = check_shape("prev_precedence", prev_precedence, "B N")
    check_shape("write_weights", write_weights, "B N", sizes)
    return torch.addcmul(write_weights, 1 - write_weights.sum(-1, keepdim=True), prev_precedence)


def temporal_link_update(
    prev_link: torch.Tensor, prev_precedence: torch.Tensor, write_weights: torch.Tensor
) -> torch.Tensor:
    """Temporal link L_t[i,j] = (1 - w[i] - w[j]) L_{t-1}[i,j] + w[i] p_{t-1}[j], L_t[i,i] = 0.

    Graves et al. 2016, Methods, "Temporal memory linkage" (w = w^w_t, L_0 = 0). Row i is the slot written
    *now*, column j a slot written just before (through the previous precedence p_{t-1}). Writing to slot i
    or slot j fades the old link between them. Self-links are meaningless and are set to zero.

    Convention: ``link[b, i, j]`` = L[i, j], so the forward weighting is ``L @ w`` (row i = "comes after j").
    Cost: O(B N^2) time and memory per step.

    Properties (for write weightings that sum to at most 1): L in [0, 1], each row and each column sums to
    at most 1, zero diagonal.

    Args:
        prev_link: [B, N, N] link matrix L_{t-1}.
        prev_precedence: [B, N] precedence p_{t-1} (before this step's :func:`precedence_update`).
        write_weights: [B, N] write weighting w^w_t.

    Returns:
        [B, N, N] link matrix L_t.
    """
    sizes = check_shape("prev_link", prev_link, "B N N")
    check_shape("prev_precedence", prev_precedence, "B N", sizes)
    check_shape("write_weights", write_weights, "B N", sizes)
    return _TemporalLink.apply(prev_link, prev_precedence, write_weights)


class _TemporalLink(torch.autograd.Function):
    """The link update with a hand-derived backward pass (the matrix is the DNC's hot spot).

    Autograd through the broadcast formula materialises about ten N x N temporaries per step; this version
    uses three in the forward pass and four in the backward pass. With G = dloss/dL_t, D = 1 - I (off-diagonal
    mask) and S[i, j] = 1 - w[i] - w[j]:

    - dL_{t-1} = D * G * S
    - dp_{t-1}[j] = sum_i (D * G)[i, j] w[i]
    - dw[i] = sum_j (D * G)[i, j] p[j] - sum_j Q[i, j] - sum_j Q[j, i], with Q = D * G * L_{t-1}

    ``tests/test_dnc_mechanisms.py`` checks it with ``gradcheck`` against finite differences.
    """

    @staticmethod
    def forward(ctx, prev_link, prev_precedence, write_weights):
        w_i = write_weights.unsqueeze(-1)  # [B, N, 1]: row index i
        w_j = write_weights.unsqueeze(-2)  # [B, 1, N]: column index j
        link = torch.sub(1 - w_i, w_j).mul_(prev_link)  # (1 - w[i] - w[j]) L[i, j]
        link.addcmul_(w_i, prev_precedence.unsqueeze(-2))  # + w[i] p[j]
        link.diagonal(dim1=-2, dim2=-1).zero_()  # no self-links
        ctx.save_for_backward(prev_link, prev_precedence, write_weights)
        return link

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        prev_link, prev_precedence, w = ctx.saved_tensors
        # D * G without copying G: zero the diagonal of each N x N result instead, and remove the diagonal
        # terms G[i, i] from the two matrix-vector products (O(N) corrections).
        g_diag = grad.diagonal(dim1=-2, dim2=-1)  # [B, N]
        d_link = d_prec = d_w = None
        if ctx.needs_input_grad[0]:
            d_link = torch.sub(1 - w.unsqueeze(-1), w.unsqueeze(-2)).mul_(grad)
            d_link.diagonal(dim1=-2, dim2=-1).zero_()
        if ctx.needs_input_grad[1]:
            d_prec = torch.bmm(w.unsqueeze(-2), grad).squeeze(-2) - g_diag * w
        if ctx.needs_input_grad[2]:
            q = grad * prev_link
            q.diagonal(dim1=-2, dim2=-1).zero_()
            d_w = torch.bmm(grad, prev_precedence.unsqueeze(-1)).squeeze(-1) - g_diag * prev_precedence
            d_w = d_w - q.sum(-1) - q.sum(-2)
        return d_link, d_prec, d_w


#: The same function under the paper's name for the matrix it returns.
temporal_link = temporal_link_update


def temporal_link_update_plain(
    prev_link: torch.Tensor, prev_precedence: torch.Tensor, write_weights: torch.Tensor
) -> torch.Tensor:
    """:func:`temporal_link_update` as one broadcast formula of plain tensor operations (autograd derives the
    backward pass).

    Same equation (Graves et al. 2016, Methods): L_t[i,j] = (1 - w[i] - w[j]) L_{t-1}[i,j] + w[i] p_{t-1}[j],
    L_t[i,i] = 0. Eager, this costs more N x N temporaries than the hand-derived :class:`_TemporalLink`;
    ``torch.compile`` fuses it into one kernel forward and one backward, so the compiled DNC
    (:meth:`mem_tutorial.models.dnc.DNC.compile_step`) uses it. No shape checks (they are Python branches
    the compiler would have to guard on); the caller has checked the shapes. Shapes as in
    :func:`temporal_link_update`: [B, N, N], [B, N], [B, N] -> [B, N, N].
    """
    w_i = write_weights.unsqueeze(-1)  # [B, N, 1]
    w_j = write_weights.unsqueeze(-2)  # [B, 1, N]
    link = (1 - w_i - w_j) * prev_link + w_i * prev_precedence.unsqueeze(-2)
    n = link.shape[-1]
    eye = torch.eye(n, dtype=torch.bool, device=link.device)  # allocated on the link's device
    return link.masked_fill(eye, 0.0)


def topk_sparsify(weights: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` largest entries of each row of ``weights`` [..., N] and set the others to zero.

    The sparse DNC (Rae et al. 2016, "Scaling memory-augmented neural networks with sparse reads and writes",
    Section 3.1 and Supplementary D, "Sparse temporal memory linkage") keeps only the K largest entries of the
    write weighting and of the precedence, which makes the link update O(N K) instead of O(N^2). Gradients flow
    to the kept entries only. With k >= N this returns ``weights`` unchanged.
    """
    n = weights.shape[-1]
    if k >= n:
        return weights
    values, index = torch.topk(weights, k, dim=-1)
    return torch.zeros_like(weights).scatter(-1, index, values)


def sparse_temporal_link_update(
    prev_link: torch.Tensor, prev_precedence: torch.Tensor, write_weights: torch.Tensor, k: int
) -> torch.Tensor:
    """The sparse DNC's link update (Rae et al. 2016, Supplementary D): the DNC equation with the write
    weighting and the precedence truncated to their top ``k`` entries, evaluated in O(B N K) arithmetic.

    With w = topk(w^w_t, K) and p = topk(p_{t-1}, K) (:func:`topk_sparsify`), and S the K slots of w's support:

    - rows i in S:            L_t[i, j] = (1 - w[i] - w[j]) L_{t-1}[i, j] + w[i] p[j]       (K x N entries)
    - columns j in S, i not:  L_t[i, j] = (1 - w[j]) L_{t-1}[i, j]                          (N x K entries)
    - everything else:        L_t[i, j] = L_{t-1}[i, j]   (w[i] = w[j] = 0 there: the exact formula's value)

    and L_t[i, i] = 0. So only the K rows and K columns of the written slots are computed (gathered, updated
    and scattered back); the rest of L is carried over unchanged. The matrix is still stored dense
    ([B, N, N], so that :func:`directional_weightings` and the DNC's state are unchanged, and the out-of-place
    scatter that autograd needs copies it once); the arithmetic is O(B N K) instead of O(B N^2). With K >= N
    the result equals :func:`temporal_link_update` (tested in float64).

    Args:
        prev_link: [B, N, N] link matrix L_{t-1}.
        prev_precedence: [B, N] precedence p_{t-1}.
        write_weights: [B, N] write weighting w^w_t.
        k: K, the number of entries of w and p kept (>= 1).

    Returns:
        [B, N, N] link matrix L_t.
    """
    sizes = check_shape("prev_link", prev_link, "B N N")
    check_shape("prev_precedence", prev_precedence, "B N", sizes)
    check_shape("write_weights", write_weights, "B N", sizes)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    B, N = write_weights.shape
    k = min(k, N)
    w_val, w_idx = torch.topk(write_weights, k, dim=-1)  # [B, K]: the written slots S and their weights
    w = torch.zeros_like(write_weights).scatter(-1, w_idx, w_val)  # [B, N] sparse w, dense layout
    p = topk_sparsify(prev_precedence, k)  # [B, N]
    # columns j in S (all rows i): (1 - w[j]) L[i, j]
    col_idx = w_idx.unsqueeze(-2).expand(B, N, k)  # [B, N, K]
    cols = (1 - w_val).unsqueeze(-2) * prev_link.gather(-1, col_idx)
    # rows i in S (all columns j): (1 - w[i] - w[j]) L[i, j] + w[i] p[j], then the diagonal L[i, i] = 0
    row_idx = w_idx.unsqueeze(-1).expand(B, k, N)  # [B, K, N]
    w_i = w_val.unsqueeze(-1)  # [B, K, 1]
    rows = (1 - w_i - w.unsqueeze(-2)) * prev_link.gather(-2, row_idx) + w_i * p.unsqueeze(-2)
    rows = rows.scatter(-1, w_idx.unsqueeze(-1), 0.0)  # row S_k's diagonal entry is column S_k
    # rows after columns: the rows' formula already holds for their entries in the columns of S
    return prev_link.scatter(-1, col_idx, cols).scatter(-2, row_idx, rows)


def sparse_precedence_update(prev_precedence: torch.Tensor, write_weights: torch.Tensor, k: int) -> torch.Tensor:
    """The sparse DNC's precedence (Rae et al. 2016, Supplementary D): :func:`precedence_update` with the write
    weighting truncated to its top ``k`` entries, the result truncated to its top ``k`` entries.
    [B, N], [B, N] -> [B, N]; equals :func:`precedence_update` when K >= N."""
    check_shape("write_weights", write_weights, "B N", check_shape("prev_precedence", prev_precedence, "B N"))
    return topk_sparsify(precedence_update(prev_precedence, topk_sparsify(write_weights, k)), k)


def directional_weightings(link: torch.Tensor, prev_read_weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward f^i_t = L_t w^{r,i}_{t-1} and backward b^i_t = L_t^T w^{r,i}_{t-1} (Graves et al. 2016, Methods).

    Forward moves each read head to the slot written after the one it read; backward to the one before.
    Cost: O(B R N^2).

    Args:
        link: [B, N, N] link matrix L_t (``link[b, i, j]`` = L[i, j]).
        prev_read_weights: [B, R, N] read weightings w^r_{t-1}.

    Returns:
        (forward, backward), each [B, R, N]: non-negative, each sums to at most 1.
    """
    sizes = check_shape("link", link, "B N N")
    check_shape("prev_read_weights", prev_read_weights, "B R N", sizes)
    forward = torch.bmm(prev_read_weights, link.transpose(-2, -1))  # f[r, i] = sum_j L[i, j] w[r, j]
    backward = torch.bmm(prev_read_weights, link)  # b[r, j] = sum_i w[r, i] L[i, j]
    return forward, backward


def read_weighting(
    backward: torch.Tensor, content: torch.Tensor, forward: torch.Tensor, read_modes: torch.Tensor
) -> torch.Tensor:
    """Read weighting w^{r,i}_t = pi^i_t[1] b^i_t + pi^i_t[2] c^{r,i}_t + pi^i_t[3] f^i_t (Graves et al. 2016).

    Each read head mixes three modes with its read-mode distribution pi (a softmax over 3): follow the links
    backwards, look up by content, or follow the links forwards. Order: ``READ_MODES`` =
    (backward, content, forward), as in the paper.

    Args:
        backward: [B, R, N] backward weightings b_t.
        content: [B, R, N] read content weightings c^r_t = C(M_t, k^r_t, beta^r_t).
        forward: [B, R, N] forward weightings f_t.
        read_modes: [B, R, 3] read modes pi_t (non-negative, each row sums to 1).

    Returns:
        [B, R, N] read weightings w^r_t.
    """
    sizes = check_shape("backward", backward, "B R N")
    check_shape("content", content, "B R N", sizes)
    check_shape("forward", forward, "B R N", sizes)
    check_shape("read_modes", read_modes, "B R 3", sizes)
    modes = torch.stack([backward, content, forward], dim=-2)  # [B, R, 3, N]
    return torch.matmul(read_modes.unsqueeze(-2), modes).squeeze(-2)  # sum_k pi[k] * mode_k
