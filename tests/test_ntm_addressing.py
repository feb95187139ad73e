"""NTM location addressing (Graves et al. 2014, Eq. 7-9) against float64 references written from the paper."""

from __future__ import annotations

import math

import pytest
import torch

from mem_tutorial.memory import addressing as A


def _dist(*shape, gen):
    return torch.softmax(torch.randn(*shape, generator=gen, dtype=torch.float64), dim=-1)


# --- references written directly from the equations (loops, no library code) ---------------------------------
def ref_interpolate(wc, wp, g):
    return [[g[b] * wc[b][i] + (1 - g[b]) * wp[b][i] for i in range(len(wc[b]))] for b in range(len(wc))]


def ref_shift(w, s):
    """Eq. 8: w~(i) = sum_j w(j) s(i - j) (mod N), with s indexed by offset (j - S//2)."""
    out = []
    for b in range(len(w)):
        n, S = len(w[b]), len(s[b])
        row = []
        for i in range(n):
            total = 0.0
            for j in range(n):
                for k in range(S):
                    off = k - S // 2
                    if (i - j - off) % n == 0:
                        total += w[b][j] * s[b][k]
            row.append(total)
        out.append(row)
    return out


def ref_sharpen(w, gamma):
    out = []
    for b in range(len(w)):
        p = [x ** gamma[b] for x in w[b]]
        z = sum(p)
        out.append([x / z for x in p])
    return out


def ref_content(mem, k, beta):
    out = []
    for b in range(len(mem)):
        sims = []
        for row in mem[b]:
            dot = sum(a * c for a, c in zip(k[b], row))
            nk = math.sqrt(sum(a * a for a in k[b]))
            nm = math.sqrt(sum(a * a for a in row))
            sims.append(beta[b] * dot / (nk * nm))
        m = max(sims)
        e = [math.exp(x - m) for x in sims]
        out.append([x / sum(e) for x in e])
    return out


def _t(x):
    return torch.tensor(x, dtype=torch.float64)


# --- float64 reference tests -----------------------------------------------------------------------------------
def test_interpolate_matches_reference():
    gen = torch.Generator().manual_seed(0)
    wc, wp = _dist(3, 7, gen=gen), _dist(3, 7, gen=gen)
    g = torch.rand(3, generator=gen, dtype=torch.float64)
    expected = _t(ref_interpolate(wc.tolist(), wp.tolist(), g.tolist()))
    torch.testing.assert_close(A.interpolate(wc, wp, g), expected)


@pytest.mark.parametrize("n,S", [(7, 3), (5, 5), (10, 7), (3, 5)])
def test_shift_matches_reference(n, S):
    gen = torch.Generator().manual_seed(n * 10 + S)
    w, s = _dist(4, n, gen=gen), _dist(4, S, gen=gen)
    expected = _t(ref_shift(w.tolist(), s.tolist()))
    torch.testing.assert_close(A.shift(w, s), expected)


def test_sharpen_matches_reference():
    gen = torch.Generator().manual_seed(1)
    w = _dist(3, 9, gen=gen)
    gamma = 1 + 3 * torch.rand(3, generator=gen, dtype=torch.float64)
    expected = _t(ref_sharpen(w.tolist(), gamma.tolist()))
    torch.testing.assert_close(A.sharpen(w, gamma), expected)


def test_full_pipeline_matches_reference():
    gen = torch.Generator().manual_seed(2)
    B, N, W, S = 3, 8, 5, 3
    mem = torch.randn(B, N, W, generator=gen, dtype=torch.float64)
    key = torch.randn(B, W, generator=gen, dtype=torch.float64)
    beta = 5 * torch.rand(B, generator=gen, dtype=torch.float64)
    g = torch.rand(B, generator=gen, dtype=torch.float64)
    s = _dist(B, S, gen=gen)
    gamma = 1 + 2 * torch.rand(B, generator=gen, dtype=torch.float64)
    prev = _dist(B, N, gen=gen)
    wc = ref_content(mem.tolist(), key.tolist(), beta.tolist())
    wg = ref_interpolate(wc, prev.tolist(), g.tolist())
    expected = _t(ref_sharpen(ref_shift(wg, s.tolist()), gamma.tolist()))
    got = A.ntm_addressing(mem, key, beta, g, s, gamma, prev)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)  # COSINE_EPS perturbs the 7th digit


