# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# @course-badges
# [![Paper](https://img.shields.io/badge/paper-arXiv%3A1606.03126-b31b1b)](https://arxiv.org/abs/1606.03126)
#
# # Chapter 5 — Key-Value Memory Networks
#
# *External memory in neural networks, built from scratch.* End-To-End Memory Networks (Chapter 4) store each
# sentence once and use it twice: an *input* embedding to decide where to look and an *output* embedding to decide
# what to return. **Key-Value Memory Networks** (Miller, Fisch, Dodge, Karimi, Bordes & Weston, EMNLP 2016) make
# that split explicit and free: a memory slot is a pair **(key, value)** where the key is whatever helps *find*
# the slot (a film and a relation, a window of words) and the value is whatever should be *returned* (the object
# of the fact, the entity at the window's centre). With it one model reads a knowledge base or raw documents, and
# the memory can be **edited without retraining**.
#
# **Contents**
# 1. A small world of films (a WikiMovies-style generator)
# 2. Exercise 1 — key hashing with an inverted index
# 3. Exercise 2 — key addressing and value reading
# 4. Exercise 3 — the hop update $q \leftarrow R_j(q + o)$; written question
# 5. The model, and training it (load or train)
# 6. KB versus documents: a hits@1 table like the paper's
# 7. Which keys does it read?
# 8. Editing the memory at test time
# 9. Retrieve, then read: the road to RAG
# 10. Explorer
# 11. Summary · Exercises · References
#
# Symbols: B batch, K memories per question (after hashing), d embedding size, H hops.

# %% [markdown]
# ### Setup
# This cell works locally and in Colab. Where the course library is missing (Colab) it installs it from the
# published course (`COURSE_SOURCE`; to use another copy, set `MEM_TUTORIAL_SOURCE` in a cell above:
# `%env MEM_TUTORIAL_SOURCE=...`).

# %%
# NBVAL_IGNORE_OUTPUT
# @course-install

import time

import matplotlib.pyplot as plt
import torch

import mem_tutorial.memory as mem
from mem_tutorial import get_device, pick, seed_everything
from mem_tutorial.data import hashing
from mem_tutorial.data.hashing import STOP_WORDS
from mem_tutorial.data.moviekb import (
    build_memories, generate_kb, generate_questions, make_edits, question_for, render_document,
    split_questions, tokenize,
)
from mem_tutorial.grading.checks import assert_close, assert_own_work
from mem_tutorial.models.kvmemnn import (
    KVMemNN, answer, build_vocab, evaluate, load_pretrained, movie_reader, train_kvmemnn,
)

seed_everything(0)
device = get_device("cpu")  # this chapter's models are tiny: the CPU is the fastest place for them
FAST = pick(fast=True, full=False)
print("FAST mode:", FAST)

# %% [markdown]
# ## 1. A small world of films
#
# WikiMovies (Section 4 of the paper) asks questions like *"who directed Blade Runner?"* that can be answered
# from a knowledge base (KB) of triples or from Wikipedia articles. We generate an offline stand-in: fictional
# films with the same relations (`directed_by`, `written_by`, `starred_actors`, `release_year`, `in_language`,
# `has_genre`, `has_tags`), template questions in both directions with **all** their correct answers, and a
# short article per film stating the same facts. The generator is seeded: 300 films, seed 0 everywhere below.

# %%
kb = generate_kb(n_films=300, seed=0)
questions = generate_questions(kb, seed=0)
train_q, valid_q, test_q = split_questions(questions, seed=0)
film = kb.films[0]
print(f"{len(kb.films)} films, {len(kb.entities)} entities, {len(kb.triples())} facts, {len(questions)} questions")
for relation in ("directed_by", "starred_actors", "release_year", "has_tags"):
    print(f"  ({film}, {relation}) -> {kb.objects(film, relation)}")
print("article:", " ".join(render_document(kb, film)))
for q in (questions[0], questions[-1]):
    print(f"Q: {q.text}  A: {q.answers}")
print("tokens:", tokenize(questions[0].text, kb))

# %% [markdown]
# The same facts give three kinds of memories (paper, Section 3):
#
# | memory | key | value |
# |---|---|---|
# | KB triple | subject + relation (and object + inverse relation) | object (subject) |
# | sentence | the sentence's bag of words | the same bag of words |
# | window | the W = 7 tokens around an entity mention | the entity at the centre (or the film's title) |

