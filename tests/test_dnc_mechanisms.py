"""DNC mechanisms (Graves et al. 2016, Methods) against float64 references written from the equations.

The references below loop over slots on purpose: they transcribe the paper's formulas one index at a time,
independently of the batched implementation.
"""

from __future__ import annotations

import pytest
import torch

from mem_tutorial.memory import (
    allocation_weighting,
    directional_weightings,
    precedence_update,
    read_weighting,
    retention_vector,
    temporal_link,
    temporal_link_update,
    usage_update,
    write_weighting,
)

D = torch.float64


# ---------------------------------------------------------------- references (one batch element, plain loops)
def ref_retention(f, wr):  # f [R], wr [R, N]
    R, N = wr.shape
    psi = torch.ones(N, dtype=D)
    for n in range(N):
        for i in range(R):
            psi[n] *= 1 - f[i] * wr[i, n]
    return psi


def ref_usage(u, ww, psi):
    return torch.stack([(u[n] + ww[n] - u[n] * ww[n]) * psi[n] for n in range(len(u))])


def ref_allocation(u):
    N = len(u)
    # free list: indices by ascending usage, ties by index
    phi = sorted(range(N), key=lambda n: (float(u[n]), n))
    a = torch.zeros(N, dtype=D)
    for j in range(N):
        prod = torch.tensor(1.0, dtype=D)
        for i in range(j):
            prod = prod * u[phi[i]]
        a[phi[j]] = (1 - u[phi[j]]) * prod
    return a


def ref_write_weighting(a, c, ga, gw):
    return gw * (ga * a + (1 - ga) * c)


def ref_precedence(p, ww):
    return (1 - sum(ww[i] for i in range(len(ww)))) * p + ww


def ref_link(L, p, ww):
    N = len(ww)
    out = torch.zeros(N, N, dtype=D)
    for i in range(N):
        for j in range(N):
            if i != j:
                out[i, j] = (1 - ww[i] - ww[j]) * L[i, j] + ww[i] * p[j]
    return out


def ref_directional(L, wr):  # wr [R, N]
    R, N = wr.shape
    f = torch.zeros(R, N, dtype=D)
    b = torch.zeros(R, N, dtype=D)
    for r in range(R):
        for i in range(N):
            f[r, i] = sum(L[i, j] * wr[r, j] for j in range(N))
            b[r, i] = sum(L[j, i] * wr[r, j] for j in range(N))
    return f, b


# ---------------------------------------------------------------- random inputs
def simplex(*shape, slack=True, g=None):
    """Rows that are non-negative and sum to at most 1 (or exactly 1 with slack=False)."""
    x = torch.rand(*shape, dtype=D, generator=g)
    x = x / x.sum(-1, keepdim=True)
    if slack:
        x = x * torch.rand(*shape[:-1], 1, dtype=D, generator=g)
    return x


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)


# ---------------------------------------------------------------- hand-checked cases
def test_allocation_hand_checked():
    # free list phi = (1, 0, 2); a[1] = 0.9, a[0] = 0.6 * 0.1, a[2] = 0.1 * 0.1 * 0.4
    a = allocation_weighting(torch.tensor([[0.4, 0.1, 0.9]], dtype=D))
    torch.testing.assert_close(a, torch.tensor([[0.06, 0.9, 0.004]], dtype=D))


def test_allocation_all_zero_and_all_full():
    a = allocation_weighting(torch.zeros(2, 4, dtype=D))
    torch.testing.assert_close(a, torch.tensor([[1.0, 0, 0, 0]] * 2, dtype=D))  # ties: lowest index first
    torch.testing.assert_close(allocation_weighting(torch.ones(1, 4, dtype=D)), torch.zeros(1, 4, dtype=D))


def test_allocation_is_not_the_unsorted_product():
    # an implementation that forgets to sort gives a[0] = 0.6 here, not 0.06
    a = allocation_weighting(torch.tensor([[0.4, 0.1, 0.9]], dtype=D))
    assert a[0, 1] > a[0, 0] > a[0, 2]


