# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# @course-badges
#
# # Chapter 1 — Memory as attention
#
# *External memory in neural networks, built from scratch.* This chapter builds the four operations that every
# later model (NTM, DNC, MemN2N, KV-MemNN) is made of: **compare** a key with memory, **address** memory by
# content, **read** with a weighting and **write** with erase-then-add. You write each one yourself, then the
# notebook continues with the library's tested version, so a stuck exercise never blocks the rest.
#
# **Contents**
# 1. Why external memory?
# 2. Memory is a matrix
# 3. Exercise 1 — cosine similarity
# 4. Exercise 2 — content weighting with a key strength β
# 5. Explore: a key, a β, and where the attention goes
# 6. Exercise 3 — reading
# 7. Exercise 4 — erase-then-add writing
# 8. Training a differentiable key → value memory
# 9. Limitations and open problems
# 10. Summary · Exercises · References

# %% [markdown]
# ## 1. Why external memory?
#
# A recurrent network keeps everything it knows about the past in a fixed-size hidden state, and everything it
# knows about the world in its weights. Cognitive science distinguishes several kinds of memory, and memory-
# augmented networks borrow their vocabulary (an analogy, not a model of the brain):
#
# | kind of memory | in people | in this course |
# |---|---|---|
# | **working** memory | the few items held "in mind" while reasoning | the NTM/DNC memory matrix, rewritten at every step (Ch. 2–3) |
# | **episodic** memory | what happened, in order | the DNC's temporal links (Ch. 3); a story's sentences in MemN2N (Ch. 4) |
# | **semantic** memory | facts about the world | a knowledge base read by a key-value memory (Ch. 5) |
#
# "External memory" is **not** a fourth kind on that list. In machine learning it means storage outside the
# network's weights and hidden state, which the network reads and writes through attention. People do something
# similar when they put information into the world instead of their heads (notes, calendars, a search engine):
# cognitive science studies that as **cognitive offloading** (Risko & Gilbert 2016), not as a memory system. The
# closest human analogue of a document store searched by retrieval (Ch. 5–7) is a notebook you look things up in.
#
# What an *external*, addressable memory promises, and where you will see each promise kept:
#
# | promise | what it means | shown in |
# |---|---|---|
# | **capacity** | store more items by adding slots, not parameters | this chapter (train on 8 pairs, recall 32); Ch. 6 (10⁶ slots) |
# | **updating without retraining** | change a fact by writing memory, not by gradient descent | Ch. 5 (edit the movie KB), Ch. 6 |
# | **interpretability** | the attention over slots says what was read | this chapter's explorer; Ch. 4 (supporting facts) |
# | **parameters independent of memory size** | the same weights drive 16 or 10⁶ slots | Ch. 2 (longer sequences than in training), Ch. 6 |
# | **algorithmic generalisation** | learn a procedure (copy, sort) that works beyond the training lengths | Ch. 2–3 |
#
# The common thread is **attention**: a network reads memory through a soft, differentiable weighting over
# slots, so it can learn *where* to look by gradient descent.
#
# **Map of the course.** Chapters 1–6 build the classic memory-augmented networks and scale them; Chapter 7 takes
# the same ideas to the settings where external memory is used today.
#
# | topic | where it is treated |
# |---|---|
# | reading, writing and addressing by content | Ch. 1 |
# | location addressing; algorithmic tasks | Ch. 2 (NTM) |
# | memory management: usage, freeing, allocation, temporal order | Ch. 3 (DNC) |
# | multi-hop attention over a story; question answering | Ch. 4 (MemN2N) |
# | keys ≠ values; knowledge bases and documents; retrieve-then-read, the ancestor of RAG | Ch. 5 (KV-MemNN) |
# | cost at scale: sparse reads, approximate nearest-neighbour indexes, hierarchical memory, pretrained keys | Ch. 6 |
# | **memory for large language models**: a kNN-LM over a datastore, retrieve-then-generate | Ch. 7 (Memory for language models and beyond text) |
# | **memory beyond text**: a one-shot image memory (memory-augmented network, MANN) | Ch. 7 |
#
# Chapter 6 ends with a short survey of memory in language models and of multimodal memory; Chapter 7 is where you
# build them. Section 9 of this chapter lists the **limitations** of external memory and where the course shows
# each one.