# %%
for kind in ("kb", "sentence", "window+center+title"):
    memories = build_memories(kb, kind)
    m = memories[1]
    print(f"{kind:20s} {len(memories):5d} memories, e.g. key={m.key} centre={m.center} value={m.value}")

# %% [markdown]
# ## 2. Key hashing
#
# Reading thousands of memories for every question would be slow and noisy. The paper first selects
# candidates with an **inverted index**: *"we find a subset of memories whose key shares at least one word with
# the question with frequency < F = 1000 (to ignore stop words)"*. The frequency cut-off **is** the paper's
# stop-word filter: a word found in 1,000 or more keys (*the*, *of*, *film*) selects nothing. A word's frequency
# here is the number of keys that contain it. Our generated world is small, so its default cut-off is lower
# (F = 100), and the library also drops a short explicit stop-word list, which only matters for a function word
# that happens to be rarer than F.
#
# **Exercise 1 (3 points).** Write `inverted_index(keys)`, mapping each word to the sorted ids of the keys that
# contain it (a key counts once even if the word repeats), and `key_hashing(question, index, max_frequency,
# stop_words)`, returning the sorted ids (no repeats) of the memories whose key shares with the question a
# non-stop word that occurs in **fewer than** `max_frequency` keys.

# %% nbgrader={"schema_version": 3, "grade": false, "solution": true, "locked": false, "task": false, "grade_id": "key_hashing"}
def inverted_index(keys):
    """keys: list of token lists. Returns dict word -> increasing list of the ids of the keys containing it."""
    ### BEGIN SOLUTION
    index = {}
    for i, key in enumerate(keys):
        for word in set(key):
            index.setdefault(word, []).append(i)
    return index
    ### END SOLUTION


def key_hashing(question, index, max_frequency, stop_words=STOP_WORDS):
    """Sorted ids of the memories whose key shares a non-stop word of frequency < max_frequency with question."""
    ### BEGIN SOLUTION
    selected = set()
    for word in question:
        if word in stop_words:
            continue
        ids = index.get(word, [])
        if len(ids) < max_frequency:
            selected.update(ids)
    return sorted(selected)
    ### END SOLUTION


# %% nbgrader={"schema_version": 3, "grade": true, "solution": false, "locked": true, "task": false, "grade_id": "test_key_hashing", "points": 3}
# Visible checks: run this cell to test your answer (it reports and carries on when a check fails).
from mem_tutorial.grading.selfcheck import exercise

with exercise("5.1", "inverted_index and key_hashing"):
    toy_keys = [["Blade Runner", "directed_by"], ["Blade Runner", "release_year"], ["Ridley Scott", "directed_by_inv"],
                ["Alien", "directed_by"], ["the", "film", "Alien", "is", "scary", "Alien"], ["the", "film", "is", "long"]]
    toy_index = inverted_index(toy_keys)
    assert toy_index["Alien"] == [3, 4], toy_index.get("Alien")
    assert toy_index["directed_by"] == [0, 3]
    assert key_hashing(["who", "directed", "Alien", "?"], toy_index, 3) == [3, 4]
    assert key_hashing(["who", "directed", "Alien", "?"], toy_index, 2) == [], "frequency must be strictly below F"
    assert key_hashing(["the", "is"], toy_index, 100) == [], "stop words never select memories"
### BEGIN HIDDEN TESTS
import random as _random

_lib_index = hashing.build_inverted_index(toy_keys)
for _w, _ids in _lib_index.postings.items():
    assert toy_index[_w] == _ids, f"inverted_index[{_w!r}] should be {_ids}, got {toy_index.get(_w)}"
