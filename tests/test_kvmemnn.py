"""The KV-MemNN model: shapes, masking, training sanity, and the memory-edit experiment (no retraining)."""

from __future__ import annotations

import math

import pytest
import torch

from mem_tutorial.data.moviekb import (
    INVERSE,
    generate_kb,
    generate_questions,
    kb_memories,
    make_edits,
    question_for,
    tokenize,
)
from mem_tutorial.runtime import seed_everything
from mem_tutorial.models.kvmemnn import (
    KVMemNN,
    KVReader,
    answer,
    answer_loss,
    build_vocab,
    entity_codes,
    evaluate,
    hits_at_1,
    load_pretrained,
    movie_reader,
    take,
    train_kvmemnn,
)


@pytest.fixture(scope="module")
def small():
    kb = generate_kb(n_films=30, seed=1)
    qs = generate_questions(kb, seed=1)
    toks = [tokenize(q.text, kb) for q in qs]
    mems = kb_memories(kb)
    vocab = build_vocab(mems, toks, kb.entities)
    reader = KVReader(kb.entities, mems, vocab, entity_dim=16)
    return kb, qs, toks, reader


def test_entity_codes_are_fixed_unit_and_independent_of_the_list():
    a = entity_codes(["Ada Moreau", "1994"], 32, "in")
    b = entity_codes(["x", "1994", "Ada Moreau"], 32, "in")
    torch.testing.assert_close(a, b[[2, 1]])
    torch.testing.assert_close(a.norm(dim=-1), torch.ones(2))
    assert not torch.allclose(entity_codes(["1994"], 32, "out"), a[1:])


def test_forward_backward_shapes_and_finite_gradients(small):
    kb, qs, toks, reader = small
    model = KVMemNN(len(reader.vocab), word_dim=8, entity_dim=16, hops=3)
    batch = reader.encode(toks[:5])
    out = model(batch)
    B, K = batch.key_mask.shape
    assert out.scores.shape == (5, len(kb.entities))
    assert out.weights.shape == (3, 5, K) and out.queries.shape == (4, 5, 24)
    torch.testing.assert_close(out.weights.sum(-1), torch.ones(3, 5))
    assert torch.all(out.weights[:, ~batch.key_mask] == 0)
    loss = answer_loss(out.scores, reader.answer_targets([q.answers for q in qs[:5]]), batch.candidate_mask)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_question_with_no_hashed_memory_is_finite(small):
    kb, _, _, reader = small
    model = KVMemNN(len(reader.vocab), word_dim=8, entity_dim=16)
    batch = reader.encode([["who", "directed", "nothing", "?"]])
    assert batch.key_mask.sum() == 0
    out = model(batch)
    assert torch.isfinite(out.scores).all() and torch.all(out.weights == 0)


def test_batching_and_padding_do_not_change_answers(small):
    _, _, toks, reader = small
    torch.manual_seed(0)
    model = KVMemNN(len(reader.vocab), word_dim=8, entity_dim=16)
    together = model(reader.encode(toks[:6])).scores
    alone = torch.cat([model(reader.encode([t])).scores for t in toks[:6]])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)
    full = reader.encode(toks[:6])
    part = take(full, torch.tensor([4, 1]))
    torch.testing.assert_close(model(part).scores, together[[4, 1]], rtol=1e-5, atol=1e-5)


def test_hashing_retrieves_the_facts_about_the_question_entity(small):
    kb, qs, toks, reader = small
    for q, t in list(zip(qs, toks))[::7]:
        ids = reader.hash(t)
        keys = [reader.memories[i].key for i in ids]
        assert all(q.entity in k for k in keys)
        rel = q.relation
        assert any(k == (q.entity, rel) for k in keys)


def test_answer_loss_matches_reference_with_several_answers():
    scores = torch.tensor([[1.0, 2.0, 0.5], [0.0, 0.0, 3.0]], dtype=torch.float64)
    targets = torch.tensor([[True, True, False], [False, False, True]])
    p = torch.softmax(scores, -1)
    expected = -(math.log(p[0, 0] + p[0, 1]) + math.log(p[1, 2])) / 2
    assert answer_loss(scores, targets).item() == pytest.approx(expected)
    assert hits_at_1(scores, targets) == 1.0
    # unreachable answers are left out of the loss
    mask = torch.tensor([[True, True, True], [True, True, False]])
    assert answer_loss(scores, targets, mask).item() == pytest.approx(-math.log(p[0, 0] + p[0, 1]))