# %% [markdown]
# ### Setup
# This cell works locally and in Colab. Where the course library is missing (Colab) it installs it from the
# published course (`COURSE_SOURCE`; to use another copy, set `MEM_TUTORIAL_SOURCE` in a cell above:
# `%env MEM_TUTORIAL_SOURCE=...`).

# %%
# NBVAL_IGNORE_OUTPUT
# @course-install

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

import mem_tutorial as mt
import mem_tutorial.memory as mem
from mem_tutorial.viz import plots

mt.seed_everything(0)
device = mt.get_device()
print("FAST mode:", mt.fast_mode())

# %% [markdown]
# ## 2. Memory is a matrix
#
# A memory is a matrix $M$ of $N$ slots (rows), each a word of $W$ numbers. We always work on a batch of $B$
# independent memories at once, so the tensors in this course have the shape `memory: [B, N, W]`. Here is one
# small memory with a few recognisable rows:

# %%
N, W = 8, 6
example = torch.zeros(N, W)
example[0, :3] = 1.0          # slot 0: "first half on"
example[1, 3:] = 1.0          # slot 1: "second half on"
example[2] = torch.linspace(-1, 1, W)
example[3] = -example[2]      # slot 3 points the opposite way from slot 2
example[4:] = torch.randn(4, W) * 0.5
plots.plot_memory(example, title="a memory M with N = 8 slots of W = 6")
plt.show()

# %% [markdown]
# ## 3. Exercise 1 — cosine similarity
#
# Content-based addressing starts by comparing a **key** $k$ with every row $M_i$. The NTM (Graves et al. 2014,
# Eq. 6) uses the cosine similarity
#
# $$K(k, M_i) = \frac{k \cdot M_i}{\lVert k \rVert\,\lVert M_i \rVert},$$
#
# which ignores the rows' lengths and measures only their direction: $1$ for the same direction, $0$ for
# orthogonal, $-1$ for opposite.
#
# Write `cosine_similarity(memory, key)` for a batch: `memory: [B, N, W]`, `key: [B, W]` → `[B, N]`.
# An all-zero row (or key) has no direction: return a finite value there (add a small `eps` to the norms),
# never NaN. Use tensor operations only — no Python loop over the batch or the slots.

# %% nbgrader={"schema_version": 3, "grade": false, "solution": true, "locked": false, "task": false, "grade_id": "cosine_similarity"}
def cosine_similarity(memory, key, eps=1e-8):
    """Cosine similarity between a key and every memory row.

    memory: [B, N, W], key: [B, W]  ->  [B, N]
    """
    ### BEGIN SOLUTION
    dot = (memory * key.unsqueeze(1)).sum(-1)                     # [B, N]
    norms = memory.norm(dim=-1) * key.norm(dim=-1, keepdim=True)  # [B, N]
    return dot / (norms + eps)
    ### END SOLUTION


# %% nbgrader={"schema_version": 3, "grade": true, "solution": false, "locked": true, "task": false, "grade_id": "test_cosine_similarity", "points": 2}
# Visible checks: run this cell to test your answer (it reports and carries on when a check fails).
from mem_tutorial.grading.selfcheck import exercise

with exercise("1.1", "cosine_similarity"):
    M = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [-3.0, 0.0]]])  # [B=1, N=4, W=2]
    k = torch.tensor([[2.0, 0.0]])                                        # [B=1, W=2]
    sim = cosine_similarity(M, k)
    assert sim.shape == (1, 4), f"expected shape [B, N] = [1, 4], got {list(sim.shape)}"
    assert torch.allclose(sim, torch.tensor([[1.0, 0.0, 2 ** -0.5, -1.0]]), atol=1e-4), sim
    assert not torch.isnan(cosine_similarity(torch.zeros(1, 3, 2), k)).any(), "an all-zero memory gave NaN"
### BEGIN HIDDEN TESTS
from mem_tutorial.grading.checks import assert_close, assert_own_work