assert set(toy_index) == set(_lib_index.postings), "the index should have exactly the words of the keys"
assert key_hashing(["long", "film"], toy_index, 3, stop_words=()) == [4, 5]
assert key_hashing(["long", "film"], toy_index, 2, stop_words=()) == [5]
assert key_hashing(["Alien", "Alien", "scary"], toy_index, 10) == [3, 4], "ids must not repeat"
_sparse = [["x"]] * 3 + [["eta"]] + [["x"]] * 5 + [["zeta"]]  # "eta" only in key 3, "zeta" only in key 9
assert key_hashing(["zeta", "eta"], inverted_index(_sparse), 5) == [3, 9], "ids must come back sorted"
_rng = _random.Random(7)
_vocab = [f"w{i}" for i in range(12)] + ["the", "of"]
for _ in range(25):
    _keys = [_rng.choices(_vocab, k=_rng.randint(1, 5)) for _ in range(30)]
    _q = _rng.sample(_vocab, 4)
    _F = _rng.randint(1, 12)
    _lib = hashing.build_inverted_index(_keys)
    _idx = assert_own_work(inverted_index, hashing.build_inverted_index, _keys)
    assert {w: list(v) for w, v in _idx.items()} == _lib.postings, "inverted_index differs on random keys"
    for _stop in (STOP_WORDS, ()):
        _got = assert_own_work(key_hashing, hashing.key_hashing, _q, _idx, _F, _stop)
        assert list(_got) == hashing.key_hashing(_q, _lib, _F, _stop), f"key_hashing differs for F={_F}"
### END HIDDEN TESTS

# %% [markdown]
# From here on we use the library's tested version, `mem_tutorial.data.hashing` (its index also records each
# word's frequency). On the KB, a question about a film keeps only that film's handful of facts:

# %%
kb_memories = build_memories(kb, "kb")
kb_index = hashing.build_inverted_index([m.key for m in kb_memories])
q_tokens = tokenize(questions[0].text, kb)
selected = hashing.key_hashing(q_tokens, kb_index, max_frequency=100)
print(f"{questions[0].text!r}: {len(selected)} of {len(kb_memories)} memories")
for i in selected:
    print("  ", kb_memories[i].key, "->", kb_memories[i].value)

# %% [markdown]
# ## 3. Key addressing and value reading
#
# Each hashed memory is embedded: the key by $A\Phi_K(k_{h_i})$, the value by $A\Phi_V(v_{h_i})$, the
# question by $q = A\Phi_X(x)$, where $\Phi$ is a bag-of-words feature map and $A$ an embedding matrix. Then
#
# $$p_{h_i} = \mathrm{Softmax}\big(q \cdot A\Phi_K(k_{h_i})\big), \qquad o = \sum_i p_{h_i}\, A\Phi_V(v_{h_i}).$$
#
# The score is a plain dot product (no cosine, no key strength). In a batch, questions hash to different
# numbers of memories, so the keys are padded and a boolean `key_mask` [B, K] marks the real ones.
#
# **Exercise 2 (4 points).** Write `key_addressing(query [B, d], keys [B, K, d], key_mask [B, K])` returning the
# weights [B, K]: a softmax over the real keys only (padded keys get weight **exactly 0**; a row with no real key
# gets all zeros, not NaN), and `value_reading(weights [B, K], values [B, K, d])` returning $o$ [B, d].

# %% nbgrader={"schema_version": 3, "grade": false, "solution": true, "locked": false, "task": false, "grade_id": "key_addressing"}
def key_addressing(query, keys, key_mask):
    """p = softmax over the unmasked keys of q . k; masked keys get exactly 0; all-masked rows are all 0."""
    ### BEGIN SOLUTION
    scores = torch.einsum("bd,bkd->bk", query, keys)
    scores = scores.masked_fill(~key_mask, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=-1) * key_mask.to(scores.dtype)
    ### END SOLUTION


def value_reading(weights, values):
    """o = sum_i p_i v_i."""
    ### BEGIN SOLUTION
    return torch.einsum("bk,bkd->bd", weights, values)
    ### END SOLUTION


# %% nbgrader={"schema_version": 3, "grade": true, "solution": false, "locked": true, "task": false, "grade_id": "test_key_addressing", "points": 3}
# Visible checks: run this cell to test your answer (it reports and carries on when a check fails).
from mem_tutorial.grading.selfcheck import exercise

with exercise("5.2", "key_addressing"):
    _q = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    _k = torch.tensor([[[2.0, 5.0], [0.0, 1.0], [9.0, 9.0]]], dtype=torch.float64)
    _m = torch.tensor([[True, True, False]])
    _e = torch.exp(torch.tensor(2.0, dtype=torch.float64))
    assert_close(key_addressing(_q, _k, _m), torch.tensor([[_e / (_e + 1), 1 / (_e + 1), 0.0]], dtype=torch.float64),
                 "key_addressing on the hand-checked example")
