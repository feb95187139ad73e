"""Sparse reads and writes (Rae et al. 2016) against float64 references written from the equations."""

from __future__ import annotations

import pytest
import torch

from mem_tutorial.memory import sparse
from mem_tutorial.memory.access import write as dense_write

from mem_tutorial.memory.addressing import COSINE_EPS as EPS  # the convention of Chapter 1, under each sqrt


def ref_cosine(memory, keys):
    """K(k, M_i) = k.M_i / (sqrt(|k|^2 + eps) sqrt(|M_i|^2 + eps)), keys [B, R, W] -> [B, R, N]."""
    dot = (keys.unsqueeze(2) * memory.unsqueeze(1)).sum(-1)
    kn = ((keys**2).sum(-1) + EPS).sqrt().unsqueeze(-1)
    mn = ((memory**2).sum(-1) + EPS).sqrt().unsqueeze(1)
    return dot / (kn * mn)


def ref_topk_read(memory, keys, strengths, k):
    """Dense read with the softmax restricted to the top-k support (Rae et al. 2016, Sec. 3.1)."""
    sim = ref_cosine(memory, keys)
    order = torch.argsort(sim.detach(), dim=-1, descending=True)[..., :k]
    mask = torch.zeros_like(sim, dtype=torch.bool).scatter(-1, order, True)
    scores = (strengths.unsqueeze(-1) * sim).masked_fill(~mask, float("-inf"))
    w = torch.exp(scores - scores.max(-1, keepdim=True).values)
    w = w / w.sum(-1, keepdim=True)
    reads = (w.unsqueeze(-1) * memory.unsqueeze(1)).sum(2)
    return reads, w, order


def rand(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64)


def test_topk_read_matches_restricted_dense_read_and_gradients():
    memory = rand(3, 20, 6, seed=1).requires_grad_()
    keys = rand(3, 2, 6, seed=2).requires_grad_()
    strengths = (rand(3, 2, seed=3).abs() * 3).requires_grad_()
    reads, sw = sparse.topk_read(memory, keys, strengths, 4)
    ref_reads, ref_w, order = ref_topk_read(memory, keys, strengths, 4)
    assert sw.indices.shape == (3, 2, 4) and sw.weights.shape == (3, 2, 4)
    assert torch.equal(torch.sort(sw.indices, -1).values, torch.sort(order, -1).values)
    torch.testing.assert_close(reads, ref_reads)
    torch.testing.assert_close(sparse.densify(sw.indices, sw.weights, 20), ref_w)
    torch.testing.assert_close(sw.weights.sum(-1), torch.ones(3, 2, dtype=torch.float64))
    up = rand(3, 2, 6, seed=4)
    g = torch.autograd.grad((reads * up).sum(), (memory, keys, strengths))
    g_ref = torch.autograd.grad((ref_reads * up).sum(), (memory, keys, strengths))
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b)


def test_gradients_only_through_selected_rows():
    memory = rand(2, 30, 5, seed=5).requires_grad_()
    keys, strengths = rand(2, 5, seed=6), torch.full((2,), 2.0, dtype=torch.float64)
    reads, sw = sparse.topk_read(memory, keys, strengths, 3)
    (grad,) = torch.autograd.grad(reads.sum(), memory)
    touched = sparse.densify(sw.indices, torch.ones_like(sw.weights), 30) > 0  # [B, N]
    assert torch.all(grad[~touched] == 0)
    assert torch.all(grad[touched].abs().sum(-1) > 0)


def test_single_head_shapes_and_k_equals_n_is_dense():
    from mem_tutorial.memory.access import read
    from mem_tutorial.memory.addressing import content_weighting

    memory, keys, strengths = rand(2, 7, 4, seed=7), rand(2, 4, seed=8), torch.tensor([1.5, 0.5], dtype=torch.float64)
    reads, sw = sparse.topk_read(memory, keys, strengths, 7)
    assert reads.shape == (2, 4) and sw.indices.shape == (2, 7)
    dense_w = content_weighting(memory, keys, strengths)
    torch.testing.assert_close(sparse.densify(sw.indices, sw.weights, 7), dense_w)
    torch.testing.assert_close(reads, read(memory, dense_w))