_g = torch.Generator().manual_seed(101)
_M = torch.randn(3, 5, 4, generator=_g, dtype=torch.float64)
_k = torch.randn(3, 4, generator=_g, dtype=torch.float64)
_ref = torch.einsum("bnw,bw->bn", _M, _k) / (
    torch.sqrt((_M ** 2).sum(-1)) * torch.sqrt((_k ** 2).sum(-1)).unsqueeze(-1)
)
_got = assert_own_work(cosine_similarity, [mem.cosine_similarity], _M, _k)
assert_close(_got, _ref, "cosine_similarity on a random batch (B=3, N=5, W=4)", rtol=1e-4, atol=1e-5)
assert_close(cosine_similarity(_M, 7.5 * _k), _ref, "cosine_similarity must not depend on the key's length",
             rtol=1e-4, atol=1e-5)
assert_close(cosine_similarity(3.0 * _M, _k), _ref, "cosine_similarity must not depend on the rows' lengths",
             rtol=1e-4, atol=1e-5)
_Z = _M.clone(); _Z[1, 2] = 0.0
_z = cosine_similarity(_Z, _k)
assert torch.isfinite(_z).all() and abs(float(_z[1, 2])) < 1e-3, "an all-zero row must give a finite value near 0"
assert torch.isfinite(cosine_similarity(_M, torch.zeros_like(_k))).all(), "an all-zero key must not give NaN"
### END HIDDEN TESTS

# %% [markdown]
# From here on the notebook uses the library's tested version, `mem.cosine_similarity`, which also accepts
# several keys at once (`keys: [B, R, W]` → `[B, R, N]`, one row per read head):

# %%
sims = mem.cosine_similarity(example[None], example[None, :4])  # keys = the first 4 rows
print(sims.round(decimals=3)[0])

# %% [markdown]
# ## 4. Exercise 2 — content weighting with a key strength β
#
# Similarities are turned into a **weighting** — non-negative, summing to 1 over the slots — by a softmax
# sharpened by a key strength $\beta \ge 0$ (NTM Eq. 5; the DNC's $\mathcal{C}(M, k, \beta)$):
#
# $$w^c_i = \frac{\exp\big(\beta\, K(k, M_i)\big)}{\sum_j \exp\big(\beta\, K(k, M_j)\big)}.$$
#
# Write `content_weighting(memory, key, beta)`: `memory: [B, N, W]`, `key: [B, W]`, `beta: [B]` → `[B, N]`.
# Each batch element has its own β. Use the library's `mem.cosine_similarity` for the similarities, so that
# this exercise is graded on its own.

# %% nbgrader={"schema_version": 3, "grade": false, "solution": true, "locked": false, "task": false, "grade_id": "content_weighting"}
def content_weighting(memory, key, beta):
    """Content-based weighting over slots.

    memory: [B, N, W], key: [B, W], beta: [B]  ->  [B, N], rows sum to 1
    """
    ### BEGIN SOLUTION
    similarity = mem.cosine_similarity(memory, key)        # [B, N]
    return torch.softmax(beta.unsqueeze(-1) * similarity, dim=-1)
    ### END SOLUTION


# %% nbgrader={"schema_version": 3, "grade": true, "solution": false, "locked": true, "task": false, "grade_id": "test_content_weighting", "points": 2}
# Visible checks: run this cell to test your answer (it reports and carries on when a check fails).
from mem_tutorial.grading.selfcheck import exercise

with exercise("1.2", "content_weighting"):
    M = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]])
    k = torch.tensor([[1.0, 0.0]])
    w = content_weighting(M, k, torch.tensor([1.0]))
    assert w.shape == (1, 3), f"expected shape [B, N] = [1, 3], got {list(w.shape)}"
    assert torch.allclose(w.sum(-1), torch.ones(1)), "a weighting must sum to 1 over the slots"
    e = torch.exp(torch.tensor([1.0, 0.0, -1.0]))
    assert torch.allclose(w[0], e / e.sum(), atol=1e-4), w
### BEGIN HIDDEN TESTS
from mem_tutorial.grading.checks import assert_close, assert_distribution, assert_own_work

