"""The DNC's optional fast paths: the sparse temporal link (Rae et al. 2016), the plain-tensor link the compiler
fuses, and compiled chunks of steps (``DNC.compile_step``). Each must agree with the exact, eager model."""

from __future__ import annotations

import os
import shutil

import pytest
import torch
from torch.nn import functional as F

from mem_tutorial.memory.linkage import (
    precedence_update,
    sparse_precedence_update,
    sparse_temporal_link_update,
    temporal_link_update,
    temporal_link_update_plain,
    topk_sparsify,
)
from mem_tutorial.models.dnc import DNC

F64 = torch.float64


def _write_weights(gen: torch.Generator, B: int, N: int) -> torch.Tensor:
    """Random write weightings that sum to at most 1 (a softmax scaled by a gate), float64."""
    w = torch.softmax(3 * torch.randn(B, N, generator=gen, dtype=F64), -1)
    return w * torch.rand(B, 1, generator=gen, dtype=F64)


def _link_sequence(gen, B, N, T, update):
    """Run ``update`` over T random writes from L_0 = 0, p_0 = 0; return the final (L, p)."""
    link, prec = torch.zeros(B, N, N, dtype=F64), torch.zeros(B, N, dtype=F64)
    for _ in range(T):
        w = _write_weights(gen, B, N)
        link, prec = update(link, prec, w)
    return link, prec


def test_plain_link_equals_hand_derived_link_values_and_gradients():
    gen = torch.Generator().manual_seed(0)
    B, N = 3, 6
    link, prec = _link_sequence(gen, B, N, 4, lambda L, p, w: (temporal_link_update(L, p, w), precedence_update(p, w)))
    w = _write_weights(gen, B, N)
    args = [t.clone().requires_grad_() for t in (link, prec, w)]
    args2 = [t.clone().requires_grad_() for t in (link, prec, w)]
    a, b = temporal_link_update(*args), temporal_link_update_plain(*args2)
    torch.testing.assert_close(b, a, rtol=0, atol=1e-15)
    g = torch.randn(B, N, N, generator=gen, dtype=F64)
    ga = torch.autograd.grad(a, args, g)
    gb = torch.autograd.grad(b, args2, g)
    for x, y in zip(ga, gb):
        torch.testing.assert_close(y, x, rtol=0, atol=1e-13)


def test_sparse_link_equals_exact_when_k_is_n():
    """K = N keeps every entry: the sparse link and precedence are the exact ones (float64, over a sequence)."""
    gen = torch.Generator().manual_seed(1)
    B, N, T = 2, 7, 6
    exact = _link_sequence(torch.Generator().manual_seed(1), B, N, T,
                           lambda L, p, w: (temporal_link_update(L, p, w), precedence_update(p, w)))
    sparse = _link_sequence(gen, B, N, T,
                            lambda L, p, w: (sparse_temporal_link_update(L, p, w, N), sparse_precedence_update(p, w, N)))
    torch.testing.assert_close(sparse[0], exact[0], rtol=0, atol=1e-15)
    torch.testing.assert_close(sparse[1], exact[1], rtol=0, atol=1e-15)
    assert exact[0].abs().sum() > 0.1  # the sequence built real links


@pytest.mark.parametrize("k", [1, 2, 4])
def test_sparse_link_is_the_exact_equation_on_top_k_weightings(k):
    """Property (K < N): the O(N K) update equals the exact N x N equation applied to top-K w and top-K p;
    only the rows and columns of the K written slots change; L stays in [0, 1], zero diagonal, rows and columns
    summing to at most 1."""
    gen = torch.Generator().manual_seed(10 + k)
    B, N = 4, 9
    link, prec = torch.zeros(B, N, N, dtype=F64), torch.zeros(B, N, dtype=F64)
    for _ in range(12):
        w = _write_weights(gen, B, N)
        new = sparse_temporal_link_update(link, prec, w, k)
        ref = temporal_link_update(link, topk_sparsify(prec, k), topk_sparsify(w, k))
        torch.testing.assert_close(new, ref, rtol=0, atol=1e-15)
        # untouched outside the rows and columns of the top-k written slots
        touched = torch.zeros(B, N, dtype=torch.bool).scatter(-1, torch.topk(w, k, -1).indices, True)
        outside = ~(touched.unsqueeze(-1) | touched.unsqueeze(-2))
        assert torch.equal(new[outside], link[outside])
        assert new.min() >= 0 and new.max() <= 1
        assert torch.all(new.diagonal(dim1=-2, dim2=-1) == 0)
        assert new.sum(-1).max() <= 1 + 1e-12 and new.sum(-2).max() <= 1 + 1e-12
        link, prec = new, sparse_precedence_update(prec, w, k)
        assert ((prec > 0).sum(-1) <= k).all()  # the precedence keeps at most k entries
    assert link.abs().sum() > 0.1