### BEGIN HIDDEN TESTS
_g = torch.Generator().manual_seed(11)
for _B, _K, _d in [(3, 5, 4), (2, 7, 3)]:
    _q = torch.randn(_B, _d, generator=_g, dtype=torch.float64)
    _k = 2 * torch.randn(_B, _K, _d, generator=_g, dtype=torch.float64)
    _m = torch.rand(_B, _K, generator=_g) < 0.6
    _m[0] = True
    _m[-1] = False
    _ref = torch.zeros(_B, _K, dtype=torch.float64)
    for _b in range(_B):
        _s = _k[_b] @ _q[_b]
        _real = _m[_b]
        if _real.any():
            _z = torch.exp(_s[_real] - _s[_real].max())
            _ref[_b, _real] = _z / _z.sum()
    _got = assert_own_work(key_addressing, mem.key_addressing, _q, _k, _m)
    assert_close(_got, _ref, "key_addressing against a float64 reference")
    assert torch.all(_got[~_m] == 0), "masked keys must get exactly zero weight"
_qq = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
_kk = torch.zeros(2, 4, 3, dtype=torch.float64, requires_grad=True)
_out = key_addressing(_qq, _kk, torch.zeros(2, 4, dtype=torch.bool))
assert torch.isfinite(_out).all() and torch.all(_out == 0), "a row with no real key must give zeros, not NaN"
_out.sum().backward()
assert torch.isfinite(_qq.grad).all() and torch.isfinite(_kk.grad).all(), "gradients must stay finite"
### END HIDDEN TESTS

# %% nbgrader={"schema_version": 3, "grade": true, "solution": false, "locked": true, "task": false, "grade_id": "test_value_reading", "points": 1}
# Visible checks: run this cell to test your answer (it reports and carries on when a check fails).
from mem_tutorial.grading.selfcheck import exercise

with exercise("5.2", "value_reading"):
    _p = torch.tensor([[0.25, 0.75, 0.0]], dtype=torch.float64)
    _v = torch.tensor([[[4.0, 0.0], [0.0, 4.0], [100.0, 100.0]]], dtype=torch.float64)
    assert_close(value_reading(_p, _v), torch.tensor([[1.0, 3.0]], dtype=torch.float64), "value_reading")
### BEGIN HIDDEN TESTS
_g = torch.Generator().manual_seed(12)
_p = torch.softmax(torch.randn(3, 5, generator=_g, dtype=torch.float64), -1)
_v = torch.randn(3, 5, 4, generator=_g, dtype=torch.float64)
_ref = torch.stack([sum(_p[b, i] * _v[b, i] for i in range(5)) for b in range(3)])
assert_close(assert_own_work(value_reading, mem.value_reading, _p, _v), _ref, "value_reading on random weights")
### END HIDDEN TESTS

# %% [markdown]
# From here on we use the library's tested versions, `mem.key_addressing` and `mem.value_reading`.
#
# ## 4. Hops: the query update with $R_j$
#
# One read is often not enough: the model reads, folds what it read into its query, and reads again. The paper's
# update is
#
# $$q_{j+1} = R_j\,(q_j + o),$$
#
# with a learned $d \times d$ matrix $R_j$ per hop, acting on **column** vectors. After $H$ hops the answer is
# $\hat a = \arg\max_i \mathrm{Softmax}(q_{H+1}^\top B\Phi_Y(y_i))$ over the candidate answers $y_i$.
#
# **Exercise 3 (2 points).** Write `hop_update(query [B, d], read [B, d], R [d, d])` for batched row vectors.

# %% nbgrader={"schema_version": 3, "grade": false, "solution": true, "locked": false, "task": false, "grade_id": "hop_update"}
def hop_update(query, read, R):
    """q_{j+1} = R (q_j + o) for each row of the batch."""
    ### BEGIN SOLUTION
    return (query + read) @ R.transpose(0, 1)
    ### END SOLUTION


# %% nbgrader={"schema_version": 3, "grade": true, "solution": false, "locked": true, "task": false, "grade_id": "test_hop_update", "points": 2}
# Visible checks: run this cell to test your answer (it reports and carries on when a check fails).
from mem_tutorial.grading.selfcheck import exercise

with exercise("5.3", "hop_update"):
    _R = torch.tensor([[0.0, 1.0], [0.0, 0.0]], dtype=torch.float64)
    assert_close(hop_update(torch.tensor([[1.0, 2.0]], dtype=torch.float64), torch.tensor([[0.0, 1.0]], dtype=torch.float64),
                            _R), torch.tensor([[3.0, 0.0]], dtype=torch.float64), "hop_update (R acts on column vectors)")