def test_retention_and_usage_hand_checked():
    f = torch.tensor([[1.0, 0.5]], dtype=D)
    wr = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]]], dtype=D)
    psi = retention_vector(f, wr)
    torch.testing.assert_close(psi, torch.tensor([[0.0, 0.75, 0.75]], dtype=D))
    u = usage_update(torch.tensor([[0.5, 0.5, 0.0]], dtype=D), torch.tensor([[0.0, 0.5, 1.0]], dtype=D), psi)
    torch.testing.assert_close(u, torch.tensor([[0.0, 0.75 * 0.75, 0.75]], dtype=D))


def test_link_hand_checked_sequence():
    # write slot 2, then slot 0, then slot 1 (one-hot, full writes): L[0,2] = 1, L[1,0] = 1
    N = 3
    L = torch.zeros(1, N, N, dtype=D)
    p = torch.zeros(1, N, dtype=D)
    for slot in (2, 0, 1):
        w = torch.zeros(1, N, dtype=D)
        w[0, slot] = 1
        L = temporal_link_update(L, p, w)
        p = precedence_update(p, w)
    expected = torch.zeros(N, N, dtype=D)
    expected[0, 2] = 1
    expected[1, 0] = 1
    torch.testing.assert_close(L[0], expected)
    torch.testing.assert_close(p[0], torch.tensor([0.0, 1.0, 0.0], dtype=D))
    # reading slot 0: forward goes to slot 1 (written after), backward to slot 2 (written before)
    f, b = directional_weightings(L, torch.tensor([[[1.0, 0.0, 0.0]]], dtype=D))
    torch.testing.assert_close(f[0, 0], torch.tensor([0.0, 1.0, 0.0], dtype=D))
    torch.testing.assert_close(b[0, 0], torch.tensor([0.0, 0.0, 1.0], dtype=D))


def test_link_diagonal_is_zero_even_when_rewriting_the_same_slot():
    N = 4
    L = torch.zeros(1, N, N, dtype=D)
    p = torch.zeros(1, N, dtype=D)
    w = torch.tensor([[0.0, 1.0, 0.0, 0.0]], dtype=D)
    for _ in range(3):
        L = temporal_link_update(L, p, w)
        p = precedence_update(p, w)
    assert torch.all(L.diagonal(dim1=-2, dim2=-1) == 0)
    assert temporal_link is temporal_link_update


def test_read_weighting_hand_checked():
    b = torch.tensor([[[1.0, 0, 0]]], dtype=D)
    c = torch.tensor([[[0, 1.0, 0]]], dtype=D)
    f = torch.tensor([[[0, 0, 1.0]]], dtype=D)
    pi = torch.tensor([[[0.2, 0.3, 0.5]]], dtype=D)  # (backward, content, forward)
    torch.testing.assert_close(read_weighting(b, c, f, pi), torch.tensor([[[0.2, 0.3, 0.5]]], dtype=D))


def test_write_weighting_hand_checked_and_gate_shapes():
    a = torch.tensor([[1.0, 0.0]], dtype=D)
    c = torch.tensor([[0.0, 1.0]], dtype=D)
    expected = torch.tensor([[0.5 * 0.25, 0.5 * 0.75]], dtype=D)
    torch.testing.assert_close(write_weighting(a, c, torch.tensor([0.25], dtype=D), torch.tensor([0.5], dtype=D)), expected)
    torch.testing.assert_close(
        write_weighting(a, c, torch.tensor([[0.25]], dtype=D), torch.tensor([[0.5]], dtype=D)), expected
    )