def test_answer_loss_without_any_reachable_answer_is_zero_and_finite():
    scores = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([[True, False, False, False]] * 3)
    mask = torch.tensor([[False, True, True, True]] * 3)
    loss = answer_loss(scores, targets, mask)
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(scores.grad).all()
    # one reachable question: the others contribute neither loss nor gradient
    mask[1, 0] = True
    scores.grad = None
    loss = answer_loss(scores, targets, mask)
    loss.backward()
    assert loss.item() == pytest.approx(-torch.log_softmax(scores[1].detach(), -1)[0].item())
    assert torch.count_nonzero(scores.grad[[0, 2]]) == 0


def test_float64_model_runs_forward_backward_and_a_training_step(small):
    kb, qs, toks, reader = small
    torch.manual_seed(0)
    model = KVMemNN(len(reader.vocab), word_dim=8, entity_dim=16).double()
    out = model(reader.encode(toks[:4]))
    assert out.scores.dtype == torch.float64 and out.weights.dtype == torch.float64
    history = train_kvmemnn(model, reader, toks[:8], [q.answers for q in qs[:8]], steps=2, batch_size=4)
    assert all(math.isfinite(v) for v in history["loss"])
    assert all(p.dtype == torch.float64 for p in model.parameters())


def test_entity_codes_follow_the_requested_dtype_and_device():
    c64 = entity_codes(["Ada Moreau", "1994"], 32, "in", dtype=torch.float64)
    assert c64.dtype == torch.float64
    torch.testing.assert_close(c64.float(), entity_codes(["Ada Moreau", "1994"], 32, "in"))
    assert entity_codes(["x"], 8, "in", device="meta").device.type == "meta"


def test_window_centre_is_encoded_with_the_second_dictionary():
    """Miller et al. 2016, Sec. 3.2: the window's centre (and the value) use the second dictionary (out codes)."""
    from mem_tutorial.data.moviekb import Memory

    ents = ["Ada Moreau", "The Silent River"]
    mems = [Memory(key=("directed", "by"), value=("Ada Moreau",), center=("Ada Moreau",), film="The Silent River")]
    reader = KVReader(ents, mems, entity_dim=16)
    model = KVMemNN(len(reader.vocab), word_dim=4, entity_dim=16).double()
    with torch.no_grad():
        model.log_scale.copy_(torch.tensor([0.0, math.log(2.0), 0.0]))
    batch = reader.encode([["who", "directed", "by", "Ada Moreau", "?"]])
    _, keys, values, _ = model.embed(batch)
    out_code = entity_codes(["Ada Moreau"], 16, "out", dtype=torch.float64)[0]
    torch.testing.assert_close(keys[0, 0, 4:], 2.0 * out_code)       # centre: scale 2 times its OUT code
    torch.testing.assert_close(values[0, 0, 4:], out_code)           # value: the same dictionary
    in_code = entity_codes(["Ada Moreau"], 16, "in", dtype=torch.float64)[0]
    assert not torch.allclose(keys[0, 0, 4:], 2.0 * in_code)         # not the question's (in) code


def test_wrong_entity_dim_is_a_clear_error(small):
    _, _, toks, reader = small
    with pytest.raises(ValueError, match="entity_dim"):
        KVMemNN(len(reader.vocab), entity_dim=8)(reader.encode(toks[:1]))


@pytest.mark.parametrize("seed", [0, 1])
def test_short_training_is_finite_and_learns(small, seed):
    kb, qs, toks, reader = small
    seed_everything(seed)  # also one intra-op thread: this machine's cores are shared
    model = KVMemNN(len(reader.vocab), word_dim=16, entity_dim=16)
    before = evaluate(model, reader, toks, [q.answers for q in qs])
    history = train_kvmemnn(model, reader, toks, [q.answers for q in qs], steps=120, seed=seed)
    assert all(math.isfinite(v) for v in history["loss"])
    after = evaluate(model, reader, toks, [q.answers for q in qs])
    assert after > max(before, 0.6)


# ------------------------------------------------------------------ the shipped checkpoint and memory edits


@pytest.fixture(scope="module")
def pretrained():
    model, vocab, payload = load_pretrained("kb")
    kb = generate_kb(**payload["extra"]["kb"])
    return model, vocab, kb


def test_shipped_checkpoint_is_small_and_answers_the_kb(pretrained):
    from mem_tutorial.models.kvmemnn import CHECKPOINT_DIR

    for path in CHECKPOINT_DIR.glob("kvmemnn_*.pt"):
        assert path.stat().st_size < 512 * 1024, path
    model, vocab, kb = pretrained
    reader = movie_reader(kb, "kb", vocab, entity_dim=model.entity_dim)
    qs = generate_questions(kb, seed=0)[::10]
    assert evaluate(model, reader, [tokenize(q.text, kb) for q in qs], [q.answers for q in qs]) >= 0.9


