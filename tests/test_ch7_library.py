"""Chapter 7 library: kNN-LM (Khandelwal et al. 2020), the TF-IDF memory, the tiny LM, the tiny world, and LRUA
(Santoro et al. 2016), against float64 references written from the papers' equations (loops, plain Python)."""

from __future__ import annotations

import math
import random

import pytest
import torch

from mem_tutorial.data import tinyworld as tw
from mem_tutorial.memory import knnlm
from mem_tutorial.memory.index import IVFIndex
from mem_tutorial.memory.tfidf import TfidfMemory
from mem_tutorial.models import mann
from mem_tutorial.models.tinylm import LMConfig, TinyLM, Vocab, lm_loss, next_token_probs
from mem_tutorial.tasks import oneshot

D = torch.float64


# ------------------------------------------------------------------------------------------------ kNN-LM
def ref_knn(dist, vals, V, T):
    out = torch.zeros(len(dist), V, dtype=D)
    for q in range(len(dist)):
        z = sum(math.exp(-float(d) / T) for d in dist[q])
        for d, v in zip(dist[q], vals[q]):
            out[q, int(v)] += math.exp(-float(d) / T) / z
    return out


@pytest.mark.parametrize("T", [0.5, 1.0, 7.0])
def test_knn_distribution_matches_reference(T):
    g = torch.Generator().manual_seed(0)
    dist = torch.rand(5, 4, generator=g, dtype=D) * 3
    vals = torch.randint(0, 6, (5, 4), generator=g)
    p = knnlm.knn_distribution(dist, vals, 6, T)
    torch.testing.assert_close(p, ref_knn(dist, vals, 6, T))
    torch.testing.assert_close(p.sum(-1), torch.ones(5, dtype=D))


def test_knn_distribution_gradcheck_and_dtype():
    dist = torch.rand(3, 4, dtype=D, requires_grad=True)
    vals = torch.tensor([[0, 1, 1, 2], [2, 2, 2, 2], [3, 0, 1, 2]])
    assert torch.autograd.gradcheck(lambda d: knnlm.knn_distribution(d, vals, 4, 0.7), (dist,))
    assert knnlm.knn_distribution(dist.float().detach(), vals, 4).dtype == torch.float32


def test_interpolate_and_shape_check():
    a = torch.softmax(torch.randn(2, 5, dtype=D), -1)
    b = torch.softmax(torch.randn(2, 5, dtype=D), -1)
    torch.testing.assert_close(knnlm.interpolate(a, b, 0.3), 0.3 * a + 0.7 * b)
    with pytest.raises(ValueError):
        knnlm.interpolate(a, b[:, :4], 0.5)


def test_build_datastore_skips_padding_row_major():
    tokens = torch.tensor([[1, 5, 6, 2], [1, 7, 2, 0]])
    hidden = torch.arange(24, dtype=D).view(2, 4, 3)
    keys, vals = knnlm.build_datastore(hidden, tokens)
    assert vals.tolist() == [5, 6, 2, 7, 2]
    torch.testing.assert_close(keys, torch.stack([hidden[0, 0], hidden[0, 1], hidden[0, 2], hidden[1, 0], hidden[1, 1]]))


@pytest.mark.parametrize("index", [None, lambda: IVFIndex(metric="ip", n_lists=4, n_probe=4)])
def test_datastore_search_is_exact_l2(index):
    g = torch.Generator().manual_seed(1)
    keys = torch.randn(200, 8, generator=g, dtype=D)
    vals = torch.arange(200)
    store = knnlm.Datastore(index)
    store.add(keys, vals)
    q = torch.randn(6, 8, generator=g, dtype=D)
    dist, got = store.search(q, 5)
    ref = torch.cdist(q, keys) ** 2
    ref_d, ref_i = ref.topk(5, largest=False)
    assert got.tolist() == ref_i.tolist()  # n_probe = n_lists: the IVF index scans everything
    torch.testing.assert_close(dist, ref_d, rtol=1e-6, atol=1e-8)


def test_datastore_remove_owner():
    store = knnlm.Datastore()
    store.add(torch.zeros(3, 2), torch.tensor([1, 2, 3]), "a")
    store.add(torch.ones(2, 2), torch.tensor([4, 5]), "b")
    assert store.remove_owner("a") == 3 and len(store) == 2 and store.values.tolist() == [4, 5]


def test_knn_lm_exact_memory_recovers_stored_token():
    """A query equal to a stored key, with a low temperature, puts λ on that key's token."""
    keys = torch.eye(4, dtype=D) * 3
    store = knnlm.Datastore()
    store.add(keys, torch.tensor([0, 1, 2, 3]))
    p_lm = torch.full((1, 5), 0.2, dtype=D)
    p = knnlm.knn_lm_probs(p_lm, keys[2:3], store, lam=0.5, k=4, temperature=0.01)
    torch.testing.assert_close(p[0], torch.tensor([0.1, 0.1, 0.6, 0.1, 0.1], dtype=D))


