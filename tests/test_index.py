"""Nearest-neighbour indexes and the hierarchical memory, against brute-force float64 references."""

from __future__ import annotations

import pytest
import torch

from mem_tutorial.memory import index as ix


def rand(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def ref_cosine_topk(keys, queries, k):
    from mem_tutorial.memory.addressing import COSINE_EPS as eps  # Chapter 1's convention, under each sqrt

    kn = keys / ((keys**2).sum(-1, keepdim=True) + eps).sqrt()
    qn = queries / ((queries**2).sum(-1, keepdim=True) + eps).sqrt()
    s = qn @ kn.T
    order = torch.argsort(s, dim=-1, descending=True)[:, :k]
    return s.gather(-1, order), order


def clustered(n, w, n_clusters, seed=0, spread=0.3):
    centres = rand(n_clusters, w, seed=seed)
    which = torch.randint(0, n_clusters, (n,), generator=torch.Generator().manual_seed(seed + 1))
    return centres[which] + spread * rand(n, w, seed=seed + 2)


def test_recall_at_k_hand_case():
    exact = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    found = torch.tensor([[4, 3, 9, 1], [0, 0, 0, 5]])
    assert ix.recall_at_k(found, exact) == pytest.approx(4 / 8)


def test_exact_index_matches_reference():
    keys, queries = rand(200, 8, seed=1), rand(5, 8, seed=2)
    scores, ids = ix.ExactIndex().build(keys).search(queries, 7)
    ref_s, ref_i = ref_cosine_topk(keys, queries, 7)
    assert torch.equal(ids, ref_i)
    torch.testing.assert_close(scores, ref_s)
    s_ip, i_ip = ix.ExactIndex(metric="ip").build(keys).search(queries, 3)
    assert torch.equal(i_ip, torch.argsort(queries @ keys.T, dim=-1, descending=True)[:, :3])


def test_probe_candidates_are_exactly_the_probed_lists():
    keys = rand(300, 6, seed=3)
    index = ix.IVFIndex(n_lists=12, n_probe=3).build(keys)
    queries = rand(4, 6, seed=4)
    q = ix.normalize(queries)
    cscores = q @ index.centroids.T
    pos = ix.probe_candidates(cscores, index.offsets, 3)
    assign = torch.empty(300, dtype=torch.long)
    for l in range(12):
        assign[index.ids[index.offsets[l] : index.offsets[l + 1]]] = l
    for i in range(4):
        best = set(torch.argsort(cscores[i], descending=True)[:3].tolist())
        expected = {j for j in range(300) if int(assign[j]) in best}
        got = index.ids[pos[i][pos[i] >= 0]].tolist()
        assert len(got) == len(set(got)) and set(got) == expected


def test_ivf_all_lists_is_exact_and_results_are_sorted():
    keys, queries = rand(500, 10, seed=5), rand(6, 10, seed=6)
    index = ix.IVFIndex(n_lists=20, n_probe=20).build(keys)
    scores, ids = index.search(queries, 10)
    ref_s, ref_i = ref_cosine_topk(keys, queries, 10)
    assert torch.equal(ids, ref_i)
    torch.testing.assert_close(scores, ref_s)
    assert torch.all(scores[:, :-1] >= scores[:, 1:])


def test_ivf_recall_on_random_data():
    keys, queries = rand(4000, 16, seed=7, dtype=torch.float32), rand(50, 16, seed=8, dtype=torch.float32)
    _, exact = ix.ExactIndex().build(keys).search(queries, 10)
    index = ix.IVFIndex(n_lists=64, n_probe=16).build(keys)
    _, found = index.search(queries, 10)
    assert ix.recall_at_k(found, exact) >= 0.85  # isotropic data: the hardest case for a partition
    # Clustered keys, queries near stored keys: few lists suffice.
    keys = clustered(4000, 16, 64, seed=9).float()
    queries = keys[:50] + 0.05 * rand(50, 16, seed=10, dtype=torch.float32)
    _, exact = ix.ExactIndex().build(keys).search(queries, 10)
    index = ix.IVFIndex(n_lists=64, n_probe=4).build(keys)
    _, found = index.search(queries, 10)
    assert ix.recall_at_k(found, exact) >= 0.95
    # More probes never lose neighbours.
    recalls = [ix.recall_at_k(index.search(queries, 10, n_probe=p)[1], exact) for p in (1, 4, 64)]
    assert recalls == sorted(recalls) and recalls[-1] == 1.0


def test_ivf_returns_k_even_when_probed_lists_are_small():
    keys = rand(100, 4, seed=11)
    index = ix.IVFIndex(n_lists=50, n_probe=1).build(keys)
    _, ids = index.search(rand(3, 4, seed=12), 20)
    assert ids.shape == (3, 20) and torch.all(ids >= 0)
    assert all(len(set(row.tolist())) == 20 for row in ids)


def test_kmeans_assignment_is_nearest_centroid():
    x = ix.normalize(rand(300, 5, seed=13))
    c, a = ix.kmeans(x, 7, iters=5)
    assert torch.equal(a, (x @ c.T).argmax(-1))
    torch.testing.assert_close(c.norm(dim=-1), torch.ones(7, dtype=torch.float64), atol=1e-3, rtol=0)
    c2, a2 = ix.kmeans(x, 7, iters=5, spherical=False)
    assert torch.equal(a2, torch.cdist(x, c2).argmin(-1))


def test_mips_to_cosine_preserves_inner_product_ranking():
    keys, q = rand(50, 6, seed=14) * torch.linspace(0.1, 3, 50, dtype=torch.float64).unsqueeze(-1), rand(4, 6, seed=15)
    aug = ix.mips_to_cosine(keys)
    torch.testing.assert_close(aug.norm(dim=-1), torch.ones(50, dtype=torch.float64))
    q_aug = torch.cat([q / q.norm(dim=-1, keepdim=True), torch.zeros(4, 1, dtype=torch.float64)], -1)
    m = keys.norm(dim=-1).max()
    torch.testing.assert_close(q_aug @ aug.T, (q @ keys.T) / (q.norm(dim=-1, keepdim=True) * m))


def test_hierarchical_lookup_and_read():
    keys = clustered(600, 8, 12, seed=16)
    values = rand(600, 3, seed=17)
    mem = ix.HierarchicalMemory(n_groups=12, n_probe=2).build(keys, values)
    queries = rand(5, 8, seed=18)
    scores, ids = mem.lookup(queries, 4)
    groups = mem.group_of()
    # Every hit lies in one of the 2 groups whose centroid scores best for the (augmented) query.
    q_aug = torch.cat([ix.normalize(queries), torch.zeros(5, 1, dtype=torch.float64)], -1)
    best = torch.argsort(q_aug @ mem.centroids.T, dim=-1, descending=True)[:, :2]
    for i in range(5):
        members = torch.nonzero(torch.isin(groups, best[i])).squeeze(-1)
        ip = queries[i] @ keys[members].T
        ref = members[torch.argsort(ip, descending=True)[:4]]
        assert ids[i].tolist() == ref.tolist()  # exact MIPS inside the chosen groups
        torch.testing.assert_close(scores[i], queries[i] @ keys[ref].T)
    # Probing every group is exact MIPS over the whole memory.
    full = ix.HierarchicalMemory(n_groups=12, n_probe=12).build(keys, values)
    _, all_ids = full.lookup(queries, 4)
    assert torch.equal(all_ids, torch.argsort(queries @ keys.T, dim=-1, descending=True)[:, :4])
    # Read: softmax over the retrieved slots only; gradients reach the queries.
    q = queries.clone().requires_grad_()
    reads, rid, w = full.read(q, 4)
    ref_w = torch.softmax(torch.einsum("qw,qkw->qk", q, keys[rid]), -1)
    torch.testing.assert_close(w, ref_w)
    torch.testing.assert_close(reads, torch.einsum("qk,qkv->qv", ref_w, values[rid]))
    reads.sum().backward()
    assert torch.isfinite(q.grad).all() and q.grad.abs().sum() > 0


def test_index_errors():
    with pytest.raises(RuntimeError, match="build"):
        ix.IVFIndex().search(torch.zeros(1, 3), 1)
    with pytest.raises(ValueError, match="metric"):
        ix.ExactIndex(metric="l3")
    index = ix.ExactIndex().build(rand(10, 3))
    with pytest.raises(ValueError, match="queries"):
        index.search(rand(2, 4), 1)
    with pytest.raises(ValueError, match="k must be"):
        index.search(rand(2, 3), 11)


def test_index_candidates_feed_topk_read():
    from mem_tutorial.memory.sparse import topk_read

    memory = clustered(1000, 12, 20, seed=19).float()
    keys = memory[:4] + 0.01
    index = ix.IVFIndex(n_lists=20, n_probe=3).build(memory)
    _, cand = index.search(keys, 16)
    r1, s1 = topk_read(memory.unsqueeze(0), keys.unsqueeze(0), torch.full((1, 4), 5.0), 8, candidates=cand.unsqueeze(0))
    r2, s2 = topk_read(memory.unsqueeze(0), keys.unsqueeze(0), torch.full((1, 4), 5.0), 8)
    assert torch.equal(s1.indices, s2.indices)
    torch.testing.assert_close(r1, r2)


@pytest.mark.skipif(not ix.faiss_available(), reason="optional faiss not installed (pip install 'mem-tutorial[faiss]')")
def test_faiss_adapter_same_interface():
    keys, queries = rand(2000, 16, seed=20, dtype=torch.float32), rand(20, 16, seed=21, dtype=torch.float32)
    _, exact = ix.ExactIndex().build(keys).search(queries, 10)
    _, flat = ix.FaissIndex(kind="flat").build(keys).search(queries, 10)
    assert ix.recall_at_k(flat, exact) == 1.0
    _, ivf = ix.FaissIndex(kind="ivf", n_lists=32, n_probe=32).build(keys).search(queries, 10)
    assert ix.recall_at_k(ivf, exact) == 1.0
    _, hnsw = ix.FaissIndex(kind="hnsw", ef_search=128).build(keys).search(queries, 10)
    assert ix.recall_at_k(hnsw, exact) >= 0.9


def test_faiss_missing_message(monkeypatch):
    import builtins

    real = builtins.__import__

    def fake(name, *a, **kw):
        if name == "faiss":
            raise ImportError("no faiss")
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ImportError, match="pip install"):
        ix.FaissIndex()
    assert not ix.faiss_available()