### BEGIN HIDDEN TESTS
_g = torch.Generator().manual_seed(13)
_q, _o = torch.randn(4, 3, generator=_g, dtype=torch.float64), torch.randn(4, 3, generator=_g, dtype=torch.float64)
_R = torch.randn(3, 3, generator=_g, dtype=torch.float64)
_ref = torch.stack([_R @ (_q[b] + _o[b]) for b in range(4)])
assert_close(assert_own_work(hop_update, mem.hop_update, _q, _o, _R), _ref, "hop_update against R @ (q + o)")
### END HIDDEN TESTS

# %% [markdown]
# From here on we use `mem.hop_update`. A two-hop read, by hand, on random embeddings:

# %%
g = torch.Generator().manual_seed(0)
q1, keys, values = torch.randn(1, 4, generator=g), torch.randn(1, 5, 4, generator=g), torch.randn(1, 5, 4, generator=g)
mask = torch.tensor([[True, True, True, True, False]])
R = [torch.eye(4), torch.eye(4)]
q = q1
for j in range(2):
    p = mem.key_addressing(q, keys, mask)
    o = mem.value_reading(p, values)
    q = mem.hop_update(q, o, R[j])
    print(f"hop {j + 1}: p = {[round(x, 4) for x in p[0].tolist()]}")

# %% [markdown]
# **Written question (2 points).** MemN2N (Chapter 4) also has two embeddings per memory (input $m_i$ and
# output $c_i$). What does the Key-Value Memory Network's explicit key/value split buy over it? Give at least two
# concrete things it makes possible or easier, with an example from this chapter.

# %% [markdown] nbgrader={"schema_version": 3, "grade": true, "solution": true, "locked": false, "task": false, "grade_id": "written_kv_split", "points": 2}
# In MemN2N both embeddings encode the same text (the same sentence, embedded twice), so what is matched and what
# is returned are tied to one unit of storage. The key/value split lets the two be different objects chosen for
# their job. (1) Matching and answering use different features: a KB triple is stored with key = subject +
# relation and value = object, so the question "who directed X?" matches on the film and the relation while the
# returned vector is the director alone, not a bag that also contains the film. (2) Documents can be cut into
# windows whose key is the context around an entity and whose value is the entity itself (or the film's title),
# which is how prior knowledge about the task is put into the memory without changing the model. (3) Because the
# answer is read out of the values, the memory can be edited at test time (add a film, change a director) and
# the model answers from the new facts without retraining, and each answer can be traced back to the keys it
# attended to. (4) Keys also give a natural index for pre-selection (key hashing), so large memories stay cheap.

# %% [markdown]
# ## 5. The model, and training it
#
# `mem_tutorial.models.kvmemnn.KVMemNN` puts the pieces together: bag-of-words feature maps, key hashing,
# $H = 2$ hops of `key_addressing` / `value_reading` / `hop_update`, and candidate scoring
# $q_{H+1}^\top B\Phi_Y(y)$.
#
# **A design note (our choice, not the paper's).** Words (*directed*, *who*, `directed_by`) get learned
# embeddings; **entities** (films, people, years...) get *fixed* pseudo-random codes derived from their names,
# one dictionary for questions and keys and a second one for values and answers. Window + centre memories encode
# the window's centre entity with the second dictionary, as the paper does (Section 3.2: *"we double the size, D,
# of the dictionary and encode the center of the window and the value using the second dictionary"*). Random
# codes are nearly orthogonal, so the only thing the model *can* learn is
# how to read — which relation a question asks for — and never which person directed which film. We also score
# as answers only the entities present in the values of the hashed memories (the paper scores every entity; the
# benchmark reports both). Facts therefore live only in memory, which is what makes test-time editing work by
# construction (Section 8).

# %%
# NBVAL_IGNORE_OUTPUT
train_tok = [tokenize(q.text, kb) for q in train_q]
test_tok = [tokenize(q.text, kb) for q in test_q]
vocab = build_vocab(kb_memories, train_tok, kb.entities)
reader = movie_reader(kb, "kb", vocab)
seed_everything(0)
model = KVMemNN(len(vocab), word_dim=32, entity_dim=64, hops=2)
steps = pick(fast=150, full=1500)
t0 = time.perf_counter()
history = train_kvmemnn(model, reader, train_tok, [q.answers for q in train_q], steps=steps, desc="KV-MemNN (KB)")
print(f"{steps} steps in {time.perf_counter() - t0:.1f} s")