_g = torch.Generator().manual_seed(202)
_M = torch.randn(4, 6, 5, generator=_g, dtype=torch.float64)
_k = torch.randn(4, 5, generator=_g, dtype=torch.float64)
_beta = torch.tensor([0.0, 0.5, 3.0, 20.0], dtype=torch.float64)
_cos = torch.einsum("bnw,bw->bn", _M, _k) / (_M.norm(dim=-1) * _k.norm(dim=-1, keepdim=True))
_ref = torch.exp(_beta[:, None] * _cos) / torch.exp(_beta[:, None] * _cos).sum(-1, keepdim=True)
_got = assert_own_work(content_weighting, [mem.content_weighting], _M, _k, _beta)
assert_distribution(_got, "content_weighting (each row over the N slots)")
assert_close(_got, _ref, "content_weighting with a different beta per batch element", rtol=1e-4, atol=1e-6)
assert_close(content_weighting(_M, _k, torch.zeros(4, dtype=torch.float64)),
             torch.full((4, 6), 1 / 6, dtype=torch.float64), "beta = 0 must give a uniform weighting")
_sharp = content_weighting(_M, _k, torch.full((4,), 1e4, dtype=torch.float64))
assert torch.equal(_sharp.argmax(-1), _cos.argmax(-1)) and (_sharp.max(-1).values > 0.99).all(), \
    "a very large beta must focus on the most similar slot"
### END HIDDEN TESTS

# %% [markdown]
# **Question (written, graded by your instructor).** What happens to the content weighting as β → ∞, and as
# β → 0? Why might a network want to choose β itself at every step rather than use a fixed value?

# %% [markdown] nbgrader={"schema_version": 3, "grade": true, "solution": true, "locked": false, "task": false, "grade_id": "written_beta", "points": 2}
# As β → ∞ the softmax approaches a one-hot (argmax) on the most similar slot: the read becomes a hard lookup of
# one row (ties share the weight), and the gradient to the other slots vanishes. As β → 0 every slot gets weight
# 1/N whatever the key: the read is the mean of memory and carries no information about the key. A learned,
# per-step β lets the network be precise when the key is reliable (retrieve exactly one item) and spread its
# attention when it is uncertain or wants to blend several items; it also controls how much gradient reaches
# competing slots while learning.

# %% [markdown]
# ## 5. Explore: a key, a β, and where the attention goes
#
# Pick a memory row; the key is a noisy copy of it. Move β and watch the weighting sharpen and the read vector
# converge to the row. (The sliders need a live kernel; in a static view you see the starting state.)

# %%
# NBVAL_IGNORE_OUTPUT
from mem_tutorial.viz.widgets import content_addressing_explorer

content_addressing_explorer(example, noise=0.3)

# %% [markdown]
# The same thing without widgets — the weighting for three values of β:

# %%
key = example[2] + 0.3 * torch.randn(W)
fig, axes = plt.subplots(1, 3, figsize=(11, 2.6), sharey=True)
for ax, beta in zip(axes, [0.5, 5.0, 50.0]):
    w = mem.content_weighting(example[None], key[None], torch.tensor([beta]))[0]
    plots.plot_weighting(w, ax=ax, title=f"β = {beta}")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 6. Exercise 3 — reading
#
# A read with weighting $w$ returns the weighted sum of the rows (NTM Eq. 2):
#
# $$r = \sum_i w_i\, M_i .$$
#
# Write `read(memory, weights)`: `memory: [B, N, W]`, `weights: [B, N]` → `[B, W]`.

# %% nbgrader={"schema_version": 3, "grade": false, "solution": true, "locked": false, "task": false, "grade_id": "read"}
def read(memory, weights):
    """Weighted read. memory: [B, N, W], weights: [B, N]  ->  [B, W]"""
    ### BEGIN SOLUTION
    return (weights.unsqueeze(-1) * memory).sum(dim=1)
    ### END SOLUTION


# %% nbgrader={"schema_version": 3, "grade": true, "solution": false, "locked": true, "task": false, "grade_id": "test_read", "points": 1}
# Visible checks: run this cell to test your answer (it reports and carries on when a check fails).
from mem_tutorial.grading.selfcheck import exercise