def test_gradcheck_topk_read():
    memory = rand(2, 9, 4, seed=9).requires_grad_()
    keys = rand(2, 2, 4, seed=10).requires_grad_()
    strengths = (rand(2, 2, seed=11).abs() + 0.5).requires_grad_()
    assert torch.autograd.gradcheck(lambda m, k, s: sparse.topk_read(m, k, s, 3)[0], (memory, keys, strengths))


def test_candidates_restrict_the_search():
    memory, keys = rand(1, 50, 8, seed=12), rand(1, 3, 8, seed=13)
    strengths = torch.ones(1, 3, dtype=torch.float64)
    candidates = torch.arange(10, 30).expand(1, 3, 20)
    _, sw = sparse.topk_read(memory, keys, strengths, 4, candidates=candidates)
    assert torch.all((sw.indices >= 10) & (sw.indices < 30))
    # With every slot as a candidate the result is the exact top-k.
    full = torch.arange(50).expand(1, 3, 50)
    r1, s1 = sparse.topk_read(memory, keys, strengths, 4, candidates=full)
    r2, s2 = sparse.topk_read(memory, keys, strengths, 4)
    torch.testing.assert_close(r1, r2)
    assert torch.equal(s1.indices, s2.indices)


def test_no_nan_on_all_zero_memory():
    memory = torch.zeros(2, 6, 3, dtype=torch.float64, requires_grad=True)
    keys = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    strengths = torch.ones(2, dtype=torch.float64, requires_grad=True)
    reads, sw = sparse.topk_read(memory, keys, strengths, 2)
    new = sparse.sparse_write(memory, sw.indices, sw.weights, torch.ones(2, 3, dtype=torch.float64), keys + 1)
    (reads.sum() + new.sum()).backward()
    for t in (memory, keys, strengths):
        assert torch.isfinite(t.grad).all()


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="memory"):
        sparse.topk_read(torch.zeros(5, 3), torch.zeros(1, 3), torch.ones(1), 2)
    with pytest.raises(ValueError, match="k must be"):
        sparse.topk_read(torch.zeros(1, 5, 3), torch.ones(1, 3), torch.ones(1), 6)
    with pytest.raises(ValueError, match="strengths"):
        sparse.topk_read(torch.zeros(1, 5, 3), torch.ones(1, 2, 3), torch.ones(1), 2)


# --- writes -------------------------------------------------------------------------------------------


def ref_write(memory, dense_w, erase, add):
    """NTM Eq. 3-4 with H heads: M * prod_h (1 - w_h e_h^T) + sum_h w_h a_h^T, weights [B, H, N]."""
    keep = torch.ones_like(memory)
    for h in range(dense_w.shape[1]):
        keep = keep * (1 - dense_w[:, h].unsqueeze(-1) * erase[:, h].unsqueeze(1))
    adds = sum(dense_w[:, h].unsqueeze(-1) * add[:, h].unsqueeze(1) for h in range(dense_w.shape[1]))
    return memory * keep + adds


def test_sparse_write_equals_dense_write_with_repeats():
    memory = rand(2, 10, 4, seed=14)
    indices = torch.tensor([[[1, 3, 3, 7], [3, 0, 9, 1]], [[5, 5, 5, 2], [2, 8, 4, 6]]])
    weights = torch.rand(2, 2, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(15)) / 3
    erase = torch.rand(2, 2, 4, dtype=torch.float64)
    add = rand(2, 2, 4, seed=16)
    dense_w = torch.zeros(2, 2, 10, dtype=torch.float64)
    for b in range(2):
        for h in range(2):
            for j in range(4):
                dense_w[b, h, indices[b, h, j]] += weights[b, h, j]
    out = sparse.sparse_write(memory, indices, weights, erase, add)
    torch.testing.assert_close(out, ref_write(memory, dense_w, erase, add))
    torch.testing.assert_close(out, dense_write(memory, dense_w, erase, add))
    untouched = dense_w.sum(1) == 0
    assert torch.equal(out[untouched], memory[untouched])


def test_sparse_write_single_head_full_replace_and_gradcheck():
    memory = rand(1, 5, 3, seed=17)
    out = sparse.sparse_write(memory, torch.tensor([[2]]), torch.ones(1, 1, dtype=torch.float64),
                              torch.ones(1, 3, dtype=torch.float64), torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64))
    torch.testing.assert_close(out[0, 2], torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))  # up to rounding
    m = rand(2, 6, 3, seed=18).requires_grad_()
    w = torch.rand(2, 3, dtype=torch.float64).requires_grad_()
    e = torch.rand(2, 3, dtype=torch.float64).requires_grad_()
    a = rand(2, 3, seed=19).requires_grad_()
    idx = torch.tensor([[0, 4, 4], [5, 1, 2]])
    assert torch.autograd.gradcheck(lambda m, w, e, a: sparse.sparse_write(m, idx, w, e, a), (m, w, e, a))