# %%
print(f"after {steps} steps: test hits@1 = {evaluate(model, reader, test_tok, [q.answers for q in test_q]):.4g}")

# %% [markdown]
# **Load or train.** The shipped checkpoint was trained by `benchmarks/kvmemnn.py` (1500 steps, same KB, seed
# 0). Set `RETRAIN = True` to train the full model yourself instead (a minute or two on a laptop CPU).

# %%
RETRAIN = False
if RETRAIN:
    seed_everything(0)
    kb_model = KVMemNN(len(vocab), word_dim=32, entity_dim=64, hops=2)
    train_kvmemnn(kb_model, reader, train_tok, [q.answers for q in train_q], steps=1500, desc="KV-MemNN (full)")
    kb_vocab, kb_reader = vocab, reader
else:
    kb_model, kb_vocab, payload = load_pretrained("kb")
    kb_reader = movie_reader(kb, "kb", kb_vocab)
kb_hits = evaluate(kb_model, kb_reader, test_tok, [q.answers for q in test_q])
print(f"trained KV-MemNN on KB memories: test hits@1 = {kb_hits:.4g}")

# %% [markdown]
# ## 6. KB versus documents: a hits@1 table like the paper's
#
# The paper's Table 2 compares memory representations on WikiMovies: KB 93.9, documents with window + centre
# encoding + title 76.2 (sentence-level and plain windows much lower). Below are our figures on the generated KB,
# from `benchmarks/kvmemnn.py` (see `benchmarks/RESULTS.md`; the last column is recomputed live from the
# shipped checkpoints). Documents are harder for the same reasons as in the paper: some sentences say "It" instead
# of the film's title, so key hashing cannot find them; a sentence holds several entities that its bag-of-words
# value cannot tell apart; a 7-token window often misses the film's title.
#
# The centre encoding adds little here: window + centre + title scores about the same as window + title (67.3
# against 66.9 in the benchmark, a difference another seed could undo). Its second-dictionary code does not match
# anything in the question; from the second hop on it matches the values the first hop read (q₂ = R₁(q₁ + o₁)
# carries second-dictionary codes), and the trained model does use it: it learned a centre scale of about 3, well
# above the 1 it started from (printed below). The paper's documents reach 76.2 with the same encoding.

# %%
docs_model, docs_vocab, docs_payload = load_pretrained("window+center+title")
docs_reader = movie_reader(kb, "window+center+title", docs_vocab)
docs_hits = evaluate(docs_model, docs_reader, test_tok, [q.answers for q in test_q])
bench = docs_payload["extra"].get("benchmark", {})
print(f"{'memory':34s} {'paper (WikiMovies)':>18s} {'ours (benchmark)':>17s} {'ours (live)':>12s}")
paper = {"kb": "93.9", "window+center+title": "76.2"}
live = {"kb": kb_hits, "window+center+title": docs_hits}
for kind, figures in bench.items():
    now = f"{100 * live[kind]:.1f}" if kind in live else ""
    print(f"{kind:34s} {paper.get(kind, '-'):>18s} {100 * figures['hits@1']:>17.1f} {now:>12s}")
center_scale = docs_model.log_scale.exp()[1].item()
print(f"learned scale of the window-centre codes: {center_scale:.2f} (initialised to 1)")

# %%
# Claims as checks: KB memories far ahead of documents; the paper's ordering sentence < window < window + title
# <= window + centre + title (within a point); the centre code used (scale well above its initial 1); the live
# figures are the benchmark's.
hits = {kind: figures["hits@1"] for kind, figures in bench.items()}
assert abs(live["kb"] - hits["kb"]) < 0.01 and abs(live["window+center+title"] - hits["window+center+title"]) < 0.01
assert hits["kb"] > hits["window+center+title"] + 0.2, hits
assert hits["sentence"] < hits["window"] < hits["window+title"] <= hits["window+center+title"] + 0.01, hits
assert abs(hits["window+center+title"] - hits["window+title"]) < 0.02, "centre encoding: 'about the same'"
assert center_scale > 2, f"the trained model should weight the centre codes up, scale {center_scale:.2f}"