def test_multihead_equals_per_head():
    gen = torch.Generator().manual_seed(3)
    B, R, N, W, S = 2, 3, 6, 4, 3
    mem = torch.randn(B, N, W, generator=gen, dtype=torch.float64)
    key = torch.randn(B, R, W, generator=gen, dtype=torch.float64)
    beta, g = 4 * torch.rand(B, R, generator=gen, dtype=torch.float64), torch.rand(B, R, generator=gen, dtype=torch.float64)
    s, gamma, prev = _dist(B, R, S, gen=gen), 1 + torch.rand(B, R, generator=gen, dtype=torch.float64), _dist(B, R, N, gen=gen)
    batched = A.ntm_addressing(mem, key, beta, g, s, gamma, prev)
    assert batched.shape == (B, R, N)
    for r in range(R):
        one = A.ntm_addressing(mem, key[:, r], beta[:, r], g[:, r], s[:, r], gamma[:, r], prev[:, r])
        torch.testing.assert_close(batched[:, r], one)


# --- hand-checked cases and properties -------------------------------------------------------------------------
def test_shift_plus_one_moves_forward_with_wraparound():
    N = 5
    s = torch.tensor([[0.0, 0.0, 1.0]])  # offsets (-1, 0, +1): all mass on +1
    for i in range(N):
        w = torch.zeros(1, N)
        w[0, i] = 1
        out = A.shift(w, s)
        assert out[0].argmax().item() == (i + 1) % N
        assert out[0, (i + 1) % N].item() == 1.0
    # offset -1 moves backward: slot 0 wraps to slot N - 1
    w = torch.zeros(1, N)
    w[0, 0] = 1
    assert A.shift(w, torch.tensor([[1.0, 0.0, 0.0]]))[0, N - 1].item() == 1.0


def test_shift_hand_checked_blur():
    w = torch.tensor([[0.0, 1.0, 0.0, 0.0]])
    s = torch.tensor([[0.25, 0.5, 0.25]])
    torch.testing.assert_close(A.shift(w, s), torch.tensor([[0.25, 0.5, 0.25, 0.0]]))


def test_shift_offset_two_in_range_five():
    w = torch.zeros(1, 6)
    w[0, 5] = 1
    s = torch.tensor([[0.0, 0.0, 0.0, 0.0, 1.0]])  # offsets -2..+2, all on +2
    assert A.shift(w, s)[0, 1].item() == 1.0


def test_interpolate_extremes():
    wc, wp = torch.tensor([[1.0, 0, 0]]), torch.tensor([[0, 0, 1.0]])
    torch.testing.assert_close(A.interpolate(wc, wp, torch.tensor([1.0])), wc)
    torch.testing.assert_close(A.interpolate(wc, wp, torch.tensor([0.0])), wp)
    torch.testing.assert_close(A.interpolate(wc, wp, torch.tensor([0.25])), torch.tensor([[0.25, 0, 0.75]]))


def test_sharpen_hand_checked_and_gamma_one_is_identity():
    w = torch.tensor([[0.5, 0.25, 0.25]])
    torch.testing.assert_close(A.sharpen(w, torch.tensor([2.0])), torch.tensor([[4 / 6, 1 / 6, 1 / 6]]))
    torch.testing.assert_close(A.sharpen(w, torch.tensor([1.0])), w)
    # not yet normalised input: sharpening renormalises
    torch.testing.assert_close(A.sharpen(torch.tensor([[2.0, 2.0]]), torch.tensor([3.0])), torch.tensor([[0.5, 0.5]]))


