"""The WikiMovies-style generator: determinism, answer correctness, documents, memories and KB edits."""

from __future__ import annotations

import pytest

from mem_tutorial.data.moviekb import (
    INVERSE,
    MEMORY_KINDS,
    OBJECT_TYPE,
    RELATIONS,
    build_memories,
    generate_kb,
    generate_questions,
    kb_memories,
    question_for,
    render_document,
    sentence_memories,
    split_questions,
    tokenize,
    window_memories,
)


@pytest.fixture(scope="module")
def kb():
    return generate_kb(n_films=60, seed=3)


def test_generation_is_deterministic_and_seed_dependent(kb):
    again = generate_kb(n_films=60, seed=3)
    assert again.facts == kb.facts and again.types == kb.types
    assert generate_questions(again, seed=1) == generate_questions(kb, seed=1)
    assert [render_document(again, f) for f in again.films] == [render_document(kb, f) for f in kb.films]
    assert build_memories(again, "window+center+title") == build_memories(kb, "window+center+title")
    assert generate_kb(n_films=60, seed=4).facts != kb.facts


def test_kb_shape_and_types(kb):
    assert len(kb.films) == 60
    for film in kb.films:
        for r in RELATIONS:
            objs = kb.objects(film, r)
            assert objs, (film, r)
            assert len(set(objs)) == len(objs)
            assert all(kb.types[o] == OBJECT_TYPE[r] for o in objs)
    names = [tuple(e.lower().split()) for e in kb.entities]
    assert len(set(names)) == len(names)  # unique case-insensitively


def test_every_generated_answer_is_true_and_complete(kb):
    questions = generate_questions(kb, seed=0)
    assert {q.relation for q in questions} == set(RELATIONS) | {r + INVERSE for r in RELATIONS}
    triples = set(kb.triples())
    for q in questions:
        assert q.answers and q.entity in tokenize(q.text, kb)
        for a in q.answers:
            assert kb.holds(q.entity, q.relation, a)
            fact = (a, q.relation[: -len(INVERSE)], q.entity) if q.relation.endswith(INVERSE) else (
                q.entity, q.relation, a)
            assert fact in triples
        # complete: no other entity makes the question true
        if q.relation.endswith(INVERSE):
            expected = {s for s, r, o in triples if r + INVERSE == q.relation and o == q.entity}
        else:
            expected = {o for s, r, o in triples if s == q.entity and r == q.relation}
        assert set(q.answers) == expected


def test_split_is_a_partition(kb):
    qs = generate_questions(kb)
    tr, va, te = split_questions(qs, seed=0)
    assert len(tr) + len(va) + len(te) == len(qs)
    assert sorted(map(repr, tr + va + te)) == sorted(map(repr, qs))


def test_tokenize_links_entities():
    kb = generate_kb(n_films=10, seed=0)
    film, person = kb.films[0], kb.objects(kb.films[0], "directed_by")[0]
    assert tokenize(f"Who directed {film.upper()}?", kb) == ["who", "directed", film, "?"]
    assert tokenize(f"films by {person}, please", kb) == ["films", "by", person, ",", "please"]


def test_documents_state_every_fact(kb):
    for film in kb.films[:20]:
        tokens = {t for s in render_document(kb, film) for t in tokenize(s, kb)}
        for r in RELATIONS:
            assert set(kb.objects(film, r)) <= tokens, (film, r)


def test_kb_memories_with_inverse(kb):
    mems = kb_memories(kb)
    assert len(mems) == 2 * len(kb.triples())
    s, r, o = kb.triples()[0]
    assert mems[0].key == (s, r) and mems[0].value == (o,)
    assert any(m.key == (o, r + INVERSE) and m.value == (s,) for m in mems)
    assert len(kb_memories(kb, inverse=False)) == len(kb.triples())


def test_sentence_and_window_memories(kb):
    sents = sentence_memories(kb)
    assert all(m.key == m.value for m in sents)
    wins = window_memories(kb, window=5)
    assert all(len(m.key) <= 5 and m.value[0] in m.key and m.value[0] in kb.types for m in wins)
    centred = window_memories(kb, window=5, center_encoding=True)
    assert all(m.center == m.value and m.value[0] not in m.key[:0] and len(m.key) <= 4 for m in centred)
    titled = window_memories(kb, window=5, title=True)
    assert len(titled) == 2 * len(wins)
    assert all(m.value == (m.film,) and m.key[-1] == "_title_" for m in titled[1::2])
    for kind in MEMORY_KINDS:
        assert build_memories(kb, kind)
    with pytest.raises(ValueError, match="odd"):
        window_memories(kb, window=4)
    with pytest.raises(ValueError, match="unknown memory kind"):
        build_memories(kb, "paragraph")


def test_edit_add_film_and_change_director(kb):
    new = kb.with_film("The Paper Lighthouse", {"directed_by": ["Nadia Quill"], "release_year": ["2031"]})
    assert "The Paper Lighthouse" not in kb.types  # the original is unchanged
    q = question_for(new, "directed_by", "The Paper Lighthouse")
    assert q.answers == ("Nadia Quill",) and tokenize(q.text, new)[-2] == "The Paper Lighthouse"
    assert new.types["Nadia Quill"] == "person" and new.types["2031"] == "year"
    assert ("The Paper Lighthouse", "directed_by", "Nadia Quill") in new.triples()
    film = kb.films[0]
    old = kb.objects(film, "directed_by")
    changed = kb.with_facts(film, "directed_by", ["Nadia Quill"])
    assert question_for(changed, "directed_by", film).answers == ("Nadia Quill",)
    assert kb.objects(film, "directed_by") == old
    assert film not in question_for(changed, "directed_by" + INVERSE, old[0]).answers
    with pytest.raises(ValueError, match="already"):
        kb.with_film(film, {})
    with pytest.raises(ValueError, match="unknown relation"):
        kb.with_facts(film, "produced_by", ["x"])
    with pytest.raises(ValueError, match="is a"):
        kb.with_facts(film, "directed_by", [kb.films[1]])