def test_perplexity():
    assert knnlm.perplexity(torch.log(torch.tensor([0.5, 0.5]))) == pytest.approx(2.0)


# ------------------------------------------------------------------------------------------------ TF-IDF
def test_tfidf_retrieves_the_fact_of_the_question():
    world = tw.make_world(1)
    memory = TfidfMemory([tw.fact_sentence(p, r, world.value(p, r)) for p in world.people for r in tw.RELATIONS])
    qs = [(p, r) for p in world.people[:10] for r in tw.RELATIONS]
    _, got = memory.retrieve([tw.question(p, r) for p, r in qs], 1)
    assert [g[0] for g in got] == [tw.fact_sentence(p, r, world.value(p, r)) for p, r in qs]
    s = memory.scores(tw.question(*qs[0]))
    assert int(s.argmax()) == 0 and s.shape == (len(memory.texts),)


# ------------------------------------------------------------------------------------------------ tiny LM
def test_tiny_lm_is_causal_and_shapes():
    torch.manual_seed(0)
    v = Vocab(tw.vocabulary())
    m = TinyLM(LMConfig(len(v), d_model=16, n_layers=1, n_heads=2, d_ff=32)).eval()
    x = v.batch([["ada", "lives", "in", "oslo", "."]])
    logits, h = m(x)
    assert logits.shape == (1, 7, len(v)) and h.shape == (1, 7, 16)
    y = x.clone()
    y[0, 5] = v.stoi["rome"]
    torch.testing.assert_close(m(y)[0][0, :5], logits[0, :5])  # positions before the change are unaffected
    assert torch.isfinite(lm_loss(logits, x))
    p, hh = next_token_probs(m, v, [["ada", "lives"], ["ada", "lives", "in"]])
    torch.testing.assert_close(hh[1], h[0, 3])
    torch.testing.assert_close(p.sum(-1), torch.ones(2))


def test_world_is_deterministic_and_disjoint():
    a, b = tw.make_world(0), tw.make_world(1)
    assert not set(a.people) & set(b.people)
    assert tw.make_world(1).facts == b.facts
    v = Vocab(tw.vocabulary())
    rng = random.Random(0)
    for seq in tw.training_sequences(a, rng, 50):
        v.encode(seq)  # every token is in the vocabulary
    ex = tw.rag_example(random.Random(3))
    assert ex[-1] == "." and ex[ex.index("answer") + 2] in {x for vs in tw.VALUES.values() for x in vs}


# ------------------------------------------------------------------------------------------------ LRUA
def test_least_used_is_the_n_smallest():
    u = torch.tensor([[0.5, 0.1, 0.3, 0.9]], dtype=D)
    assert mann.least_used(u, 1).tolist() == [[0, 1, 0, 0]]
    assert mann.least_used(u, 2).tolist() == [[0, 1, 1, 0]]


def test_lrua_write_weights_reference_and_gradcheck():
    g = torch.Generator().manual_seed(2)
    r = torch.softmax(torch.randn(2, 3, 5, generator=g, dtype=D), -1)
    u = torch.rand(2, 5, generator=g, dtype=D)
    a = torch.randn(2, 3, generator=g, dtype=D)
    lu = mann.least_used(u, 1)
    for b in range(2):
        for h in range(3):
            s = 1 / (1 + math.exp(-float(a[b, h])))
            for i in range(5):
                ref = s * float(r[b, h, i]) + (1 - s) * float(lu[b, i])
                assert float(mann.lrua_write_weights(r, lu, a)[b, h, i]) == pytest.approx(ref)
    rr, aa = r.clone().requires_grad_(), a.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda x, y: mann.lrua_write_weights(x, lu, y), (rr, aa))


def test_mann_step_writes_to_least_used_slot_and_runs():
    torch.manual_seed(0)
    cfg = mann.MANNConfig(input_size=4, n_classes=3, hidden=8, slots=5, word=3)
    m = mann.MANN(cfg)
    x, y = torch.randn(2, 6, 4), torch.zeros(2, 6, 3)
    out = m(x, y)
    assert out.shape == (2, 6, 3) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in m.parameters())


def test_episodes_labels_shuffled_and_instances_counted():
    classes = [torch.full((12, 64), float(c)) for c in range(8)]
    ep = oneshot.episodes(classes, 3, n_way=5, per_class=10, generator=torch.Generator().manual_seed(0))
    assert ep.x.shape == (3, 50, 64) and ep.y.shape == (3, 50)
    for b in range(3):
        cls = ep.x[b, :, 0]
        for c in cls.unique():  # one label per class within an episode
            assert len(ep.y[b][cls == c].unique()) == 1
        for lab in range(5):
            assert sorted(ep.instance[b][ep.y[b] == lab].tolist()) == list(range(1, 11))
    torch.testing.assert_close(ep.y_prev[:, 1:].argmax(-1), ep.y[:, :-1])
    assert ep.y_prev[:, 0].sum() == 0