def test_all_stages_return_distributions():
    gen = torch.Generator().manual_seed(4)
    B, R, N, W = 5, 2, 11, 6
    mem = torch.randn(B, N, W, generator=gen)
    out = A.ntm_addressing(
        mem, torch.randn(B, R, W, generator=gen), 10 * torch.rand(B, R, generator=gen), torch.rand(B, R, generator=gen),
        _dist(B, R, 3, gen=gen).float(), 1 + 20 * torch.rand(B, R, generator=gen), _dist(B, R, N, gen=gen).float(),
    )
    assert (out >= 0).all()
    torch.testing.assert_close(out.sum(-1), torch.ones(B, R))


def test_sharpening_increases_peak():
    gen = torch.Generator().manual_seed(5)
    w = _dist(4, 9, gen=gen)
    assert (A.sharpen(w, torch.full((4,), 3.0, dtype=torch.float64)).max(-1).values >= w.max(-1).values).all()


# --- gradients -------------------------------------------------------------------------------------------------
def test_gradcheck_each_stage_and_pipeline():
    gen = torch.Generator().manual_seed(6)
    B, R, N, W = 2, 2, 5, 3

    def leaf(x):
        return x.clone().requires_grad_(True)

    wc, wp = leaf(_dist(B, R, N, gen=gen)), leaf(_dist(B, R, N, gen=gen))
    g = leaf(torch.rand(B, R, generator=gen, dtype=torch.float64))
    s = leaf(_dist(B, R, 3, gen=gen))
    gamma = leaf(1 + torch.rand(B, R, generator=gen, dtype=torch.float64))
    mem = leaf(torch.randn(B, N, W, generator=gen, dtype=torch.float64))
    key = leaf(torch.randn(B, R, W, generator=gen, dtype=torch.float64))
    beta = leaf(3 * torch.rand(B, R, generator=gen, dtype=torch.float64))
    assert torch.autograd.gradcheck(A.interpolate, (wc, wp, g))
    assert torch.autograd.gradcheck(A.shift, (wc, s))
    assert torch.autograd.gradcheck(A.sharpen, (wc, gamma))
    assert torch.autograd.gradcheck(A.ntm_addressing, (mem, key, beta, g, s, gamma, wp))


def test_no_nan_gradient_on_zero_memory_and_zero_weights():
    B, N, W = 2, 4, 3
    mem = torch.zeros(B, N, W, requires_grad=True)
    key = torch.zeros(B, W, requires_grad=True)
    beta, g = torch.ones(B, requires_grad=True), torch.full((B,), 0.5, requires_grad=True)
    s = torch.tensor([[0.0, 1.0, 0.0]] * B, requires_grad=True)
    gamma = torch.full((B,), 2.0, requires_grad=True)
    prev = torch.zeros(B, N, requires_grad=True)
    out = A.ntm_addressing(mem, key, beta, g, s, gamma, prev)
    out.pow(2).sum().backward()
    for t in (mem, key, beta, g, s, gamma, prev):
        assert torch.isfinite(t.grad).all()
    # an all-zero weighting through sharpening: finite values and gradients
    w = torch.zeros(B, N, requires_grad=True)
    gam = torch.full((B,), 1.5, requires_grad=True)
    out = A.sharpen(w, gam)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(w.grad).all() and torch.isfinite(gam.grad).all()


# --- shapes and errors -----------------------------------------------------------------------------------------
def test_bad_shapes_raise_clear_errors():
    w = torch.full((2, 5), 0.2)
    with pytest.raises(ValueError, match="odd"):
        A.shift(w, torch.full((2, 4), 0.25))
    with pytest.raises(ValueError, match="shift_dist"):
        A.shift(w, torch.full((3, 3), 1 / 3))
    with pytest.raises(ValueError, match="gate"):
        A.interpolate(w, w, torch.ones(2, 1))
    with pytest.raises(ValueError, match="gamma"):
        A.sharpen(torch.full((2, 3, 5), 0.2), torch.ones(2))


def test_dtype_and_device_follow_input():
    w = torch.full((1, 2, 4), 0.25, dtype=torch.float64)
    out = A.sharpen(A.shift(w, torch.full((1, 2, 3), 1 / 3, dtype=torch.float64)), torch.ones(1, 2, dtype=torch.float64))
    assert out.dtype == torch.float64 and out.device == w.device