with exercise("1.3", "read"):
    M = torch.tensor([[[1.0, 2.0, 3.0], [10.0, 20.0, 30.0]]])  # [B=1, N=2, W=3]
    r = read(M, torch.tensor([[0.25, 0.75]]))
    assert r.shape == (1, 3), f"expected shape [B, W] = [1, 3], got {list(r.shape)}"
    assert torch.allclose(r, torch.tensor([[7.75, 15.5, 23.25]])), r
### BEGIN HIDDEN TESTS
from mem_tutorial.grading.checks import assert_close, assert_own_work

_g = torch.Generator().manual_seed(303)
_M = torch.randn(3, 7, 4, generator=_g, dtype=torch.float64)
_w = torch.softmax(torch.randn(3, 7, generator=_g, dtype=torch.float64), dim=-1)
_ref = torch.stack([sum(_w[b, i] * _M[b, i] for i in range(7)) for b in range(3)])
_got = assert_own_work(read, [mem.read], _M, _w)
assert_close(_got, _ref, "read on a random batch (B=3, N=7, W=4)")
_onehot = torch.zeros(3, 7, dtype=torch.float64); _onehot[:, 5] = 1.0
assert_close(read(_M, _onehot), _M[:, 5], "a one-hot weighting must return exactly that row")
### END HIDDEN TESTS

# %% [markdown]
# ## 7. Exercise 4 — erase-then-add writing
#
# A write head emits a weighting $w$, an **erase** vector $e \in [0, 1]^W$ and an **add** vector $a$. Each slot is
# first partly erased, then added to (NTM Eq. 3–4):
#
# $$\tilde M_i = M_i \circ (1 - w_i\, e), \qquad M'_i = \tilde M_i + w_i\, a .$$
#
# Write `write(memory, weights, erase, add)`: `memory: [B, N, W]`, `weights: [B, N]`, `erase: [B, W]`,
# `add: [B, W]` → the new memory `[B, N, W]`. Return a new tensor; do not modify `memory` in place.

# %% nbgrader={"schema_version": 3, "grade": false, "solution": true, "locked": false, "task": false, "grade_id": "write"}
def write(memory, weights, erase, add):
    """Erase-then-add write. memory: [B, N, W], weights: [B, N], erase: [B, W], add: [B, W] -> [B, N, W]"""
    ### BEGIN SOLUTION
    w = weights.unsqueeze(-1)                        # [B, N, 1]
    erased = memory * (1 - w * erase.unsqueeze(1))   # [B, N, W]
    return erased + w * add.unsqueeze(1)
    ### END SOLUTION


# %% nbgrader={"schema_version": 3, "grade": true, "solution": false, "locked": true, "task": false, "grade_id": "test_write", "points": 2}
# Visible checks: run this cell to test your answer (it reports and carries on when a check fails).
from mem_tutorial.grading.selfcheck import exercise

with exercise("1.4", "write"):
    M = torch.ones(1, 3, 2)
    new = write(M, torch.tensor([[0.0, 1.0, 0.5]]), torch.tensor([[1.0, 0.0]]), torch.tensor([[5.0, 5.0]]))
    assert new.shape == (1, 3, 2), f"expected shape [B, N, W] = [1, 3, 2], got {list(new.shape)}"
    assert torch.allclose(new, torch.tensor([[[1.0, 1.0], [5.0, 6.0], [3.0, 3.5]]])), new
    assert torch.equal(M, torch.ones(1, 3, 2)), "write must not modify the memory it was given"
### BEGIN HIDDEN TESTS
from mem_tutorial.grading.checks import assert_close, assert_own_work

_g = torch.Generator().manual_seed(404)
_M = torch.randn(2, 5, 3, generator=_g, dtype=torch.float64)
_w = torch.softmax(torch.randn(2, 5, generator=_g, dtype=torch.float64), dim=-1)
_e = torch.rand(2, 3, generator=_g, dtype=torch.float64)
_a = torch.randn(2, 3, generator=_g, dtype=torch.float64)
_ref = _M.clone()
for _b in range(2):
    for _i in range(5):
        _ref[_b, _i] = _M[_b, _i] * (1 - _w[_b, _i] * _e[_b]) + _w[_b, _i] * _a[_b]
