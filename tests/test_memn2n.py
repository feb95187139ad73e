"""End-To-End Memory Network tests: float64 references written from the paper's equations (Chapter 4)."""

from __future__ import annotations

import math

import pytest
import torch

from mem_tutorial.models import memn2n as M

torch.set_num_threads(1)  # small tensors: one thread is faster, and the CPU is shared


def reference_pe(J: int, d: int) -> torch.Tensor:
    """Sukhbaatar et al. 2015, Sec. 4.1: l_kj = (1 - j/J) - (k/d)(1 - 2j/J), j and k 1-based, as loops."""
    out = torch.zeros(J, d, dtype=torch.float64)
    for j in range(1, J + 1):
        for k in range(1, d + 1):
            out[j - 1, k - 1] = (1 - j / J) - (k / d) * (1 - 2 * j / J)
    return out


@pytest.mark.parametrize("J,d", [(1, 1), (3, 4), (6, 20), (11, 50)])
def test_position_encoding_matches_paper_formula(J, d):
    got = M.position_encoding(J, d, dtype=torch.float64)
    assert got.shape == (J, d)
    torch.testing.assert_close(got, reference_pe(J, d), rtol=0, atol=1e-12)


def test_position_encoding_hand_values_and_not_zero_based():
    l = M.position_encoding(2, 2, dtype=torch.float64)
    # j=1,k=1: (1-1/2) - (1/2)(1-1) = 0.5 ; j=2,k=2: 0 - 1*(1-2) = 1 ; j=1,k=2: 0.5 - 0 = 0.5 ; j=2,k=1: 0.5
    torch.testing.assert_close(l, torch.tensor([[0.5, 0.5], [0.5, 1.0]], dtype=torch.float64))
    zero_based = torch.tensor([[(1 - j / 2) - (k / 2) * (1 - 2 * j / 2) for k in range(2)] for j in range(2)],
                              dtype=torch.float64)
    assert not torch.allclose(l, zero_based)


def test_official_position_encoding_formula():
    J, d = 5, 4
    ref = torch.tensor([[1 + 4 * (k - (d + 1) / 2) * (j - (J + 1) / 2) / (d * J) for k in range(1, d + 1)]
                        for j in range(1, J + 1)], dtype=torch.float64)
    torch.testing.assert_close(M.position_encoding_official(J, d, dtype=torch.float64), ref)


def reference_hop(u, m, c, mask, linear=False):
    """Eq. 1-2 and u^{k+1} = u^k + o^k, example by example, slot by slot, in float64."""
    B, N, _ = m.shape
    p = torch.zeros(B, N, dtype=torch.float64)
    o = torch.zeros_like(u)
    for b in range(B):
        real = [i for i in range(N) if mask[b, i]]
        scores = {i: float(u[b] @ m[b, i]) for i in real}
        if linear:
            for i in real:
                p[b, i] = scores[i]
        elif real:
            top = max(scores.values())
            z = sum(torch.exp(torch.tensor(s - top, dtype=torch.float64)) for s in scores.values())
            for i in real:
                p[b, i] = torch.exp(torch.tensor(scores[i] - top, dtype=torch.float64)) / z
        for i in real:
            o[b] += p[b, i] * c[b, i]
    return u + o, p


@pytest.mark.parametrize("linear", [False, True])
def test_memory_hop_matches_reference(linear):
    g = torch.Generator().manual_seed(0)
    B, N, d = 3, 5, 4
    u = torch.randn(B, d, generator=g, dtype=torch.float64)
    m = torch.randn(B, N, d, generator=g, dtype=torch.float64)
    c = torch.randn(B, N, d, generator=g, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    hop = M.memory_hop(u, m, c, mask, linear=linear)
    ref_u, ref_p = reference_hop(u, m, c, mask, linear)
    torch.testing.assert_close(hop.u, ref_u)
    torch.testing.assert_close(hop.attention, ref_p)


def test_padded_memories_get_zero_attention_even_with_large_scores():
    u = torch.ones(2, 3)
    m = torch.zeros(2, 4, 3)
    m[:, 2:] = 100.0  # padding slots that would dominate an unmasked softmax
    mask = torch.tensor([[True, True, False, False], [True, False, False, False]])
    p = M.memory_attention(u, m, mask)
    assert (p[~mask] == 0).all()
    torch.testing.assert_close(p.sum(dim=1), torch.ones(2))
    torch.testing.assert_close(p[0, :2], torch.tensor([0.5, 0.5]))


def test_all_padding_row_gives_zeros_not_nan_and_finite_gradients():
    u = torch.randn(2, 3, requires_grad=True)
    m = torch.zeros(2, 4, 3, requires_grad=True)
    c = torch.zeros(2, 4, 3, requires_grad=True)
    mask = torch.tensor([[False] * 4, [True, True, False, False]])
    hop = M.memory_hop(u, m, c, mask)
    assert torch.isfinite(hop.u).all() and (hop.attention[0] == 0).all()
    hop.u.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (u, m, c))