# ---------------------------------------------------------------- against the references, random batches
@pytest.mark.parametrize("B,R,N", [(1, 1, 1), (3, 2, 5), (2, 4, 9)])
def test_against_references(gen, B, R, N):
    f = torch.rand(B, R, dtype=D, generator=gen)
    wr = simplex(B, R, N, g=gen)
    u_prev = torch.rand(B, N, dtype=D, generator=gen)
    ww_prev = simplex(B, N, g=gen)
    c = simplex(B, N, slack=False, g=gen)
    ga, gw = torch.rand(B, dtype=D, generator=gen), torch.rand(B, dtype=D, generator=gen)
    L_prev = simplex(B, N, N, g=gen) * 0.5
    p_prev = simplex(B, N, g=gen)
    cr = simplex(B, R, N, slack=False, g=gen)
    fw = simplex(B, R, N, g=gen)
    bw = simplex(B, R, N, g=gen)
    pi = torch.softmax(torch.randn(B, R, 3, dtype=D, generator=gen), -1)

    psi = retention_vector(f, wr)
    u = usage_update(u_prev, ww_prev, psi)
    a = allocation_weighting(u)
    ww = write_weighting(a, c, ga, gw)
    L = temporal_link_update(L_prev, p_prev, ww)
    p = precedence_update(p_prev, ww)
    fwd, bwd = directional_weightings(L, wr)
    rw = read_weighting(bw, cr, fw, pi)
    for k in range(B):
        torch.testing.assert_close(psi[k], ref_retention(f[k], wr[k]))
        torch.testing.assert_close(u[k], ref_usage(u_prev[k], ww_prev[k], psi[k]))
        torch.testing.assert_close(a[k], ref_allocation(u[k]))
        torch.testing.assert_close(ww[k], ref_write_weighting(a[k], c[k], ga[k], gw[k]))
        torch.testing.assert_close(L[k], ref_link(L_prev[k], p_prev[k], ww[k]))
        torch.testing.assert_close(p[k], ref_precedence(p_prev[k], ww[k]))
        rf, rb = ref_directional(L[k], wr[k])
        torch.testing.assert_close(fwd[k], rf)
        torch.testing.assert_close(bwd[k], rb)
        expected_rw = pi[k, :, 0:1] * bw[k] + pi[k, :, 1:2] * cr[k] + pi[k, :, 2:3] * fw[k]
        torch.testing.assert_close(rw[k], expected_rw)


def test_allocation_with_ties_matches_reference():
    u = torch.tensor([[0.5, 0.2, 0.5, 0.2, 0.0, 0.0]], dtype=D)
    torch.testing.assert_close(allocation_weighting(u)[0], ref_allocation(u[0]))


# ---------------------------------------------------------------- properties over a random rollout
def test_properties_over_a_rollout(gen):
    B, R, N, T = 4, 3, 7, 25
    u = torch.zeros(B, N, dtype=D)
    ww = torch.zeros(B, N, dtype=D)
    wr = torch.zeros(B, R, N, dtype=D)
    L = torch.zeros(B, N, N, dtype=D)
    p = torch.zeros(B, N, dtype=D)
    for _ in range(T):
        psi = retention_vector(torch.rand(B, R, dtype=D, generator=gen), wr)
        u = usage_update(u, ww, psi)
        assert torch.all((u >= 0) & (u <= 1))
        a = allocation_weighting(u)
        assert torch.all(a >= 0)
        assert torch.all(a.sum(-1) <= 1 + 1e-12)
        torch.testing.assert_close(a.sum(-1), 1 - u.prod(-1))
        ww = write_weighting(a, simplex(B, N, slack=False, g=gen), torch.rand(B, dtype=D, generator=gen),
                             torch.rand(B, dtype=D, generator=gen))
        assert torch.all(ww >= 0) and torch.all(ww.sum(-1) <= 1 + 1e-12)
        L = temporal_link_update(L, p, ww)
        p = precedence_update(p, ww)
        assert torch.all(L >= 0) and torch.all(L <= 1)
        assert torch.all(L.sum(-1) <= 1 + 1e-12), "rows of L sum to at most 1"
        assert torch.all(L.sum(-2) <= 1 + 1e-12), "columns of L sum to at most 1"
        assert torch.all(L.diagonal(dim1=-2, dim2=-1) == 0)
        assert torch.all(p >= 0) and torch.all(p.sum(-1) <= 1 + 1e-12)
        fwd, bwd = directional_weightings(L, wr)
        assert torch.all(fwd >= 0) and torch.all(bwd >= 0)
        assert torch.all(fwd.sum(-1) <= 1 + 1e-12) and torch.all(bwd.sum(-1) <= 1 + 1e-12)
        pi = torch.softmax(torch.randn(B, R, 3, dtype=D, generator=gen), -1)
        wr = read_weighting(bwd, simplex(B, R, N, slack=False, g=gen), fwd, pi)
        assert torch.all(wr >= 0) and torch.all(wr.sum(-1) <= 1 + 1e-12)