# %% [markdown]
# ## 7. Which keys does it read?
#
# Every answer can be traced to the memories it read: here are the hashed keys and the key-addressing weights of
# each hop for one question.

# %%
q = question_for(kb, "starred_actors", kb.films[5])
result = answer(kb_model, kb_reader, tokenize(q.text, kb))
print("Q:", q.text, " correct:", q.answers)
order = result["weights"][0].argsort(descending=True)
for i in order[:6]:
    m = kb_reader.memories[result["memories"][int(i)]]
    print(f"  hop1 {result['weights'][0, i]:.4f}  hop2 {result['weights'][1, i]:.4f}  {m.key} -> {m.value}")
print("answer:", [(a, round(p, 4)) for a, p in result["answers"][:3]])

# %% [markdown]
# The three `starred_actors` keys get the same weight, about 1/3 each, yet one actor gets probability 1.0 and the
# other two 0.0. Both are what training asked for. The three keys hold the same words and the same film, so
# nothing can tell them apart: the read o is the mean of the three actors' value codes. Each candidate's score is
# its code (through B) against that mean, so the three actors score almost alike, apart from small cross-talk
# between nearly orthogonal codes; the learned scales make all scores so large that those small differences
# decide the softmax.
# The loss, $-\log \sum_{y\ 	ext{correct}} p(y)$, is satisfied as well by all the mass on one correct actor as by
# a third on each, so nothing pushes the model to share it; hits@1 counts the answer right. (To list *all* actors
# one would read the values the keys point to, not the softmax over answers.)

# %%
# Claim as check: equal weights on the three actor keys (each hop), one correct actor with (almost) all the mass.
top3 = result["weights"][:, order[:3]]
assert torch.allclose(top3, torch.full_like(top3, 1 / 3), atol=0.01), top3
best, p_best = result["answers"][0]
assert best in q.answers and p_best > 0.99, result["answers"][:3]

# %%
fig, ax = plt.subplots(figsize=(7, 2.2))
im = ax.imshow(result["weights"].numpy(), aspect="auto", cmap="Oranges", vmin=0, vmax=1)
ax.set_yticks([0, 1], ["hop 1", "hop 2"])
ax.set_xticks(range(len(result["memories"])),
              [" ".join(kb_reader.memories[i].key[1:]) for i in result["memories"]], rotation=60, fontsize=7)
ax.set_title("key addressing over the hashed memories")
fig.colorbar(im, ax=ax)
plt.show()

# %% [markdown]
# ## 8. Editing the memory at test time
#
# Add a film the model has never seen, with people it has never seen, and change the director of an existing
# film. We rebuild only the **memory** (and its index); the model's weights are not touched.

# %%
new_title = "The Quiet Lighthouse Returns"
edited = kb.with_film(new_title, {
    "directed_by": ["Nadia Q. Okonkwo"], "written_by": ["Tobias Wren"], "starred_actors": ["Maren Solberg"],
    "release_year": ["2027"], "in_language": ["Danish"], "has_genre": ["Comedy"], "has_tags": ["lighthouses"],
})
changed_film = kb.films[3]
old_director = kb.objects(changed_film, "directed_by")
new_director = kb.objects(kb.films[7], "directed_by")[0]
edited = edited.with_facts(changed_film, "directed_by", [new_director])
before = {k: v.clone() for k, v in kb_model.state_dict().items()}
edited_reader = movie_reader(edited, "kb", kb_vocab)
for relation, entity in [("directed_by", new_title), ("release_year", new_title), ("has_tags", new_title),
                         ("directed_by_inv", "Nadia Q. Okonkwo"), ("directed_by", changed_film)]:
    qq = question_for(edited, relation, entity)
    top = answer(kb_model, edited_reader, tokenize(qq.text, edited))["answers"][0]
    print(f"Q: {qq.text:55s} model: {top[0]:28s} KB: {', '.join(qq.answers)}")
print(f"(the director of {changed_film} was {old_director[0]} before the edit)")
assert all(torch.equal(v, before[k]) for k, v in kb_model.state_dict().items()), "no weight changed"

# %% [markdown]
# At scale: 50 new films and 50 changed directors, every edited fact asked once.

# %%
edited_kb, edit_questions = make_edits(kb, n_new_films=50, n_director_changes=50, seed=1)
edit_reader = movie_reader(edited_kb, "kb", kb_vocab)
edit_acc = evaluate(kb_model, edit_reader, [tokenize(x.text, edited_kb) for x in edit_questions],
                    [x.answers for x in edit_questions])