def test_memory_hop_gradcheck():
    g = torch.Generator().manual_seed(1)
    u = torch.randn(2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    m = torch.randn(2, 4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    c = torch.randn(2, 4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]])
    assert torch.autograd.gradcheck(lambda a, b, e: M.memory_hop(a, b, e, mask).u, (u, m, c))


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match=r"memory_in: expected shape \[B, N, d\]"):
        M.memory_attention(torch.zeros(2, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="mask"):
        M.memory_attention(torch.zeros(2, 3), torch.zeros(2, 4, 3), torch.ones(2, 5, dtype=torch.bool))


def test_sentence_representation_pe_and_bow():
    E = torch.randn(6, 4, dtype=torch.float64)
    E[0] = 0
    words = torch.tensor([[[1, 2, 0], [3, 0, 0]]])  # [B=1, N=2, J=3]
    l = reference_pe(3, 4)
    got = M.sentence_representation(words, E, l)
    expected0 = l[0] * E[1] + l[1] * E[2]
    torch.testing.assert_close(got[0, 0], expected0)
    torch.testing.assert_close(got[0, 1], l[0] * E[3])
    torch.testing.assert_close(M.sentence_representation(words, E, None)[0, 0], E[1] + E[2])


def test_memory_ages_and_random_noise():
    mask = torch.tensor([[True, True, True, False], [True, False, False, False]])
    assert M.memory_ages(mask).tolist() == [[2, 1, 0, 0], [0, 0, 0, 0]]
    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(64, 30, dtype=torch.bool)
    n = torch.randint(1, 31, (64,), generator=g)
    mask[torch.arange(30).unsqueeze(0) < n.unsqueeze(1)] = True
    for _ in range(5):
        ages = M.random_noise_ages(mask, 0.1, generator=g)
        for b in range(64):
            a = ages[b, : n[b]].tolist()
            assert a == sorted(a, reverse=True) and len(set(a)) == len(a)  # older sentences, larger ages
            assert max(a) <= n[b] - 1 + -(-int(n[b]) // 10) and min(a) >= 0
        assert (ages[~mask] == 0).all()
    assert (M.random_noise_ages(mask, 0.0, generator=g) == M.memory_ages(mask)).all()
    assert M.random_noise_ages(mask, 0.5, max_age=3, generator=g).max() <= 3


def reference_forward(model: M.MemN2N, stories, mask, queries, ages, copy=0, linear=False):
    """The whole network from the paper's equations, with the slow sentence_representation, in float64."""
    mats = {k: v.double() for k, v in model.matrices(copy).items()}
    J = stories.shape[-1]
    d = model.config.embedding_dim
    l = reference_pe(J, d) if model.config.encoding == "pe" else None
    if model.config.pe_formula == "official" and l is not None:
        l = M.position_encoding_official(J, d, dtype=torch.float64)
    u = M.sentence_representation(queries, mats["B"], l)
    ps = []
    for k in range(1, model.config.hops + 1):
        m = M.sentence_representation(stories, mats[f"A{k}"], l)
        c = M.sentence_representation(stories, mats[f"C{k}"], l)
        if model.config.temporal:
            m = m + mats[f"TA{k}"][ages]
            c = c + mats[f"TC{k}"][ages]
        if model.config.tying == "layerwise":
            p = M.memory_attention(u, m, mask, linear)
            u = u @ model.H[copy].double().T + M.memory_output(p, c)
        else:
            u, p = M.memory_hop(u, m, c, mask, linear)
        if model.config.nonlinearity == "relu":  # u^{k+1} = ReLU(u^k + o^k), the official add_nonlin
            u = u.clamp(min=0)
        ps.append(p)
    return u @ mats["W"].T, torch.stack(ps, dim=1)


def toy_batch(V=12, B=4, N=6, J=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    stories = torch.randint(1, V, (B, N, J), generator=g)
    stories[:, :, 3:] = 0  # padding words
    mask = torch.zeros(B, N, dtype=torch.bool)
    for b, n in enumerate([6, 3, 1, 4][:B]):
        mask[b, :n] = True
    stories[~mask] = 0
    queries = torch.randint(1, V, (B, J), generator=g)
    queries[:, 4:] = 0
    return stories, mask, queries


@pytest.mark.parametrize("encoding,formula,tying,temporal,nonlinearity", [
    ("pe", "paper", "adjacent", True, None), ("bow", "paper", "adjacent", True, None),
    ("pe", "official", "adjacent", False, None), ("pe", "paper", "layerwise", True, None),
    ("pe", "official", "adjacent", True, "relu"), ("pe", "paper", "layerwise", True, "relu")])
@pytest.mark.parametrize("linear", [False, True])
def test_model_matches_equation_reference(encoding, formula, tying, temporal, nonlinearity, linear):
    torch.manual_seed(0)
    cfg = M.MemN2NConfig(vocab_size=12, sentence_length=5, memory_size=8, embedding_dim=6, hops=3,
                         encoding=encoding, pe_formula=formula, tying=tying, temporal=temporal,
                         nonlinearity=nonlinearity)
    model = M.MemN2N(cfg)
    stories, mask, queries = toy_batch()
    ages = M.memory_ages(mask)
    out = model(stories, mask, queries, ages=ages, linear=linear)
    assert out.logits.shape == (4, 12) and out.attention.shape == (4, 3, 6)
    ref_logits, ref_p = reference_forward(model, stories, mask, queries, ages, linear=linear)
    torch.testing.assert_close(out.logits.double(), ref_logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out.attention.double(), ref_p, rtol=1e-4, atol=1e-5)
    assert (out.attention.permute(0, 2, 1)[~mask] == 0).all()  # padded memories: zero attention in every hop


def test_copies_are_independent_networks():
    torch.manual_seed(0)
    cfg = M.MemN2NConfig(vocab_size=12, sentence_length=5, memory_size=8, embedding_dim=6, hops=2)
    model = M.MemN2N(cfg, copies=3)
    batches = [toy_batch(seed=s) for s in range(3)]
    stories, mask, queries = (torch.stack(t) for t in zip(*batches))
    out = model(stories, mask, queries)
    assert out.logits.shape == (3, 4, 12) and out.attention.shape == (3, 4, 2, 6)
    for s in range(3):
        ref, _ = reference_forward(model, *batches[s], M.memory_ages(batches[s][1]), copy=s)
        torch.testing.assert_close(out.logits[s].double(), ref, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="copies"):
        model(*batches[0])


def test_nonlinearity_is_checked_and_changes_the_answer():
    with pytest.raises(ValueError, match="nonlinearity"):
        M.MemN2NConfig(vocab_size=12, sentence_length=5, nonlinearity="tanh")
    torch.manual_seed(0)
    cfg = M.MemN2NConfig(vocab_size=12, sentence_length=5, memory_size=8, embedding_dim=6, hops=3, slots=6)
    linear_model = M.MemN2N(cfg)
    relu_model = M.MemN2N(M.MemN2NConfig(**{**cfg.__dict__, "nonlinearity": "relu"}))
    relu_model.load_state_dict(linear_model.state_dict())
    stories, mask, queries = toy_batch()
    assert not torch.allclose(linear_model(stories, mask, queries).logits, relu_model(stories, mask, queries).logits)
    # the official clipping path (nil rows looked up, empty slots as nil memories) gives the same outputs
    torch.testing.assert_close(relu_model(stories, mask, queries, nil_gradient=True).logits,
                               relu_model(stories, mask, queries).logits, rtol=1e-5, atol=1e-5)


def test_adjacent_tying_shares_matrices_and_nil_stays_zero():
    cfg = M.MemN2NConfig(vocab_size=10, sentence_length=4, embedding_dim=5, hops=3)
    model = M.MemN2N(cfg)
    mats = model.matrices()
    assert mats["A2"] is not None and torch.equal(mats["A2"], mats["C1"]) and torch.equal(mats["B"], mats["A1"])
    assert torch.equal(mats["W"], mats["C3"]) and torch.equal(mats["TA2"], mats["TC1"])
    assert len(model.embeddings) == 4
    for matrix in model.embeddings:
        assert (matrix[:, 0] == 0).all()
    std = torch.cat([p.detach().flatten() for p in model.parameters()]).std()
    assert 0.08 < float(std) < 0.12  # N(0, 0.1) initialisation


def test_training_step_no_nan_and_learns_a_toy_task():
    """A tiny synthetic 'where is X' task: the answer is the last word of the sentence naming X."""
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    people, places = [1, 2, 3], [4, 5, 6, 7]
    Q, N, J = 256, 4, 3
    stories = torch.zeros(Q, N, J, dtype=torch.long)
    queries = torch.zeros(Q, J, dtype=torch.long)
    answers = torch.zeros(Q, dtype=torch.long)
    for q in range(Q):
        who = torch.tensor(people)[torch.randperm(3, generator=g)]
        where = torch.tensor(places)[torch.randint(0, 4, (3,), generator=g)]
        for i in range(3):
            stories[q, i, 0], stories[q, i, 1], stories[q, i, 2] = who[i], 8, where[i]
        target = int(torch.randint(0, 3, (1,), generator=g))
        queries[q, 0], queries[q, 1] = 9, who[target]
        answers[q] = where[target]
    mask = torch.zeros(Q, N, dtype=torch.bool)
    mask[:, :3] = True
    from mem_tutorial.data.babi import BabiTensors

    data = BabiTensors(stories, mask, queries, answers, torch.zeros(Q, N, dtype=torch.bool), torch.ones(Q, dtype=torch.long))
    model = M.MemN2N(M.MemN2NConfig(vocab_size=10, sentence_length=J, memory_size=8, embedding_dim=16, hops=1))
    recipe = M.TrainConfig(epochs=25, lr=0.01, anneal_every=100, ls_epochs=0, linear_start=False, seed=0)
    result = M.fit(model, data, data, recipe)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert result.best_valid_error[0] < 0.15
    assert (model.embeddings[0][:, 0] == 0).all()


def test_clip_grad_norm_per_copy():
    p = torch.nn.Parameter(torch.zeros(2, 3))
    p.grad = torch.tensor([[30.0, 40.0, 0.0], [3.0, 4.0, 0.0]])
    norms = M.clip_grad_norm_per_copy([p], 40.0, 2)
    torch.testing.assert_close(norms, torch.tensor([50.0, 5.0]))
    torch.testing.assert_close(p.grad, torch.tensor([[24.0, 32.0, 0.0], [3.0, 4.0, 0.0]]), rtol=1e-5, atol=1e-5)


def test_paper_recipe_values():
    single = M.paper_recipe()
    assert (single.epochs, single.anneal_every, single.lr, single.batch_size, single.max_grad_norm) == (100, 25, 0.005, 32, 40.0)
    assert single.ls_epochs == 20 and single.random_noise == 0.1 and single.clip == "per_matrix"
    with pytest.raises(ValueError):
        M.TrainConfig(clip="sometimes")
    joint = M.paper_recipe(joint=True)
    assert (joint.epochs, joint.anneal_every, joint.ls_epochs) == (60, 15, 30)
    assert joint.nil_gradient and not single.nil_gradient and joint.ls_patience is None
    assert M.paper_recipe(linear_start=False).lr == 0.01
    with pytest.raises(TypeError):
        M.paper_recipe(nonsense=1)


def test_story_explorer_and_attention_plot_headless():
    import matplotlib

    matplotlib.use("Agg")
    from mem_tutorial.data import babi
    from mem_tutorial.viz.widgets import memn2n_story_explorer, plot_story_attention

    lines = ["1 Mary moved to the bathroom.", "2 John went to the hallway.", "3 Where is Mary?\tbathroom\t1",
             "4 Daniel went to the garden.", "5 Where is Daniel?\tgarden\t4"]
    examples = babi.parse_babi(lines, source="fixture", task=1)
    vocab = babi.build_vocab(examples)
    data = babi.vectorize(examples, vocab)
    torch.manual_seed(0)
    model = M.MemN2N(M.MemN2NConfig(len(vocab), data.stories.shape[2], embedding_dim=8, hops=2))
    answer, attention, ax = plot_story_attention(model, data, vocab, 1)
    assert answer in vocab.words and attention.shape == (3, 2)
    assert ax.get_yticklabels()[2].get_text().startswith("★")
    box = memn2n_story_explorer(model, data, vocab)
    answer, attention = box.draw(0)
    assert attention.shape == (2, 2)


def test_clip_grad_per_matrix_uses_each_matrix_spectral_norm():
    a = torch.nn.Parameter(torch.zeros(2, 2, 2))
    a.grad = torch.tensor([[[30.0, 0.0], [0.0, 40.0]], [[3.0, 0.0], [0.0, 4.0]]])  # spectral norms 40 and 4
    b = torch.nn.Parameter(torch.zeros(2, 3, 1))
    b.grad = torch.tensor([[[80.0], [0.0], [60.0]], [[1.0], [0.0], [0.0]]])  # norms 100 and 1
    M.clip_grad_per_matrix([a, b], 20.0, 2)
    torch.testing.assert_close(a.grad[0], torch.tensor([[15.0, 0.0], [0.0, 20.0]]), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(a.grad[1], torch.tensor([[3.0, 0.0], [0.0, 4.0]]))
    torch.testing.assert_close(b.grad[0, :, 0], torch.tensor([16.0, 0.0, 12.0]), rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- empty memory slots (official code convention)


def official_reference_forward(model: M.MemN2N, stories, mask, queries, ages, slots: int, time_word: bool = False):
    """The official Matlab code's forward pass in float64: a memory of ``slots`` slots, unused ones all-nil.

    Written from MemN2N-babi-matlab's conventions (build_model.m, MemoryL.m, train.m): every slot is a sentence
    of word indices; unused slots hold only the nil word and no time word, so their m_i and c_i are zero; the
    softmax runs over all ``slots`` slots, unmasked; PE is the official matrix.
    """
    mats = {k: v.double() for k, v in model.matrices().items()}
    B, N, J = stories.shape
    d = model.config.embedding_dim
    if time_word:  # the age is word J+1 of each memory sentence, PE built for J+1 positions (enable_time)
        l_full = M.position_encoding_official(J + 1, d, dtype=torch.float64)
        l, l_time = l_full[:J], l_full[J]
    else:
        l, l_time = M.position_encoding_official(J, d, dtype=torch.float64), torch.ones(d, dtype=torch.float64)
    full = torch.zeros(B, slots, J, dtype=torch.long)
    full[:, :N] = stories
    filled = torch.zeros(B, slots, dtype=torch.bool)
    filled[:, :N] = mask
    u = (mats["B"][queries] * l).sum(1)
    ps = []
    for k in range(1, model.config.hops + 1):
        m = (mats[f"A{k}"][full] * l).sum(2)
        c = (mats[f"C{k}"][full] * l).sum(2)
        for b in range(B):
            for i in range(N):
                if mask[b, i]:
                    m[b, i] += l_time * mats[f"TA{k}"][ages[b, i]]
                    c[b, i] += l_time * mats[f"TC{k}"][ages[b, i]]
        scores = torch.einsum("bd,bnd->bn", u, m)
        p = torch.exp(scores) / torch.exp(scores).sum(1, keepdim=True)  # no mask: empty slots score u.0 = 0
        u = u + torch.einsum("bn,bnd->bd", p, c)
        ps.append(p[:, :N] * filled[:, :N])
    return u @ mats["W"].T, torch.stack(ps, dim=1)


def test_memory_attention_empty_slots_match_formula_and_explicit_zero_memories():
    g = torch.Generator().manual_seed(3)
    u = torch.randn(3, 4, dtype=torch.float64, generator=g)
    m = torch.randn(3, 5, 4, dtype=torch.float64, generator=g)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False], [False] * 5])
    empty = torch.tensor([0, 4, 2])
    got = M.memory_attention(u, m, mask, empty=empty)
    s = torch.einsum("bd,bnd->bn", u, m)
    expected = torch.exp(s) * mask / ((torch.exp(s) * mask).sum(1, keepdim=True) + empty.unsqueeze(1))
    torch.testing.assert_close(got, expected)
    # same as appending `empty` explicit all-zero memories and taking an unmasked softmax over everything
    zeros = torch.zeros(1, 4, 4, dtype=torch.float64)
    explicit = M.memory_attention(u[1:2], torch.cat([m[1:2, :2], zeros], dim=1))
    torch.testing.assert_close(got[1, :2], explicit[0, :2])
    # linear start: empty slots (score 0) change nothing; no NaN on an empty story without empty slots
    torch.testing.assert_close(M.memory_attention(u, m, mask, linear=True, empty=empty),
                               M.memory_attention(u, m, mask, linear=True))
    u.requires_grad_(True)
    p = M.memory_attention(u, m, torch.zeros(3, 5, dtype=torch.bool), empty=torch.zeros(3, dtype=torch.long))
    p.sum().backward()
    assert (p == 0).all() and torch.isfinite(u.grad).all()


def test_model_with_slots_matches_the_official_code():
    """Regression test for the yes/no tasks at chance: the model must see the official code's fixed-size memory
    (empty slots in the softmax) and PE matrix when built with paper_config's settings."""
    torch.manual_seed(0)
    cfg = M.MemN2NConfig(vocab_size=12, sentence_length=5, memory_size=16, embedding_dim=6, hops=3,
                         pe_formula="official", slots=10)
    model = M.MemN2N(cfg)
    stories, mask, queries = toy_batch()
    ages = M.memory_ages(mask)
    out = model(stories, mask, queries, ages=ages)
    ref_logits, ref_p = official_reference_forward(model, stories, mask, queries, ages, slots=10)
    torch.testing.assert_close(out.logits.double(), ref_logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out.attention.double(), ref_p, rtol=1e-4, atol=1e-5)
    assert (out.attention.sum(dim=2) < 1 - 1e-3).all()  # the empty slots take part of the mass
    # trimming padding slots off the batch (as fit() does) does not change the result
    keep = int(mask.sum(1).max())
    trimmed = model(stories[:, :keep], mask[:, :keep], queries, ages=ages[:, :keep])
    torch.testing.assert_close(trimmed.logits, out.logits)


def test_time_word_matches_the_official_code():
    """time_word=True: the official code's temporal encoding, a (J+1)-th word weighted by the last PE row."""
    torch.manual_seed(1)
    cfg = M.MemN2NConfig(vocab_size=12, sentence_length=5, memory_size=16, embedding_dim=6, hops=3,
                         pe_formula="official", slots=10, time_word=True)
    model = M.MemN2N(cfg)
    stories, mask, queries = toy_batch()
    ages = M.random_noise_ages(mask, generator=torch.Generator().manual_seed(2), max_age=15)
    out = model(stories, mask, queries, ages=ages)
    ref_logits, ref_p = official_reference_forward(model, stories, mask, queries, ages, slots=10, time_word=True)
    torch.testing.assert_close(out.logits.double(), ref_logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out.attention.double(), ref_p, rtol=1e-4, atol=1e-5)
    # and it is a different model from the additive temporal encoding with the same weights
    additive = M.MemN2N(M.MemN2NConfig(**{**cfg.__dict__, "time_word": False}))
    additive.load_state_dict(model.state_dict())
    assert not torch.allclose(additive(stories, mask, queries, ages=ages).logits, out.logits)
    words, time = M.time_word_encoding(5, 6)
    torch.testing.assert_close(torch.cat([words, time[None]]), M.position_encoding_official(6, 6))


def test_paper_config_follows_the_official_code():
    class Fake:  # the fields paper_config reads from a BabiData
        vocab = list(range(40))
        sentence_length = 7
        memory_size = 50
        train = type("T", (), {"stories": torch.zeros(3, 26, 7, dtype=torch.long)})()
    single = M.paper_config(Fake())
    assert (single.pe_formula, single.slots, single.embedding_dim, single.hops) == ("official", 26, 20, 3)
    assert single.encoding == "pe" and single.temporal and single.tying == "adjacent"
    assert M.paper_config(Fake(), joint=True).embedding_dim == 50
    assert M.paper_config(Fake(), slots=None).slots is None
    with pytest.raises(TypeError):
        M.paper_config(Fake(), nonsense=1)


# ------------------------------------------------- the nil word's gradient (official code: counted in clipping)


@pytest.mark.parametrize("time_word,tying,linear", [(False, "adjacent", False), (True, "adjacent", False),
                                                    (False, "adjacent", True), (False, "layerwise", False)])
def test_nil_gradient_matches_the_official_lookup(time_word, tying, linear):
    """nil_gradient=True: same outputs and same gradients everywhere, except the nil rows, which get the gradient
    of a float64 forward pass that looks up every word position and every slot (padding and empty slots
    included), as the official code's LookUpTable does."""
    torch.manual_seed(2)
    cfg = M.MemN2NConfig(vocab_size=12, sentence_length=5, memory_size=16, embedding_dim=6, hops=3,
                         pe_formula="official", slots=10, time_word=time_word, tying=tying)
    model = M.MemN2N(cfg).double()
    stories, mask, queries = toy_batch()
    ages = M.random_noise_ages(mask, generator=torch.Generator().manual_seed(2), max_age=15)
    answers = torch.tensor([1, 5, 7, 2])
    grads = {}
    for flag in (False, True):
        model.zero_grad()
        out = model(stories, mask, queries, ages=ages, linear=linear, nil_gradient=flag)
        torch.nn.functional.cross_entropy(out.logits, answers, reduction="sum").backward()
        grads[flag] = [p.grad.clone() for p in model.parameters()]
        if flag:
            logits_nil = out.logits.detach()
        else:
            logits_plain = out.logits.detach()
    torch.testing.assert_close(logits_nil, logits_plain)
    for g0, g1, p in zip(grads[False], grads[True], model.parameters()):
        rest = torch.ones_like(g0, dtype=torch.bool)
        if p.dim() == 3 and p.shape[1] == 12:  # a word matrix: its nil row is where they may differ
            rest[:, 0] = False
        torch.testing.assert_close(g1[rest], g0[rest])
    # the reference: explicit look-ups of all positions and all `slots` slots (float64, same weights)
    if tying == "layerwise" or linear:
        # layer-wise tying and linear start are not in the official reference; check the nil rows are non-zero
        assert any(g[:, 0].abs().sum() > 0 for g, p in zip(grads[True], model.parameters()) if p.shape[1:] == (12, 6))
        return
    model.zero_grad()
    mats = model.matrices()
    d = cfg.embedding_dim
    B, N, J = stories.shape
    slots = 10
    if time_word:
        full_pe = M.position_encoding_official(J + 1, d, dtype=torch.float64)
        l, l_time = full_pe[:J], full_pe[J]
    else:
        l, l_time = M.position_encoding_official(J, d, dtype=torch.float64), torch.ones(d, dtype=torch.float64)
    full = torch.zeros(B, slots, J, dtype=torch.long)
    full[:, :N] = stories
    filled = torch.zeros(B, slots, dtype=torch.bool)
    filled[:, :N] = mask
    full_ages = torch.zeros(B, slots, dtype=torch.long)
    full_ages[:, :N] = ages
    u = (mats["B"][queries] * l).sum(1)
    for k in range(1, cfg.hops + 1):
        m = (mats[f"A{k}"][full] * l).sum(2)
        c = (mats[f"C{k}"][full] * l).sum(2)
        time_a = torch.where(filled.unsqueeze(-1), mats[f"TA{k}"][full_ages], 0.0)
        time_c = torch.where(filled.unsqueeze(-1), mats[f"TC{k}"][full_ages], 0.0)
        if time_word:  # the time word: T(age) on filled slots, the nil word on empty ones, weighted by l_{J+1}
            time_a = time_a + (~filled).unsqueeze(-1) * mats[f"A{k}"][0]
            time_c = time_c + (~filled).unsqueeze(-1) * mats[f"C{k}"][0]
        m, c = m + l_time * time_a, c + l_time * time_c
        p = torch.softmax(torch.einsum("bd,bnd->bn", u, m), dim=1)
        u = u + torch.einsum("bn,bnd->bd", p, c)
    torch.nn.functional.cross_entropy(u @ mats["W"].T, answers, reduction="sum").backward()
    for g1, p in zip(grads[True], model.parameters()):
        torch.testing.assert_close(g1, p.grad, rtol=1e-9, atol=1e-10)
    nil_norm = sum(float(g[:, 0].norm()) for g, p in zip(grads[True], model.parameters()) if p.shape[1:] == (12, 6))
    assert nil_norm > 1e-3  # the nil rows really get a gradient (the test can fail)


def test_nil_gradient_in_fit_keeps_nil_rows_zero_and_changes_clipping():
    """fit(nil_gradient=True): the nil rows stay zero after training, and the run differs from the default one
    only through clipping (with a huge clipping norm both runs agree exactly)."""
    from mem_tutorial.data.babi import BabiTensors

    g = torch.Generator().manual_seed(0)
    Q, N, J, V = 64, 6, 5, 12
    stories, mask, queries = toy_batch(V=V, B=4, N=N, J=J)
    stories, mask, queries = stories.repeat(16, 1, 1), mask.repeat(16, 1), queries.repeat(16, 1)
    answers = torch.randint(1, V, (Q,), generator=g)
    data = BabiTensors(stories, mask, queries, answers, torch.zeros(Q, N, dtype=torch.bool),
                       torch.ones(Q, dtype=torch.long))
    cfg = M.MemN2NConfig(vocab_size=V, sentence_length=J, memory_size=16, embedding_dim=8, hops=2,
                         pe_formula="official", slots=10)
    finals = {}
    for clip in (1e9, 0.5):
        for flag in (False, True):
            torch.manual_seed(0)
            model = M.MemN2N(cfg)
            recipe = M.TrainConfig(epochs=2, ls_epochs=1, max_grad_norm=clip, nil_gradient=flag, seed=0)
            M.fit(model, data, data, recipe)
            assert all((e[:, 0] == 0).all() for e in model.embeddings)
            finals[clip, flag] = torch.cat([p.detach().flatten() for p in model.parameters()])
    torch.testing.assert_close(finals[1e9, True], finals[1e9, False])
    assert not torch.allclose(finals[0.5, True], finals[0.5, False])


def _toy_data(Q, seed=0, V=12, N=6, J=5):
    from mem_tutorial.data.babi import BabiTensors

    g = torch.Generator().manual_seed(seed)
    stories, mask, queries = toy_batch(V=V, B=4, N=N, J=J)
    reps = Q // 4
    stories, mask, queries = stories.repeat(reps, 1, 1), mask.repeat(reps, 1), queries.repeat(reps, 1)
    answers = torch.randint(1, V, (Q,), generator=g)
    return BabiTensors(stories, mask, queries, answers, torch.zeros(Q, N, dtype=torch.bool),
                       torch.ones(Q, dtype=torch.long))


def test_fit_reads_no_tensor_on_the_host_inside_a_step(monkeypatch):
    """Issue #17: fit's metrics stay on the model's device during an epoch and are read once per epoch, so the
    number of host reads (item, float, int, bool, tolist, cpu, numpy) does not grow with the steps per epoch."""
    cfg = M.MemN2NConfig(vocab_size=12, sentence_length=5, memory_size=16, embedding_dim=8, hops=2,
                         pe_formula="official", slots=10)
    valid = _toy_data(16)
    counts = {}
    for Q in (64, 256):  # 2 and 8 steps per epoch
        train = _toy_data(Q)
        calls = []
        for name in ("item", "__float__", "__int__", "__bool__", "tolist", "cpu", "numpy"):
            original = getattr(torch.Tensor, name)

            def spy(self, *args, _original=original, _name=name, **kwargs):
                calls.append(_name)
                return _original(self, *args, **kwargs)
            monkeypatch.setattr(torch.Tensor, name, spy)
        torch.manual_seed(0)
        M.fit(M.MemN2N(cfg), train, valid, M.TrainConfig(epochs=2, ls_epochs=1, nil_gradient=True, seed=0))
        monkeypatch.undo()
        counts[Q] = len(calls)
    assert counts[64] == counts[256], counts


def test_fit_in_float64_keeps_the_dtype():
    cfg = M.MemN2NConfig(vocab_size=12, sentence_length=5, memory_size=16, embedding_dim=8, hops=2,
                         pe_formula="official", slots=10)
    torch.manual_seed(0)
    model = M.MemN2N(cfg).double()
    result = M.fit(model, _toy_data(64), _toy_data(16), M.TrainConfig(epochs=2, ls_epochs=1, nil_gradient=True))
    assert all(p.dtype == torch.float64 for p in model.parameters())
    assert all(math.isfinite(v) for v in result.history[0]["train_loss"]) and len(result.history[0]["train_loss"]) == 3


def test_ls_patience_warns():
    """The linear-start validation loss is too noisy to stop on (issue #20): fit warns when ls_patience is set."""
    cfg = M.MemN2NConfig(vocab_size=12, sentence_length=5, memory_size=16, embedding_dim=8, hops=1)
    data = _toy_data(32)
    with pytest.warns(UserWarning, match="too noisy"):
        M.fit(M.MemN2N(cfg), data, data, M.TrainConfig(epochs=1, ls_epochs=1, ls_patience=1))