def test_memory_edit_new_film_is_answered_without_retraining(pretrained):
    model, vocab, kb = pretrained
    title = "The Quiet Lighthouse Returns"
    edited = kb.with_film(title, {
        "directed_by": ["Nadia Q. Okonkwo"], "written_by": ["Tobias Wren"], "release_year": ["2027"],
        "starred_actors": ["Maren Solberg", "Ines Ibarra"], "in_language": ["Danish"], "has_genre": ["Comedy"],
    })
    state = {k: v.clone() for k, v in model.state_dict().items()}
    reader = movie_reader(edited, "kb", vocab, entity_dim=model.entity_dim)
    for relation, expected in [("directed_by", "Nadia Q. Okonkwo"), ("written_by", "Tobias Wren"),
                               ("release_year", "2027"), ("in_language", "Danish")]:
        q = question_for(edited, relation, title)
        top = answer(model, reader, tokenize(q.text, edited))["answers"][0][0]
        assert top == expected, (q.text, top)
    # ... and the inverse direction: the new director's films
    q = question_for(edited, "directed_by" + INVERSE, "Nadia Q. Okonkwo")
    assert answer(model, reader, tokenize(q.text, edited))["answers"][0][0] == title
    for k, v in model.state_dict().items():  # no weight changed
        assert torch.equal(v, state[k])


def test_memory_edit_changed_director_is_answered(pretrained):
    model, vocab, kb = pretrained
    film = kb.films[3]
    old = kb.objects(film, "directed_by")
    new = next(p for p in kb.objects(kb.films[4], "starred_actors") if p not in old)
    q_text = tokenize(question_for(kb, "directed_by", film).text, kb)
    before = answer(model, movie_reader(kb, "kb", vocab, entity_dim=model.entity_dim), q_text)
    assert before["answers"][0][0] in old
    edited = kb.with_facts(film, "directed_by", [new])
    after = answer(model, movie_reader(edited, "kb", vocab, entity_dim=model.entity_dim), q_text)
    assert after["answers"][0][0] == new


def test_most_edited_facts_are_answered(pretrained):
    model, vocab, kb = pretrained
    edited, questions = make_edits(kb, n_new_films=10, n_director_changes=10, seed=5)
    reader = movie_reader(edited, "kb", vocab, entity_dim=model.entity_dim)
    acc = evaluate(model, reader, [tokenize(q.text, edited) for q in questions], [q.answers for q in questions])
    assert acc >= 0.9


# ------------------------------------------------------------------ the bAbI bridge


def test_babi_kv_memories_and_hashing_select_the_story():
    from mem_tutorial.data.babi import parse_babi
    from mem_tutorial.data.babi_kv import babi_kv

    lines = ["1 Mary moved to the bathroom.", "2 John went to the hallway.", "3 Where is Mary?\tbathroom\t1",
             "1 Sandra went to the garden.", "2 Where is Sandra?\tgarden\t1"]
    examples = parse_babi(lines)
    data = babi_kv(examples, "last-word")
    assert [m.value for m in data.memories] == [("bathroom",), ("hallway",), ("garden",)]
    assert data.memories[0].key[-2:] == ("_t1", "_story0") and data.memories[1].key[-2] == "_t0"
    assert data.answers == [("bathroom",), ("garden",)] and set(data.entities) == {"bathroom", "hallway", "garden"}
    reader = KVReader(data.entities, data.memories, build_vocab(data.memories, data.questions, data.entities),
                      entity_dim=8, max_frequency=10, max_memories=None)
    assert reader.hash(data.questions[0]) == [0, 1] and reader.hash(data.questions[1]) == [2]
    sentence = babi_kv(examples, "sentence")
    assert sentence.memories[0].value == examples[0].story[0]
    with pytest.raises(ValueError, match="unknown kind"):
        babi_kv(examples, "paragraph")


def test_explorer_widget_answers_headless(pretrained):
    import matplotlib

    matplotlib.use("Agg")
    from mem_tutorial.viz.widgets import kv_memnn_explorer

    model, vocab, kb = pretrained
    reader = movie_reader(kb, "kb", vocab, entity_dim=model.entity_dim)
    q = question_for(kb, "directed_by", kb.films[0])
    box = kv_memnn_explorer(model, reader, kb, [q.text])
    result = box.ask(q.text)
    assert result["answers"][0][0] in q.answers
    assert result["weights"].shape == (model.hops, len(result["memories"]))