print(f"{len(edit_questions)} edited facts, answered correctly without retraining: {edit_acc:.4g}")

# %% [markdown]
# ## 9. Retrieve, then read: the road to RAG
#
# Strip away the embeddings and a KV-MemNN is a two-stage system: a cheap, symbolic **retriever** (the inverted
# index of key hashing) picks a few candidate memories out of a large store, and a learned **reader** (key
# addressing over those candidates, value reading, hops) turns them into an answer. Retrieval-augmented
# generation (RAG; Lewis et al. 2020) keeps exactly this shape, with a dense retriever (nearest neighbours over
# learned embeddings, Chapter 6) and a large language model as the reader. The property you just saw carries over:
# knowledge in the store can be added or corrected without touching the reader's weights, and every answer
# points at the passages it used.
#
# The same works with documents: write a new article and let the document model read it.

# %%
article_kb = kb.with_film("Northern Orchard Rising", {
    "directed_by": ["Ilse K. Varga"], "written_by": ["Ilse K. Varga"], "starred_actors": ["Basil Okafor"],
    "release_year": ["2028"], "in_language": ["Greek"], "has_genre": ["Western"], "has_tags": ["robots"],
})
print(" ".join(render_document(article_kb, "Northern Orchard Rising")))
doc_reader = movie_reader(article_kb, "window+center+title", docs_vocab)
for relation in ("directed_by", "release_year", "in_language"):
    qq = question_for(article_kb, relation, "Northern Orchard Rising")
    top = answer(docs_model, doc_reader, tokenize(qq.text, article_kb))["answers"][0]
    print(f"Q: {qq.text:50s} model: {top[0]:20s} true: {', '.join(qq.answers)}")

# %% [markdown]
# ## 10. Explorer
#
# Type a question (entities are matched by name, e.g. *who wrote The Quiet Lighthouse Returns?*) or pick one:
# you see how many memories key hashing kept, each hop's attention over the most attended keys, and the
# answers. It reads the edited KB of Section 8.

# %%
# NBVAL_IGNORE_OUTPUT
from mem_tutorial.viz.widgets import kv_memnn_explorer

examples = [question_for(edited, "directed_by", new_title).text] + [x.text for x in test_q[:20]]
explorer = kv_memnn_explorer(kb_model, edited_reader, edited, examples)
explorer

# %% [markdown]
# ## 11. Summary
#
# - A KV-MemNN memory slot is a **(key, value)** pair: keys are built to be *found*, values to be *returned*.
# - **Key hashing** (an inverted index with a frequency cut-off) pre-selects a few memories per question.
# - **Key addressing** is a softmax of dot products over the hashed keys (padding masked out), **value reading**
#   the weighted sum of values, and each hop updates the query with $q \leftarrow R_j(q + o)$.
# - On our generated world, KB memories are answered almost perfectly; documents are harder, as in the paper.
# - Because answers are read from memory, editing the memory changes the answers, with no retraining; every
#   answer is traceable to the keys it attended to. This retrieve-then-read shape is the one RAG systems use.
#
# ## Exercises
#
# 1. Change the key-hashing cut-off (`KVReader(max_frequency=...)` through `movie_reader`) and measure hits@1
#    and the number of memories read per question. When does hashing start to lose answers?
# 2. Train with `hops=1` and `hops=3`. Which question types need the second hop?
# 3. Window size: rebuild the document memories with `build_memories(kb, kind, window=11)` and retrain. Does a
#    wider window help the questions whose sentence says "It"?
# 4. Try `movie_reader(..., restrict_candidates=False)` (score every entity, as in the paper) and compare both
#    hits@1 and the edit accuracy.
#
# ## References
#
# - A. Miller, A. Fisch, J. Dodge, A.-H. Karimi, A. Bordes, J. Weston. *Key-Value Memory Networks for Directly
#   Reading Documents.* EMNLP 2016. arXiv:1606.03126.
# - S. Sukhbaatar, A. Szlam, J. Weston, R. Fergus. *End-To-End Memory Networks.* NeurIPS 2015 (Chapter 4).
# - P. Lewis et al. *Retrieval-Augmented Generation for Knowledge-Intensive NLP Tasks.* NeurIPS 2020.