_M0 = _M.clone()
_got = assert_own_work(write, [mem.write], _M, _w, _e, _a)
assert torch.equal(_M, _M0), "write must not modify the memory it was given"
assert_close(_got, _ref, "erase-then-add write on a random batch (B=2, N=5, W=3)")
_onehot = torch.zeros(2, 5, dtype=torch.float64); _onehot[:, 1] = 1.0
_cleared = write(_M, _onehot, torch.ones(2, 3, dtype=torch.float64), torch.zeros(2, 3, dtype=torch.float64))
assert_close(_cleared[:, 1], torch.zeros(2, 3, dtype=torch.float64), "e = 1 with a one-hot weighting must clear the slot")
assert_close(_cleared[:, [0, 2, 3, 4]], _M[:, [0, 2, 3, 4]], "slots with zero weight must not change")
_replaced = write(_M, _onehot, torch.ones(2, 3, dtype=torch.float64), _a)
assert_close(_replaced[:, 1], _a, "e = 1, one-hot w: the slot must hold exactly the add vector (erase before add)")
### END HIDDEN TESTS

# %% [markdown]
# **Question (written, graded by your instructor).** Why does the write erase *before* it adds? What would go
# wrong with add-then-erase, for example when the network wants to replace the content of one slot?

# %% [markdown] nbgrader={"schema_version": 3, "grade": true, "solution": true, "locked": false, "task": false, "grade_id": "written_erase", "points": 1}
# Erasing first clears (part of) the old content and then writes the new one, so with w_i = 1 and e = 1 the slot
# ends up holding exactly a: old content is replaced in a single step. With add-then-erase, the erase would also
# remove what was just added (with e = 1 the slot would end up empty, and with partial e the new content would be
# scaled down by (1 - w e)), so a slot could not be cleanly overwritten and writing and forgetting would interfere.
# The two gates stay separable only in the erase-then-add order: e controls forgetting the past, a controls what
# is stored.

# %% [markdown]
# From here on we use the library's `mem.read` and `mem.write`, which also handle several heads at once.
# A quick check of the write: replace slot 4 of the example memory.

# %%
one_hot = F.one_hot(torch.tensor([4]), N).float()
new_memory = mem.write(example[None], one_hot, torch.ones(1, W), torch.full((1, W), 0.9))[0]
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 2.8))
plots.plot_memory(example, ax=ax1, title="before")
plots.plot_memory(new_memory, ax=ax2, title="after writing 0.9s to slot 4 (e = 1)")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 8. Training a differentiable key → value memory
#
# Now the four operations together, trained end to end. Each episode holds $K$ random binary (key, value) pairs.
# The model (`mem_tutorial.models.associative.AssociativeMemory`) encodes each pair into a word and **writes** it
# to its own slot; it encodes the query key into a read key and a strength β, **addresses by content**, **reads**,
# and decodes the value. The encoders are learned: the network must learn to put the key into the stored word
# in a form that its read key can find. Here is all of it:

# %%
import inspect

from mem_tutorial.models.associative import AssociativeMemory
from mem_tutorial.tasks.kv_recall import kv_recall_batch
from mem_tutorial.train import train

print(inspect.getsource(AssociativeMemory.store))
print(inspect.getsource(AssociativeMemory.recall))

# %% [markdown]
# Training uses the library loop (`mem_tutorial.train.train`): a progress bar, and a loss plot that updates while
# it runs. In FAST mode (CI) it is a short run; otherwise a longer one. It uses the GPU when there is one.

# %%
config = dict(pairs=8, key_bits=8, value_bits=8, word_size=32, batch_size=32, lr=3e-3)
steps = mt.pick(fast=600, full=5000)

mt.seed_everything(1)
model = AssociativeMemory(config["key_bits"], config["value_bits"], config["word_size"]).to(device)
optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"])
data_gen = torch.Generator().manual_seed(1)


def step(i):
    batch = kv_recall_batch(config["batch_size"], config["pairs"], config["key_bits"], config["value_bits"],
                            generator=data_gen, device=device)
    logits = model(batch.keys, batch.values, batch.query)
    loss = F.binary_cross_entropy_with_logits(logits, batch.target)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


history = train(step, steps, desc="key → value memory", log_every=10)
print(f"final loss (mean of the last 5 logged): {sum(history['loss'][-5:]) / 5:.3f}")