# ---------------------------------------------------------------- gradients
def test_gradcheck(gen):
    B, R, N = 2, 2, 5
    f = torch.rand(B, R, dtype=D, generator=gen).requires_grad_()
    wr = simplex(B, R, N, g=gen).requires_grad_()
    u = (torch.rand(B, N, dtype=D, generator=gen) * 0.9 + 0.05).requires_grad_()
    ww = simplex(B, N, g=gen).requires_grad_()
    psi = torch.rand(B, N, dtype=D, generator=gen).requires_grad_()
    c = simplex(B, N, g=gen).requires_grad_()
    ga = torch.rand(B, dtype=D, generator=gen).requires_grad_()
    gw = torch.rand(B, dtype=D, generator=gen).requires_grad_()
    L = (simplex(B, N, N, g=gen) * 0.5).requires_grad_()
    p = simplex(B, N, g=gen).requires_grad_()
    pi = torch.softmax(torch.randn(B, R, 3, dtype=D, generator=gen), -1).requires_grad_()
    fw, bw = simplex(B, R, N, g=gen).requires_grad_(), simplex(B, R, N, g=gen).requires_grad_()
    assert torch.autograd.gradcheck(retention_vector, (f, wr))
    assert torch.autograd.gradcheck(usage_update, (u, ww, psi))
    assert torch.autograd.gradcheck(allocation_weighting, (u,))  # distinct usages: sort order is locally fixed
    assert torch.autograd.gradcheck(write_weighting, (u, c, ga, gw))
    assert torch.autograd.gradcheck(precedence_update, (p, ww))
    assert torch.autograd.gradcheck(temporal_link_update, (L, p, ww))
    assert torch.autograd.gradcheck(directional_weightings, (L, wr))
    assert torch.autograd.gradcheck(read_weighting, (bw, wr, fw, pi))


def test_no_nan_gradients_with_all_zero_usage():
    for usage in (torch.zeros(2, 6, dtype=D), torch.ones(2, 6, dtype=D), torch.tensor([[0.0, 0.0, 1.0, 0.5]], dtype=D)):
        usage = usage.clone().requires_grad_()
        a = allocation_weighting(usage)
        (a * torch.arange(1, a.shape[-1] + 1, dtype=D)).sum().backward()
        assert torch.isfinite(a).all() and torch.isfinite(usage.grad).all()
    # whole first step from the all-zero initial state
    B, R, N = 2, 3, 4
    f = torch.rand(B, R, dtype=D).requires_grad_()
    psi = retention_vector(f, torch.zeros(B, R, N, dtype=D))
    u = usage_update(torch.zeros(B, N, dtype=D), torch.zeros(B, N, dtype=D), psi)
    ww = write_weighting(allocation_weighting(u), torch.full((B, N), 1 / N, dtype=D), torch.full((B,), 0.5, dtype=D),
                         torch.ones(B, dtype=D))
    L = temporal_link_update(torch.zeros(B, N, N, dtype=D), torch.zeros(B, N, dtype=D), ww)
    fwd, bwd = directional_weightings(L, torch.zeros(B, R, N, dtype=D))
    (fwd.sum() + bwd.sum() + L.sum() + ww.sum()).backward()
    assert torch.isfinite(f.grad).all()


# ---------------------------------------------------------------- shape errors
def test_shape_errors_name_the_argument():
    with pytest.raises(ValueError, match="usage"):
        allocation_weighting(torch.zeros(3))
    with pytest.raises(ValueError, match="prev_read_weights"):
        retention_vector(torch.zeros(2, 3), torch.zeros(2, 4, 5))
    with pytest.raises(ValueError, match="write_weights"):
        temporal_link_update(torch.zeros(2, 4, 4), torch.zeros(2, 4), torch.zeros(2, 5))
    with pytest.raises(ValueError, match="read_modes"):
        read_weighting(torch.zeros(1, 2, 3), torch.zeros(1, 2, 3), torch.zeros(1, 2, 3), torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match="alloc_gate"):
        write_weighting(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3), torch.zeros(2))


def test_follows_input_dtype():
    a = allocation_weighting(torch.rand(2, 5, dtype=torch.float32))
    assert a.dtype == torch.float32
    L = temporal_link_update(torch.zeros(1, 3, 3, dtype=D), torch.zeros(1, 3, dtype=D), torch.rand(1, 3, dtype=D) / 3)
    assert L.dtype == D