def test_merge_duplicates_preserves_dense_weighting():
    idx = torch.tensor([[4, 1, 4, 4, 0], [3, 3, 3, 3, 3]])
    w = torch.tensor([[0.1, 0.2, 0.3, 0.15, 0.25], [0.2] * 5], dtype=torch.float64)
    merged = sparse.merge_duplicates(idx, w)
    torch.testing.assert_close(sparse.densify(merged.indices, merged.weights, 5), sparse.densify(idx, w, 5))
    nz = merged.weights[0] > 0
    assert len(set(merged.indices[0][nz].tolist())) == int(nz.sum())


def test_usage_least_used_and_write_weighting():
    usage = torch.tensor([[0.5, 0.0, 2.0, 0.1]], dtype=torch.float64)
    read = sparse.SparseWeights(torch.tensor([[[2, 0]]]), torch.tensor([[[0.75, 0.25]]], dtype=torch.float64))
    new = sparse.update_usage(usage, read, None, decay=0.5)
    torch.testing.assert_close(new, torch.tensor([[0.5, 0.0, 1.75, 0.05]], dtype=torch.float64))
    lu = sparse.least_used(new)
    assert lu.tolist() == [[1]]
    ww = sparse.sparse_write_weighting(read, lu[:, 0], torch.tensor([0.8], dtype=torch.float64),
                                       torch.tensor([0.25], dtype=torch.float64))
    dense = sparse.densify(ww.indices, ww.weights, 4)
    expected = 0.8 * (0.25 * torch.tensor([[0.25, 0.0, 0.75, 0.0]]) + 0.75 * torch.tensor([[0.0, 1.0, 0.0, 0.0]]))
    torch.testing.assert_close(dense, expected.double())


# --- the SAM model (mem_tutorial.models.sam) ----------------------------------------------------------------


def test_sam_forward_backward_no_nan_and_sparse_gradients():
    from mem_tutorial.models.sam import SAM

    for seed in range(3):
        torch.manual_seed(seed)
        model = SAM(input_size=5, output_size=3, controller_size=16, memory_slots=32, memory_width=6, k=4)
        x = torch.randn(2, 7, 5)
        logits, state = model(x)
        assert logits.shape == (2, 7, 3) and state.memory.shape == (2, 32, 6)
        assert state.read_indices.shape == (2, 1, 4)
        logits.pow(2).mean().backward()
        grads = [p.grad for p in model.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_sam_with_k_equal_n_matches_dense_variant():
    from mem_tutorial.models.sam import SAM

    torch.manual_seed(0)
    sparse_model = SAM(input_size=4, output_size=2, controller_size=8, memory_slots=6, memory_width=3, k=6).double()
    dense_model = SAM(input_size=4, output_size=2, controller_size=8, memory_slots=6, memory_width=3, k=6, dense=True).double()
    dense_model.load_state_dict(sparse_model.state_dict())
    x = torch.randn(2, 5, 4, dtype=torch.float64)
    a, sa = sparse_model(x)
    b, sb = dense_model(x)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(sa.memory, sb.memory)


def test_sam_writes_fresh_slots_when_gamma_is_zero():
    """With gamma -> 0 and alpha -> 1, each write goes to the least-used slot (Rae et al. 2016, Eq. 5)."""
    from mem_tutorial.models.sam import SAM

    torch.manual_seed(1)
    m = SAM(input_size=3, output_size=1, controller_size=4, memory_slots=10, memory_width=2, k=2)
    with torch.no_grad():
        m.heads.weight.zero_()
        m.heads.bias.zero_()
        m.heads.bias[3] = 50.0  # alpha = 1 (index R*(W+1) = 3)
        m.heads.bias[4] = -50.0  # gamma = 0
        m.heads.bias[5:] = 50.0  # add = tanh(50) = 1
    _, state = m(torch.zeros(1, 4, 3))
    written = (state.memory[0].abs().sum(-1) > 0.5).sum()
    assert int(written) == 4