# %% [markdown]
# **Recall accuracy** — the fraction of queries whose value comes back with every bit right. The model was
# trained with 8 pairs per episode; because its parameters do not depend on the number of slots, the *same*
# weights can be asked to hold 16 or 32 pairs — the capacity promise from Section 1 (accuracy degrades gently as
# the slots crowd together).

# %%
@torch.no_grad()
def recall_accuracy(model, pairs, n=1000, seed=123):
    batch = kv_recall_batch(n, pairs, config["key_bits"], config["value_bits"],
                            generator=torch.Generator().manual_seed(seed), device=device)
    predicted = model(batch.keys, batch.values, batch.query) > 0
    return (predicted == batch.target.bool()).all(-1).float().mean().item()


accuracy = {pairs: recall_accuracy(model, pairs) for pairs in (8, 16, 32)}
for pairs, acc in accuracy.items():
    print(f"recall accuracy with {pairs:2d} stored pairs: {acc:.2f}")

# %%
# Claims as checks: the text above says the weights trained on 8 pairs still recall most of 16 and 32 pairs, and
# that accuracy falls gently (not to chance, 2^-8 for 8 value bits) as the slots crowd together.
assert accuracy[8] >= 0.9, f"trained on 8 pairs, recall should be high: {accuracy[8]:.2f}"
assert accuracy[8] >= accuracy[16] - 0.02 >= accuracy[32] - 0.04, f"accuracy should fall with more pairs: {accuracy}"
assert accuracy[32] >= 0.7, f"'degrades gently': 32 pairs (4x the training load) should keep >= 0.7, got {accuracy[32]:.2f}"

# %% [markdown]
# Where does the trained model look? For one episode, the content weighting over the 8 slots for each of the 8
# possible queries: a near-diagonal matrix means each key finds its own slot.

# %%
with torch.no_grad():
    batch = kv_recall_batch(1, 8, generator=torch.Generator().manual_seed(7), device=device)
    memory = model.store(batch.keys, batch.values)                       # [1, 8, W]
    queries = batch.keys[0]                                              # [8, Dk]: ask for every key
    _, weights = model.recall(memory.expand(8, -1, -1), queries)         # [8, N]
plots.plot_weightings(weights.cpu(), title="content weighting: query (x) → slot (y)")
plt.xlabel("query = key of pair")
plt.show()

# %%
# Claim as check: "near-diagonal" — each query's largest weight is on its own pair's slot, and holds most of the mass.
own_slot = weights.argmax(-1).cpu() == torch.arange(8)
diagonal_mass = weights.diagonal().mean().item()
print(f"queries whose largest weight is their own slot: {int(own_slot.sum())}/8; mean weight on the own slot: "
      f"{diagonal_mass:.2f}")
assert own_slot.sum() >= 7 and diagonal_mass > 0.5, (own_slot, diagonal_mass)