def test_sparse_link_gradcheck():
    gen = torch.Generator().manual_seed(3)
    B, N, k = 2, 5, 2
    link, prec = _link_sequence(gen, B, N, 3, lambda L, p, w: (temporal_link_update(L, p, w), precedence_update(p, w)))
    w = _write_weights(gen, B, N)  # distinct values: top-k is locally constant
    args = tuple(t.clone().requires_grad_() for t in (link, prec, w))
    assert torch.autograd.gradcheck(lambda L, p, w: sparse_temporal_link_update(L, p, w, k), args)


def test_sparse_dnc_equals_exact_dnc_when_k_is_n_and_differs_below():
    torch.manual_seed(0)
    N = 5
    exact = DNC(3, 2, N, 4, 2, 6).double()
    sparse = DNC(3, 2, N, 4, 2, 6, link="sparse", link_k=N).double()
    small = DNC(3, 2, N, 4, 2, 6, link="sparse", link_k=1).double()
    sparse.load_state_dict(exact.state_dict())
    small.load_state_dict(exact.state_dict())
    x = torch.randn(2, 7, 3, dtype=F64)
    (ya, sa), (yb, sb), (yc, sc) = exact(x), sparse(x), small(x)
    torch.testing.assert_close(yb, ya, rtol=0, atol=1e-13)
    torch.testing.assert_close(sb.link, sa.link, rtol=0, atol=1e-13)
    assert (sc.link - sa.link).abs().max() > 1e-6  # K = 1 is a real approximation
    assert small.config()["link"] == "sparse" and DNC(**small.config()).link_k == 1
    assert "link" not in exact.config()  # checkpoints of the default model are unchanged
    with pytest.raises(ValueError, match="link"):
        DNC(3, 2, link="dense")


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("clang++") is None,
                    reason="torch.compile on CPU needs a C++ compiler")
@pytest.mark.skipif(os.environ.get("MEM_TUTORIAL_SKIP_SLOW", "") not in ("", "0"),
                    reason="slow: compiles a DNC chunk (MEM_TUTORIAL_SKIP_SLOW is set)")
def test_compiled_dnc_matches_eager_outputs_and_gradients():
    """compile_step(chunk=3): outputs, final state and gradients equal the eager model's for lengths that leave
    0, 1 and 2 eager steps after the chunks; every length reuses the one compiled graph (a chunk).

    The graph is captured and run by dynamo + AOTAutograd (backend ``aot_eager``): that is what ``compile_step``
    adds (chunking, the plain-tensor link, state passing, one graph for every length); inductor's code generation
    is PyTorch's and costs 132 s CPU on a cold cache here (2026-12-03), too much for every CI run —
    ``MEM_TUTORIAL_COMPILE_BACKEND=inductor`` runs this test with it. ``MEM_TUTORIAL_SKIP_SLOW=1`` skips it."""
    from torch._dynamo.utils import counters

    torch.manual_seed(0)
    eager = DNC(3, 3, 4, 3, 2, 5)
    compiled = DNC(3, 3, 4, 3, 2, 5)
    compiled.load_state_dict(eager.state_dict())
    compiled.compile_step(chunk=3, backend=os.environ.get("MEM_TUTORIAL_COMPILE_BACKEND", "aot_eager"))
    torch._dynamo.reset()
    counters.clear()
    gen = torch.Generator().manual_seed(0)
    for T in (7, 5, 6, 1):  # 1 + 2*3; 1 + 3 + 1; 1 + 3 + 2; step 0 only
        x = torch.randn(1, T, 3, generator=gen)
        target = torch.rand(1, T, 3, generator=gen)
        results = []
        for m in (eager, compiled):
            m.zero_grad()
            y, state = m(x)
            F.binary_cross_entropy_with_logits(y, target).backward()
            results.append((y, state, [p.grad.clone() for p in m.parameters()]))
        (ya, sa, ga), (yb, sb, gb) = results
        torch.testing.assert_close(yb, ya, atol=1e-5, rtol=1e-5)
        for name, a, b in zip(sa._fields, sa, sb):
            torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5, msg=name)
        for (name, _), a, b in zip(eager.named_parameters(), ga, gb):
            torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4, msg=name)
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])
    assert eager._compiled_steps is None
    with pytest.raises(ValueError, match="chunk"):
        DNC(3, 3).compile_step(chunk=0)
