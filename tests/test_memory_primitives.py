"""Shared memory primitives (Chapter 1) against float64 references written from the equations.

Graves et al. 2014, Eq. 2 (read), Eq. 3-4 (erase, add), Eq. 5-6 (content addressing)."""

import math

import pytest
import torch

import mem_tutorial.memory as mem
from mem_tutorial.memory import COSINE_EPS

torch.set_default_dtype(torch.float32)


def rand(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ---- references, element by element, straight from the equations --------------------------------------
def ref_cosine(M, k):  # M: [B, N, W], k: [B, R, W] -> [B, R, N]
    B, N, W = M.shape
    R = k.shape[1]
    out = torch.zeros(B, R, N, dtype=torch.float64)
    for b in range(B):
        for r in range(R):
            for i in range(N):
                u, v = k[b, r], M[b, i]
                out[b, r, i] = float(u @ v) / (math.sqrt(float(u @ u)) * math.sqrt(float(v @ v)))
    return out


def ref_content(M, k, beta):
    K = ref_cosine(M, k)
    e = torch.exp(beta[..., None] * K)
    return e / e.sum(-1, keepdim=True)


def ref_read(M, w):  # w: [B, R, N]
    B, R, N = w.shape
    return torch.stack([torch.stack([sum(w[b, r, i] * M[b, i] for i in range(N)) for r in range(R)]) for b in range(B)])


def ref_write(M, w, e, a):  # w: [B, H, N], e/a: [B, H, W]
    out = M.clone()
    B, H, N = w.shape
    for b in range(B):
        for i in range(N):
            keep = torch.ones(M.shape[-1], dtype=torch.float64)
            for h in range(H):
                keep = keep * (1 - w[b, h, i] * e[b, h])
            out[b, i] = M[b, i] * keep + sum(w[b, h, i] * a[b, h] for h in range(H))
    return out


# ---- values -----------------------------------------------------------------------------------------
def test_cosine_matches_reference_multi_head():
    M, k = rand(3, 5, 4, seed=1), rand(3, 2, 4, seed=2)
    torch.testing.assert_close(mem.cosine_similarity(M, k), ref_cosine(M, k))


def test_cosine_single_key_shape_and_values():
    M, k = rand(3, 5, 4, seed=1), rand(3, 4, seed=2)
    out = mem.cosine_similarity(M, k)
    assert out.shape == (3, 5)
    torch.testing.assert_close(out, ref_cosine(M, k[:, None])[:, 0])


def test_cosine_hand_checked():
    M = torch.tensor([[[1.0, 0.0], [0.0, 3.0], [1.0, 1.0], [-2.0, 0.0]]])
    out = mem.cosine_similarity(M, torch.tensor([[5.0, 0.0]]))
    torch.testing.assert_close(out, torch.tensor([[1.0, 0.0, 2**-0.5, -1.0]]), atol=1e-5, rtol=0)


def test_content_weighting_matches_reference():
    M, k = rand(2, 6, 3, seed=3), rand(2, 3, 3, seed=4)
    beta = torch.tensor([[0.0, 1.0, 7.5], [2.0, 0.3, 30.0]], dtype=torch.float64)
    torch.testing.assert_close(mem.content_weighting(M, k, beta), ref_content(M, k, beta), rtol=1e-6, atol=1e-9)


def test_read_and_write_match_reference():
    M = rand(2, 5, 3, seed=5)
    w = torch.softmax(rand(2, 3, 5, seed=6), -1)
    torch.testing.assert_close(mem.read(M, w), ref_read(M, w))
    torch.testing.assert_close(mem.read(M, w[:, 0]), ref_read(M, w)[:, 0])
    ww = torch.softmax(rand(2, 2, 5, seed=7), -1)
    e = torch.sigmoid(rand(2, 2, 3, seed=8))
    a = rand(2, 2, 3, seed=9)
    torch.testing.assert_close(mem.write(M, ww, e, a), ref_write(M, ww, e, a))
    torch.testing.assert_close(mem.write(M, ww[:, 0], e[:, 0], a[:, 0]), ref_write(M, ww[:, :1], e[:, :1], a[:, :1]))


def test_epsilon_keeps_result_close_to_exact_formula():
    # COSINE_EPS only matters for (near-)zero vectors: unit-scale inputs match the exact formula to float64 precision (torch defaults)
    assert COSINE_EPS <= 1e-8
    M, k = rand(4, 8, 16, seed=10), rand(4, 16, seed=11)
    torch.testing.assert_close(mem.cosine_similarity(M, k), ref_cosine(M, k[:, None])[:, 0])


# ---- properties ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(5))
def test_weightings_are_distributions(seed):
    M, k = rand(3, 7, 5, seed=seed), rand(3, 2, 5, seed=seed + 100)
    beta = torch.rand(3, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 20
    w = mem.content_weighting(M, k, beta)
    assert (w >= 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(3, 2, dtype=torch.float64))


def test_large_beta_approaches_one_hot_and_zero_beta_is_uniform():
    M, k = rand(2, 6, 4, seed=12), rand(2, 4, seed=13)
    sharp = mem.content_weighting(M, k, torch.full((2,), 1e4, dtype=torch.float64))
    best = mem.cosine_similarity(M, k).argmax(-1)
    torch.testing.assert_close(sharp, torch.nn.functional.one_hot(best, 6).double(), atol=1e-6, rtol=0)
    flat = mem.content_weighting(M, k, torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close(flat, torch.full((2, 6), 1 / 6, dtype=torch.float64))


def test_full_erase_with_one_hot_clears_the_slot_and_add_replaces_it():
    M = rand(2, 4, 3, seed=14)
    w = torch.zeros(2, 4, dtype=torch.float64)
    w[:, 2] = 1
    cleared = mem.write(M, w, torch.ones(2, 3, dtype=torch.float64), torch.zeros(2, 3, dtype=torch.float64))
    assert torch.equal(cleared[:, 2], torch.zeros(2, 3, dtype=torch.float64))
    assert torch.equal(cleared[:, [0, 1, 3]], M[:, [0, 1, 3]])
    a = rand(2, 3, seed=15)
    replaced = mem.write(M, w, torch.ones(2, 3, dtype=torch.float64), a)
    torch.testing.assert_close(replaced[:, 2], a)


def test_write_does_not_modify_its_input():
    M = rand(1, 3, 2, seed=16)
    M0 = M.clone()
    mem.write(M, torch.ones(1, 3, dtype=torch.float64) / 3, torch.ones(1, 2, dtype=torch.float64),
              torch.ones(1, 2, dtype=torch.float64))
    assert torch.equal(M, M0)


def test_multi_head_erase_order_does_not_matter():
    M = rand(1, 4, 3, seed=17)
    w = torch.softmax(rand(1, 2, 4, seed=18), -1)
    e, a = torch.sigmoid(rand(1, 2, 3, seed=19)), rand(1, 2, 3, seed=20)
    torch.testing.assert_close(mem.write(M, w, e, a), mem.write(M, w.flip(1), e.flip(1), a.flip(1)))


# ---- gradients ----------------------------------------------------------------------------------------
def test_gradcheck_all_primitives():
    M = rand(2, 4, 3, seed=21).requires_grad_()
    k = rand(2, 2, 3, seed=22).requires_grad_()
    beta = (torch.rand(2, 2, dtype=torch.float64) * 3).requires_grad_()
    w = torch.softmax(rand(2, 2, 4, seed=23), -1).requires_grad_()
    e = torch.sigmoid(rand(2, 2, 3, seed=24)).requires_grad_()
    a = rand(2, 2, 3, seed=25).requires_grad_()
    assert torch.autograd.gradcheck(mem.cosine_similarity, (M, k))
    assert torch.autograd.gradcheck(mem.content_weighting, (M, k, beta))
    assert torch.autograd.gradcheck(mem.read, (M, w))
    assert torch.autograd.gradcheck(mem.write, (M, w, e, a))


@pytest.mark.parametrize("zero", ["memory", "key", "both"])
def test_no_nan_gradient_for_all_zero_memory_or_key(zero):
    M = torch.zeros(2, 4, 3) if zero in ("memory", "both") else torch.randn(2, 4, 3)
    k = torch.zeros(2, 3) if zero in ("key", "both") else torch.randn(2, 3)
    M.requires_grad_()
    k.requires_grad_()
    beta = torch.ones(2, requires_grad=True)
    w = mem.content_weighting(M, k, beta)
    r = mem.read(M, w)
    new = mem.write(M, w, torch.sigmoid(k), k)
    (r.sum() + new.sum() + w.pow(2).sum()).backward()
    for t in (M, k, beta):
        assert torch.isfinite(t.grad).all(), f"non-finite gradient with all-zero {zero}"
    assert torch.isfinite(w).all()


# ---- dtype, device, shapes ------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_and_device_preserved(dtype):
    M, k = torch.randn(2, 4, 3, dtype=dtype), torch.randn(2, 3, dtype=dtype)
    beta = torch.ones(2, dtype=dtype)
    w = mem.content_weighting(M, k, beta)
    outs = [mem.cosine_similarity(M, k), w, mem.read(M, w), mem.write(M, w, torch.sigmoid(k), k)]
    for out in outs:
        assert out.dtype == dtype and out.device == M.device


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_runs_on_cuda():
    M, k = torch.randn(2, 4, 3, device="cuda"), torch.randn(2, 3, device="cuda")
    w = mem.content_weighting(M, k, torch.ones(2, device="cuda"))
    assert mem.read(M, w).device.type == "cuda"


def test_shape_errors_name_expected_and_received():
    with pytest.raises(ValueError, match=r"memory: expected shape \[B, N, W\], got \[4, 3\]"):
        mem.cosine_similarity(torch.zeros(4, 3), torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"keys: expected shape \[B, W\].*got \[2, 5\]"):
        mem.cosine_similarity(torch.zeros(2, 4, 3), torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"strengths: expected shape \[B, R\].*got \[3, 1\]"):
        mem.content_weighting(torch.zeros(2, 4, 3), torch.zeros(2, 3), torch.zeros(3))
    with pytest.raises(ValueError, match=r"weights: expected shape \[B, N\].*got \[2, 5\]"):
        mem.read(torch.zeros(2, 4, 3), torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"erase: expected shape \[B, W\].*got \[2, 4\]"):
        mem.write(torch.zeros(2, 4, 3), torch.zeros(2, 4), torch.zeros(2, 4), torch.zeros(2, 3))