# %% [markdown]
# ## 9. Limitations and open problems
#
# External memory keeps the promises of Section 1 on the tasks of this course, at a price. These are the known
# limitations, and where the course lets you see each one for yourself (Chapter 6 comes back to this list in its
# section *Where the limitations stand*):
#
# | limitation | what it means | where you see it |
# |---|---|---|
# | **training complexity** | many interacting parts (controller, heads, gates, addressing stages) trained together through long sequences; results depend on optimiser, clipping, curricula and initialisation | Ch. 2: the NTM needs Adam, gradient clipping and a learning-rate cut once converged; the LSTM baseline needs a curriculum over lengths. Ch. 4: MemN2N needs a linear start. Ch. 6: sparsity does not remove it |
# | **instability** | the same recipe succeeds or fails with the random seed, and a converged model can relapse | Ch. 2 (`benchmarks/RESULTS.md`, Chapter 2): without the learning-rate cut, 2 of 5 NTM seeds relapse from < 0.1 to 33–35 wrong bits per sequence after converging. Ch. 3: the DNC-vs-NTM learning curves, one per seed. Ch. 4: the same MemN2N recipe gives 0 % or 19 % test error on bAbI task 20 and 38–50 % on task 3 depending on the seed (`benchmarks/RESULTS.md`, Chapter 4) |
# | **memory management** | deciding what to write where, what to keep and what to free, is itself learned and can fail | Ch. 3: usage, free gates and allocation; a DNC reusing a memory too small for its task. Ch. 6: a conversational memory that must choose what to recall |
# | **scalability** | a dense read or write touches all N slots: O(N·W) per step, and the DNC's link matrix O(N²) | Ch. 3 (link matrix); Ch. 6: dense vs sparse reads, approximate nearest-neighbour indexes, hierarchical memory |
# | **computational overhead** | many small operations per time step, run one step after another; a memory step costs more than an LSTM step of similar size | Ch. 2: training is step by step through every sequence (compiling the step makes it about 2.7× faster); Ch. 3, Exercise 4: the time of one DNC training step against N; Ch. 6: the time of a dense step against N |
# | **limited interpretability** | attention weights show *where* a model read, not *why*, and a trained model may not use its gates the way the design suggests | this chapter's explorer and Ch. 2's read/write weightings (clear on copy); Ch. 3: the trained DNC's free gate and read modes differ from the textbook story; Ch. 4: attention on the supporting facts does not guarantee a right answer |
# | **mostly simple benchmark tasks** | most results are on synthetic tasks: copy, sorting, associative recall, bAbI's generated stories | Ch. 2–4 use exactly these; Ch. 5 a generated WikiMovies-style world; Ch. 6–7 the first steps towards real text |
# | **little use in large language models** | today's language models keep their "working memory" in the attention over a long context (the key-value cache), not in an NTM-style memory matrix | Ch. 6 (*What comes next*); Ch. 7: a kNN-LM, where an external datastore does help a language model |
# | **retrieval-augmented generation replaced many applications** | for question answering over documents, retrieving text with a pretrained encoder and letting a language model read it (RAG) replaced trained memory networks | Ch. 5 (retrieve-then-read, the ancestor of RAG); Ch. 6 (pretrained keys beat learned keys on documents); Ch. 7 (retrieve-then-generate) |
#
# Open problems include learning what to forget, memories that grow without slowing down, training that does not
# depend on the seed, and combining a learned memory with a pretrained language model.

# %% [markdown]
# ## 10. Summary
#
# - A memory is a matrix `[B, N, W]`; a head interacts with it through a **weighting** over the $N$ slots.
# - **Content addressing**: cosine similarity of a key with every row, sharpened by β and normalised by a softmax.
# - **Read**: the weighted sum of rows. **Write**: erase-then-add, so a slot can be replaced in one step.
# - All four operations are differentiable: a network learns where to write and where to read by gradient
#   descent, and its parameters do not grow with the memory.
# - Chapter 2 adds **location-based addressing** (interpolation, shifts, sharpening) on top of content weighting
#   to build the Neural Turing Machine.
#
# ## Exercises (not graded)
# 1. Replace the cosine similarity in `AssociativeMemory` by a plain dot product (`β · k·M_i`). Does training
#    still work? What changes when the stored words grow in norm?
# 2. Train with `pairs=16`. How does recall at 32 pairs change? Plot accuracy against the number of pairs.
# 3. Fix β = 1 (remove `self.strength`). What happens to accuracy, and why (see your answer on β)?
# 4. Make the queries noisy (flip one key bit). Which part of the model gives robustness to noise?
#
# ## References
# - A. Graves, G. Wayne, I. Danihelka. *Neural Turing Machines.* arXiv:1410.5401, 2014. (Eq. 2–6)
# - A. Graves et al. *Hybrid computing using a neural network with dynamic external memory.* Nature 538,
#   471–476, 2016. (Methods: content-based addressing, reading and writing)
# - S. Sukhbaatar, A. Szlam, J. Weston, R. Fergus. *End-To-End Memory Networks.* NeurIPS 2015.
# - D. Bahdanau, K. Cho, Y. Bengio. *Neural Machine Translation by Jointly Learning to Align and Translate.*
#   ICLR 2015. (soft attention)
# - E. F. Risko, S. J. Gilbert. *Cognitive Offloading.* Trends in Cognitive Sciences 20(9), 676–688, 2016.
