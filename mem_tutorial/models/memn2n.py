"""End-To-End Memory Networks (Sukhbaatar, Szlam, Weston & Fergus 2015, arXiv:1503.08895), for bAbI.

Equations (Section 2 of the paper; symbols B batch, N memory slots, J words per sentence, d embedding size,
V vocabulary, H hops, T rows of the temporal matrices):

* memory input  m_i = sum_j l_j * A x_ij + T_A(i)                (Sec. 4.1, PE; BoW: l_j = 1)
* memory output c_i = sum_j l_j * C x_ij + T_C(i)
* attention     p_i = Softmax(u^T m_i)                            (Eq. 1)
* response      o   = sum_i p_i c_i                               (Eq. 2)
* next query    u^{k+1} = u^k + o^k                               (Sec. 2.2; layer-wise: H u^k + o^k;
                                                                  ``nonlinearity="relu"``: ReLU(u^k + o^k))
* answer        a_hat = Softmax(W (o^K + u^K)) = Softmax(W u^{K+1}) (Eq. 3)

Position encoding (Sec. 4.1): l_kj = (1 - j/J) - (k/d)(1 - 2j/J), with 1-based word index j = 1..J and
embedding index k = 1..d. **Paper vs. official code.** The reference Matlab code (facebook/MemNN,
MemN2N-babi-matlab/build_model.m) uses a different matrix, l_kj = 1 + 4 (k - (d+1)/2)(j - (J+1)/2) / (d J),
and takes J as the padded sentence length (plus one slot for its "time word"), not each sentence's length.
:func:`position_encoding` is the **paper's formula**; the official one is :func:`position_encoding_official`
(``MemN2NConfig(pe_formula="official")``). Writing x = j/J and y = k/d, the paper's matrix is
1/2 + 2(x - 1/2)(y - 1/2) and the official one about 1 + 4(x - 1/2)(y - 1/2): the same shape, **twice as large**.
The factor matters for training (it scales every score u^T m_i by about 4): with the paper's matrix our models
stayed at chance on the yes/no and induction tasks 6, 16 and 18 (benchmarks/RESULTS.md), so the paper's
numbers come from the official matrix, which :func:`paper_config` (the benchmarks' and notebook's
architecture) uses. Like the official code we use the padded length J for every sentence, so a word's weights
do not depend on the sentence's length.

Other conventions (each noted where it is implemented):

* memory slot 0 is the oldest kept sentence; the temporal index of a memory is its *age* (0 = most recent),
  as in the official code, which numbers time words from the most recent sentence;
* temporal encoding: the paper adds T_A(i) to m_i (our default); the official code appends a "time word" to each
  memory sentence and builds its PE matrix for J+1 positions, so T_A(i) is weighted by the matrix's last row and
  the words by its first J rows (``MemN2NConfig.time_word=True``, :func:`time_word_encoding`). Over the 20
  single tasks, 3 seeds, it made no difference beyond seed noise (benchmarks/RESULTS.md), so
  :func:`paper_config` keeps the paper's form;
* unfilled memory slots: by default (``MemN2NConfig.slots=None``) they are masked and get exactly zero
  attention. The official code instead has a memory of fixed size min(50, longest story) whose unfilled slots
  hold only nil words: m_i = c_i = 0, score 0, and they take a share of the softmax while returning nothing
  (``slots=N``, :func:`memory_attention`'s ``empty``). That share is what lets |o| shrink when no memory
  matches the question, and the yes/no tasks (6, 9, 10, 18) need it; :func:`paper_config` uses it. The paper
  does not discuss padding;
* random noise (RN, Sec. 4.1, "add 10 % of empty memories"): as in the official code (train.m), each story
  gets ``nblank ~ U{0..ceil(0.1 n)}`` empty slots interleaved at random, which spreads the n sentences' ages
  over 0..n+nblank-1 (:func:`random_noise_ages`);
* linear start (LS, Sec. 4.2): the memory softmaxes are removed (p_i = u^T m_i) for the first epochs and put
  back afterwards; the final answer softmax is always there;
* the nil word (index 0) has an all-zero embedding in every matrix, restored after every update. The official
  code also looks the nil word up (padding positions, empty slots), so its nil rows receive a gradient that
  its per-matrix clipping counts before the row is zeroed; ``TrainConfig(nil_gradient=True)`` reproduces that
  (:func:`_nil_terms`), and joint training needs it for task 16 (:func:`paper_recipe`).

The training recipe (:func:`paper_recipe`, :func:`fit`) is Sec. 4.2: SGD without momentum, lr 0.01 halved
every 25 epochs up to 100 (LS runs start at 0.005), batch 32 with the loss *summed* over the batch, gradients
rescaled to norm 40 when larger, weights from N(0, 0.1), 10 % of the training data held out; joint training
on the 20 tasks: 60 epochs, lr halved every 15. Where the paper leaves details open we follow the official
code: LS lasts 20 epochs (30 in joint training; optionally until the validation loss stops decreasing, the
paper's wording), the temporal matrices are tied like the word embeddings, and gradients are clipped matrix by
matrix (by each matrix's 2-norm, nn/Weight.m) rather than over all parameters at once (``TrainConfig.clip``).
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from mem_tutorial.memory._shapes import check_shape
from mem_tutorial.memory.access import read
from mem_tutorial.train import History

NIL_INDEX = 0
INIT_STD = 0.1  # Sec. 4.2: "weights were initialized randomly from a Gaussian distribution with ... sigma = 0.1"
RANDOM_NOISE = 0.1  # Sec. 4.1: "randomly add 10% of empty memories to the stories"


# Sukhbaatar et al. 2015, Table 1: test error (%) per bAbI task (1k training questions), 3 hops, PE LS RN,
# adjacent tying. "joint": one model for the 20 tasks (mean 12.4, 11 tasks with error > 5 %); "single": one
# model per task (mean 13.9, 11 failed). The official Matlab code's own re-run gives 13.8 (single) and 12.4
# (joint) means.
PAPER_ERRORS = {
    "joint_pe_ls_rn": {1: 0.0, 2: 11.4, 3: 21.9, 4: 13.4, 5: 14.4, 6: 2.8, 7: 18.3, 8: 9.3, 9: 1.9, 10: 6.5,
                       11: 0.3, 12: 0.1, 13: 0.2, 14: 6.9, 15: 0.0, 16: 2.7, 17: 40.4, 18: 9.4, 19: 88.0, 20: 0.0},
    "single_pe_ls_rn": {1: 0.0, 2: 8.3, 3: 40.3, 4: 2.8, 5: 13.1, 6: 7.6, 7: 17.3, 8: 10.0, 9: 13.2, 10: 15.1,
                        11: 0.9, 12: 0.2, 13: 0.4, 14: 1.7, 15: 0.0, 16: 1.3, 17: 51.0, 18: 11.1, 19: 82.8, 20: 0.0},
}


# ------------------------------------------------------------------------------------------- mechanisms


def position_encoding(J: int, d: int, *, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """Position encoding matrix of Sukhbaatar et al. 2015, Sec. 4.1: l_kj = (1 - j/J) - (k/d)(1 - 2j/J).

    Indices are 1-based as in the paper: j = 1..J (word position), k = 1..d (embedding dimension).

    Returns:
        [J, d] tensor L with ``L[j-1, k-1] = l_kj``; a sentence is encoded as sum_j L[j] * A x_j.
    """
    if J < 1 or d < 1:
        raise ValueError(f"position_encoding needs J >= 1 and d >= 1, got J={J}, d={d}")
    j = torch.arange(1, J + 1, dtype=dtype, device=device).unsqueeze(1)  # [J, 1]
    k = torch.arange(1, d + 1, dtype=dtype, device=device).unsqueeze(0)  # [1, d]
    return (1 - j / J) - (k / d) * (1 - 2 * j / J)


def position_encoding_official(J: int, d: int, *, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """The official Matlab code's variant (build_model.m): l_kj = 1 + 4 (k - (d+1)/2)(j - (J+1)/2) / (d J).

    Returns:
        [J, d], indexed like :func:`position_encoding`.
    """
    if J < 1 or d < 1:
        raise ValueError(f"position_encoding_official needs J >= 1 and d >= 1, got J={J}, d={d}")
    j = torch.arange(1, J + 1, dtype=dtype, device=device).unsqueeze(1)
    k = torch.arange(1, d + 1, dtype=dtype, device=device).unsqueeze(0)
    return 1 + 4 * (k - (d + 1) / 2) * (j - (J + 1) / 2) / (d * J)


def sentence_representation(words: torch.Tensor, embedding: torch.Tensor, encoding: torch.Tensor | None = None
                            ) -> torch.Tensor:
    """Embed sentences: sum_j l_j * E x_j (PE, Sec. 4.1) or sum_j E x_j (bag of words, ``encoding=None``).

    Args:
        words: [..., J] word indices (0 = nil, whose embedding row should be zero).
        embedding: [V, d] embedding matrix (A, B or C).
        encoding: [J, d] position encoding, or None for bag of words.

    Returns:
        [..., d] sentence vectors.
    """
    if words.dim() < 1:
        raise ValueError("words: expected shape [..., J]")
    check_shape("embedding", embedding, "V d")
    vectors = F.embedding(words, embedding)  # [..., J, d]
    if encoding is not None:
        check_shape("encoding", encoding, "J d", {"J": words.shape[-1], "d": embedding.shape[1]})
        vectors = vectors * encoding
    return vectors.sum(dim=-2)


def memory_ages(story_mask: torch.Tensor) -> torch.Tensor:
    """Temporal index of each memory: its age, 0 for the most recent sentence (padding slots get 0).

    Args:
        story_mask: [B, N] True where a slot holds a sentence (slots filled from 0, oldest first).

    Returns:
        [B, N] long ages: ``n_b - 1 - i`` for slot i of a story with n_b sentences.
    """
    check_shape("story_mask", story_mask, "B N")
    n = story_mask.sum(dim=1, keepdim=True)
    slots = torch.arange(story_mask.shape[1], device=story_mask.device).unsqueeze(0)
    return torch.where(story_mask, n - 1 - slots, torch.zeros_like(slots)).long()


def random_noise_ages(story_mask: torch.Tensor, noise: float = RANDOM_NOISE, max_age: int | None = None,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Ages with random empty memories interleaved (RN, Sec. 4.1; sampling as in the official train.m).

    For a story of n sentences, ``nblank ~ U{0, ..., ceil(noise * n)}``; n distinct ages are drawn from
    0..n+nblank-1 and given, sorted, to the sentences (the most recent gets the smallest). Ages are clipped
    to ``max_age`` (the temporal matrix's last row). No Python loop over the batch.

    Args:
        story_mask: [B, N] as for :func:`memory_ages`.

    Returns:
        [B, N] long ages (0 on padding slots).
    """
    check_shape("story_mask", story_mask, "B N")
    B, N = story_mask.shape
    device = story_mask.device
    n = story_mask.sum(dim=1)  # [B]
    extra = torch.ceil(n.double() * noise).long()
    nblank = torch.floor(torch.rand(B, generator=generator, device=device).double() * (extra + 1).double()).long()
    L = N + int(math.ceil(N * noise)) + 1
    candidates = torch.arange(L, device=device).unsqueeze(0)  # [1, L]
    keys = torch.rand(B, L, generator=generator, device=device)
    keys = keys.masked_fill(candidates >= (n + nblank).unsqueeze(1), 2.0)  # only 0..n+nblank-1 can be drawn
    drawn = keys.argsort(dim=1)[:, :N]  # [B, N] a random subset (first n are valid)
    big = torch.full_like(drawn, L + 1)
    drawn = torch.where(torch.arange(N, device=device).unsqueeze(0) < n.unsqueeze(1), drawn, big)
    ascending = drawn.sort(dim=1).values  # first n entries: the chosen ages, ascending
    slots = torch.arange(N, device=device).unsqueeze(0)
    rank = (n.unsqueeze(1) - 1 - slots).clamp(min=0)  # slot i (oldest first) gets the (n-1-i)-th smallest
    ages = ascending.gather(1, rank)
    if max_age is not None:
        ages = ages.clamp(max=max_age)
    return torch.where(story_mask, ages, torch.zeros_like(ages))


def memory_attention(u: torch.Tensor, memory_in: torch.Tensor, mask: torch.Tensor | None = None,
                     linear: bool = False, empty: torch.Tensor | None = None) -> torch.Tensor:
    """Match the query against every memory: p_i = Softmax(u^T m_i) (Eq. 1).

    Masked (padding) slots get exactly zero weight. With ``linear=True`` (linear start, Sec. 4.2) the softmax
    is removed: p_i = u^T m_i on real slots, 0 on padding. A story with no memory gives all-zero weights.

    ``empty`` reproduces the official code's empty memory slots (MemN2N-babi-matlab: a memory of fixed size
    whose unused slots hold only nil words, so m_i = c_i = 0): each row has ``empty[b]`` extra slots of score
    u^T 0 = 0 in the softmax, p_i = exp(s_i) / (sum_j exp(s_j) + empty). They take part of the attention mass
    and return a zero vector, so |o| can shrink when no memory matches (the yes/no tasks rely on it). The
    returned weights cover the real slots only; in linear mode empty slots change nothing (their score is 0).

    Args:
        u: [B, d] controller state (query).
        memory_in: [B, N, d] input memory vectors m_i.
        mask: [B, N] bool, True on real memories (None: all real).
        linear: linear start (no softmax).
        empty: optional [B] number of empty (all-zero) memories sharing the softmax (None or 0: none).

    Returns:
        [B, N] weights p.
    """
    sizes = check_shape("u", u, "B d")
    sizes = check_shape("memory_in", memory_in, "B N d", sizes)
    scores = torch.einsum("bd,bnd->bn", u, memory_in)
    if mask is not None:
        check_shape("mask", mask, "B N", sizes)
        if mask.dtype != torch.bool:
            raise TypeError(f"mask: expected a bool tensor, got {mask.dtype}")
    if empty is not None:
        check_shape("empty", empty, "B", sizes)
    if linear:
        return scores if mask is None else scores * mask.to(scores.dtype)
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    if empty is not None:  # one extra column of score log(empty) stands for the empty slots (log 0 = -inf: none)
        sink = torch.log(empty.to(scores.dtype)).unsqueeze(1)
        p = torch.softmax(torch.cat([scores, sink], dim=1), dim=1)[:, :-1]
    else:
        p = torch.softmax(scores, dim=1)
    return p if mask is None else p * mask.to(scores.dtype)  # all-padding rows: 0, not NaN


def memory_output(p: torch.Tensor, memory_out: torch.Tensor) -> torch.Tensor:
    """Response vector o = sum_i p_i c_i (Eq. 2): a weighted read of the output memories.

    Args:
        p: [B, N] weights.
        memory_out: [B, N, d] output memory vectors c_i.

    Returns:
        [B, d].
    """
    return read(memory_out, p)


class Hop(NamedTuple):
    """Result of one memory hop: the next query ``u`` [B, d] and the attention ``p`` [B, N]."""

    u: torch.Tensor
    attention: torch.Tensor


def memory_hop(u: torch.Tensor, memory_in: torch.Tensor, memory_out: torch.Tensor,
               mask: torch.Tensor | None = None, linear: bool = False, H: torch.Tensor | None = None,
               empty: torch.Tensor | None = None) -> Hop:
    """One layer of the network (Sec. 2.1-2.2): match, softmax, weighted output, u^{k+1} = u^k + o^k.

    Args:
        u: [B, d] query u^k.
        memory_in: [B, N, d] m_i (embedded with A^k, plus T_A^k).
        memory_out: [B, N, d] c_i (embedded with C^k, plus T_C^k).
        mask: [B, N] True on real memories.
        linear: linear start (no softmax).
        H: optional [d, d] layer-wise mapping: u^{k+1} = H u^k + o^k (Sec. 2.2, layer-wise tying).
        empty: optional [B] count of empty memories in the softmax (see :func:`memory_attention`).

    Returns:
        :class:`Hop` (u^{k+1} [B, d], p [B, N]).
    """
    sizes = check_shape("u", u, "B d")
    check_shape("memory_out", memory_out, "B N d", check_shape("memory_in", memory_in, "B N d", sizes))
    p = memory_attention(u, memory_in, mask, linear, empty)
    o = memory_output(p, memory_out)
    if H is not None:
        check_shape("H", H, "d d", sizes)
        u = u @ H.T
    return Hop(u + o, p)


def _low_rank(encoding: torch.Tensor | None, J: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Factor a [J, d] encoding as U [J, R] @ Vt [R, d] (R = numerical rank; BoW: ones, R = 1)."""
    if encoding is None:
        return (torch.ones(J, 1, dtype=like.dtype, device=like.device),
                torch.ones(1, like.shape[-1], dtype=like.dtype, device=like.device))
    U, S, Vh = torch.linalg.svd(encoding.double(), full_matrices=False)
    R = max(1, int((S > S[0] * 1e-9).sum()))
    return (U[:, :R] * S[:R]).to(like.dtype), Vh[:R].to(like.dtype)


@lru_cache(maxsize=64)
def _encoding_factors(encoding: str, formula: str, J: int, d: int, dtype: torch.dtype, device,
                      time_word: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Cached low-rank factors of the [J, d] sentence encoding (constants: no gradient flows into them).

    ``time_word``: the words use the first J rows of the (J+1)-row matrix (:func:`time_word_encoding`)."""
    like = torch.empty(0, d, dtype=torch.float64)  # factored once per configuration, on the host (the rank is a
    if encoding == "bow":                              # host decision), then moved: no sync inside a step
        U, Vt = _low_rank(None, J, like)
    else:
        make = position_encoding if formula == "paper" else position_encoding_official
        enc = make(J + 1, d, dtype=torch.float64)[:J] if time_word else make(J, d, dtype=torch.float64)
        U, Vt = _low_rank(enc, J, like)
    return U.to(device=device, dtype=dtype), Vt.to(device=device, dtype=dtype)


def time_word_encoding(J: int, d: int, formula: str = "official", *, dtype: torch.dtype = torch.float32,
                       device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The official code's temporal encoding as a *time word* (MemN2N-babi-matlab: ``enable_time``).

    The official code does not add T_A(i) to m_i: it appends a word "time i" to every memory sentence, after
    the J real word positions, and builds its PE matrix for J+1 positions. So the words of memories *and
    questions* are weighted by the first J rows of a (J+1)-row matrix, and the temporal vector by the last row:
    m_i = sum_{j<=J} l_j * A x_ij + l_{J+1} * T_A(i). (BoW: every weight is 1, no difference.)

    Returns:
        (words [J, d], time [d]) weights.
    """
    make = position_encoding if formula == "paper" else position_encoding_official
    full = make(J + 1, d, dtype=dtype, device=device)
    return full[:J], full[J]


def _bags(words: torch.Tensor, real: torch.Tensor, table: torch.Tensor, U: torch.Tensor, Vt: torch.Tensor
          ) -> torch.Tensor:
    """sum_j l_j * table[words_j] over the real (non-nil) words of each row, l = U @ Vt of rank R.

    words, real: [S, J]; table: [V, D]; U: [J, R]; Vt: [R, D]  ->  [S, D]. One embedding_bag per rank over
    the real words only (padding words cost nothing).
    """
    if words.device.type != "cpu":  # fixed shapes on an accelerator (boolean indexing would sync the host):
        weight = real.to(table.dtype)  # every word, nil words weighted 0
        return sum(F.embedding_bag(words, table, mode="sum", per_sample_weights=U[:, r] * weight) * Vt[r]
                   for r in range(U.shape[1]))
    counts = real.sum(dim=1)
    offsets = torch.cumsum(counts, 0) - counts
    flat = words[real]
    position = torch.arange(words.shape[1], device=words.device).expand_as(words)[real]
    out = 0
    for r in range(U.shape[1]):
        out = out + F.embedding_bag(flat, table, offsets, mode="sum", per_sample_weights=U[position, r]) * Vt[r]
    return out


def _nil_terms(model: "MemN2N", stories: torch.Tensor, story_mask: torch.Tensor, queries: torch.Tensor,
               used: list[int], b_index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The nil word's share of every embedded sentence, as the official code computes it (value: zero).

    The official code (MemN2N-babi-matlab, LookUpTable.m; the Python port vinhkhuc/MemN2N-babi-python likewise)
    looks up *every* word position, padding included, and every slot of its fixed-size memory, empty ones
    included (all-nil sentences, nil time word too). The nil column of each embedding matrix is zero, so
    this changes no output, but backprop accumulates a gradient in it: sum over nil positions of
    l_j * dL/dm_i. Weight.m then clips each matrix by its 2-norm *with that column in it*, updates, and zeroes
    the column again (train.m, Memory.m). The nil column can dominate the matrix norm (most positions of a
    joint-training memory are padding), so it sets how hard the real words' gradients are clipped.

    We embed only real words (``_bags``); these terms add ``w ⊙ E[nil]`` with the right weights w so that
    autograd gives E[nil] the official gradient. Shapes: S copies, B batch, N slots, J words, d embedding,
    ``U`` = len(used) distinct memory matrices.

    Returns:
        (words [S*B, N, U, d]: nil words of real memories; query [S*B, d]: nil words of the question (with B);
        empty [U, S*B, d]: one empty slot's vector, (sum of all PE rows) ⊙ E[nil]).
    """
    S, B, N, J = stories.shape
    d = model.config.embedding_dim
    weight = model.embeddings[0]
    L = model.encoding(J, weight)  # [J, d] word weights (time-word mode: first J rows of the J+1-row matrix)
    if L is None:
        L = torch.ones(J, d, dtype=weight.dtype, device=weight.device)
    if model.config.time_word and model.config.encoding == "pe":  # an empty slot's time word is nil as well
        words, time = time_word_encoding(J, d, model.config.pe_formula, dtype=weight.dtype, device=weight.device)
        whole = words.sum(dim=0) + time
    else:
        whole = L.sum(dim=0)
    rows = torch.stack([model.embeddings[i][:, NIL_INDEX] for i in used], dim=1)  # [S, U, d] (zero in value)
    nil = ((stories == NIL_INDEX) & story_mask.unsqueeze(-1)).to(weight.dtype)  # [S, B, N, J] real slots only
    words_term = ((nil @ L).unsqueeze(3) * rows.view(S, 1, 1, len(used), d)).reshape(S * B, N, len(used), d)
    query = ((queries == NIL_INDEX).to(weight.dtype) @ L) * model.embeddings[b_index][:, NIL_INDEX].unsqueeze(1)
    empty = (whole * rows).transpose(0, 1).unsqueeze(2).expand(len(used), S, B, d).reshape(len(used), S * B, d)
    return words_term, query.reshape(S * B, d), empty


def _read_with_empty_memories(u: torch.Tensor, memory_in: torch.Tensor, memory_out: torch.Tensor,
                              mask: torch.Tensor, linear: bool, empty: torch.Tensor, empty_in: torch.Tensor,
                              empty_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eqs. 1-2 with ``empty[b]`` identical empty memories (m_e = ``empty_in``, c_e = ``empty_out``, [B, d]).

    The same values as :func:`memory_attention` with ``empty`` (m_e = c_e = 0 there) followed by
    :func:`memory_output`, but m_e and c_e stay in the graph so that the nil rows they come from get their
    gradient (:func:`_nil_terms`). Softmax: p_i = exp(s_i) / (sum_j exp(s_j) + empty * exp(u^T m_e)),
    o = sum_i p_i c_i + empty * p_e c_e; linear start: p_i = s_i, o += empty * (u^T m_e) c_e.

    Returns:
        (p [B, N] over the real slots, o [B, d]).
    """
    scores = torch.einsum("bd,bnd->bn", u, memory_in)
    s_e = (u * empty_in).sum(dim=1, keepdim=True)  # [B, 1]
    count = empty.to(scores.dtype).unsqueeze(1)
    if linear:
        p = scores * mask.to(scores.dtype)
        return p, memory_output(p, memory_out) + count * s_e * empty_out
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    full = torch.softmax(torch.cat([scores, torch.log(count) + s_e], dim=1), dim=1)
    p = full[:, :-1] * mask.to(scores.dtype)
    return p, memory_output(p, memory_out) + full[:, -1:] * empty_out


# ------------------------------------------------------------------------------------------------- model


@dataclass
class MemN2NConfig:
    """Architecture of :class:`MemN2N` (defaults: the paper's bAbI single-task model, PE + TE, 3 hops)."""

    vocab_size: int
    sentence_length: int  # J (padded)
    memory_size: int = 50  # rows of the temporal matrices (the 50 most recent sentences)
    embedding_dim: int = 20  # d: 20 for single tasks, 50 for joint training (Sec. 4.2)
    hops: int = 3
    encoding: str = "pe"  # "pe" | "bow"
    pe_formula: str = "paper"  # "paper" | "official"
    temporal: bool = True
    tying: str = "adjacent"  # "adjacent" | "layerwise"
    init_std: float = INIT_STD
    # Memory slots of the official code (min(50, longest story)). None: slots no sentence fills are masked out
    # (zero attention). An integer: the memory has that many slots and the unfilled ones are empty memories
    # (m_i = c_i = 0) that share the softmax with score 0, as in the official code (memory_attention's
    # ``empty``). The yes/no tasks 6, 9, 10, 18 need them (benchmarks/RESULTS.md); see paper_config.
    slots: int | None = None
    # The official code's temporal encoding (:func:`time_word_encoding`): the age is a (J+1)-th "time word" of
    # each memory, weighted by the last row of a (J+1)-row PE matrix whose first J rows weight the words.
    # False: m_i = sum_j l_j * A x_ij + T_A(i) with a J-row matrix (the paper's Sec. 4.1 wording).
    time_word: bool = False
    # A non-linearity on the internal state after every hop, u^{k+1} = ReLU(u^k + o^k) (the official code's
    # ``add_nonlin``: a ReLU after each hop's AddTable). With d = 100 it is the paper's "PE LS RN *" model of
    # Table 3 (10k training questions: 4.2 % mean error, where the linear PE LS RN model has 6.6 %).
    nonlinearity: str | None = None  # None | "relu"

    def __post_init__(self):
        if self.encoding not in ("pe", "bow"):
            raise ValueError(f"encoding must be 'pe' or 'bow', got {self.encoding!r}")
        if self.pe_formula not in ("paper", "official"):
            raise ValueError(f"pe_formula must be 'paper' or 'official', got {self.pe_formula!r}")
        if self.tying not in ("adjacent", "layerwise"):
            raise ValueError(f"tying must be 'adjacent' or 'layerwise', got {self.tying!r}")
        if self.hops < 1:
            raise ValueError(f"hops must be >= 1, got {self.hops}")
        if self.nonlinearity not in (None, "relu"):
            raise ValueError(f"nonlinearity must be None or 'relu', got {self.nonlinearity!r}")
        if self.slots is not None and self.slots < 1:
            raise ValueError(f"slots must be None or >= 1, got {self.slots}")


class MemN2NOutput(NamedTuple):
    """``logits`` [B, V] (before the answer softmax) and ``attention`` [B, H, N] (p of every hop)."""

    logits: torch.Tensor
    attention: torch.Tensor


class MemN2N(nn.Module):
    """The K-hop memory network. Holds parameters only; the computation is in the pure functions above.

    Adjacent tying (Sec. 2.2): A^{k+1} = C^k, W^T = C^K, B = A^1, stored as K+1 matrices E_0..E_K with
    A^k = E_{k-1}, C^k = E_k (temporal matrices likewise: T_A^{k+1} = T_C^k). Layer-wise tying: A^k = A and
    C^k = C for every k, separate B and W, and a linear map H between hops (u^{k+1} = H u^k + o^k).

    ``copies`` > 1 holds that many independent networks (every parameter gets a leading copy dimension of
    size S) that run side by side on inputs with a leading [S] dimension: the benchmarks train several seeds,
    or the 20 single-task models, in one pass (the paper itself picked the best of 10 restarts).
    """

    def __init__(self, config: MemN2NConfig, copies: int = 1):
        super().__init__()
        if copies < 1:
            raise ValueError(f"copies must be >= 1, got {copies}")
        self.config, self.copies = config, copies
        V, d, K, T, S = config.vocab_size, config.embedding_dim, config.hops, config.memory_size, copies
        normal = lambda *shape: nn.Parameter(torch.randn(S, *shape) * config.init_std)  # noqa: E731
        if config.tying == "adjacent":
            self.embeddings = nn.ParameterList([normal(V, d) for _ in range(K + 1)])
            self.temporal = nn.ParameterList([normal(T, d) for _ in range(K + 1)]) if config.temporal else None
            self.H = None
        else:  # order: A, C, B, W and T_A, T_C
            self.embeddings = nn.ParameterList([normal(V, d) for _ in range(4)])
            self.temporal = nn.ParameterList([normal(T, d) for _ in range(2)]) if config.temporal else None
            self.H = normal(d, d)
        self.zero_nil()

    @torch.no_grad()
    def zero_nil(self) -> None:
        """Keep the nil word's embedding at zero in every word matrix (Sec. 4.2: "constrained to be zero")."""
        for matrix in self.embeddings:
            matrix[:, NIL_INDEX].zero_()

    def select_copy(self, index: int) -> "MemN2N":
        """A new one-copy model holding copy ``index``'s weights (e.g. the seed chosen on validation)."""
        if not 0 <= index < self.copies:
            raise IndexError(f"copy {index} out of range for {self.copies} copies")
        single = MemN2N(self.config, copies=1)
        single.load_state_dict({k: v[index:index + 1].clone() for k, v in self.state_dict().items()})
        return single

    def encoding(self, J: int, like: torch.Tensor) -> torch.Tensor | None:
        """The [J, d] position encoding of the words (None for bag of words)."""
        if self.config.encoding == "bow":
            return None
        if self.config.time_word:
            return time_word_encoding(J, self.config.embedding_dim, self.config.pe_formula, dtype=like.dtype,
                                      device=like.device)[0]
        make = position_encoding if self.config.pe_formula == "paper" else position_encoding_official
        return make(J, self.config.embedding_dim, dtype=like.dtype, device=like.device)

    def roles(self):
        """Indices into ``embeddings``/``temporal`` of (A^k, C^k) for each hop, then of B and W."""
        K = self.config.hops
        if self.config.tying == "adjacent":
            return [(k, k + 1) for k in range(K)], 0, K
        return [(0, 1)] * K, 2, 3

    def matrices(self, copy: int = 0) -> dict[str, torch.Tensor]:
        """Named [V, d] / [T, d] matrices of one copy (A1, C1, ..., B, W, TA1, TC1, ...), for inspection."""
        hops, b, w = self.roles()
        out = {"B": self.embeddings[b][copy], "W": self.embeddings[w][copy]}
        for k, (a, c) in enumerate(hops, start=1):
            out[f"A{k}"], out[f"C{k}"] = self.embeddings[a][copy], self.embeddings[c][copy]
            if self.temporal is not None:
                ta, tc = (a, c) if self.config.tying == "adjacent" else (0, 1)
                out[f"TA{k}"], out[f"TC{k}"] = self.temporal[ta][copy], self.temporal[tc][copy]
        return out

    def forward(self, stories: torch.Tensor, story_mask: torch.Tensor, queries: torch.Tensor,
                ages: torch.Tensor | None = None, linear: bool = False, nil_gradient: bool = False
                ) -> MemN2NOutput:
        """Answer questions about stories.

        Args:
            stories: [B, N, J] word indices of the memories (slot 0 oldest); [S, B, N, J] with copies.
            story_mask: [B, N] True on real memories ([S, B, N]).
            queries: [B, J] question word indices ([S, B, J]).
            ages: [B, N] temporal indices ([S, B, N]); default :func:`memory_ages`;
                :func:`random_noise_ages` in training.
            linear: linear start (memory softmaxes removed).
            nil_gradient: give the nil word's embedding rows the gradient the official code gives them
                (:func:`_nil_terms`). The outputs are the same (those rows are zero); only the gradients of the
                nil rows change, which matters because per-matrix clipping measures the whole matrix
                (``TrainConfig.nil_gradient``).

        Returns:
            :class:`MemN2NOutput`: logits [B, V] and attention [B, H, N] (with copies [S, B, V], [S, B, H, N]).
        """
        single = stories.dim() == 3
        if single:
            if self.copies != 1:
                raise ValueError(f"this model has {self.copies} copies: pass inputs with a leading [S] dimension")
            stories, story_mask, queries = stories.unsqueeze(0), story_mask.unsqueeze(0), queries.unsqueeze(0)
            ages = ages.unsqueeze(0) if ages is not None else None
        sizes = check_shape("stories", stories, "S B N J", {"S": self.copies})
        check_shape("story_mask", story_mask, "S B N", sizes)
        check_shape("queries", queries, "S B J", sizes)
        S, B, N, J = (sizes[k] for k in "SBNJ")
        V, d, T = self.config.vocab_size, self.config.embedding_dim, self.config.memory_size
        flat_mask = story_mask.reshape(S * B, N)
        if ages is None:
            ages = memory_ages(flat_mask).reshape(S, B, N)
        check_shape("ages", ages, "S B N", sizes)
        weight = self.embeddings[0]
        hops, b_index, w_index = self.roles()
        used = sorted({i for pair in hops for i in pair})

        # sum_j l_j * E x_ij for every distinct matrix E (and every copy) at once. With the low-rank
        # factorisation l_kj = sum_r U_jr V_rk (rank 2 for both PE formulas, 1 for BoW) it is
        # sum_r (sum_j U_jr E x_ij) * V_r, and the inner sums are one embedding_bag over the concatenated
        # matrices (tests check this against sentence_representation). Nil words get weight 0.
        pe_time = self.config.time_word and self.config.encoding == "pe"
        U, Vt = _encoding_factors(self.config.encoding, self.config.pe_formula, J, d, weight.dtype, weight.device,
                                  pe_time)
        time_scale = (time_word_encoding(J, d, self.config.pe_formula, dtype=weight.dtype, device=weight.device)[1]
                      if pe_time else None)
        offsets = (torch.arange(S, device=stories.device) * V).view(S, 1, 1, 1)
        table = torch.cat([self.embeddings[i] for i in used], dim=2).reshape(S * V, len(used) * d)
        words = (stories + offsets).reshape(-1, J)
        if stories.device.type == "cpu":  # only real sentences are embedded (the host reads the mask for free)
            slots = flat_mask.reshape(-1).nonzero().squeeze(1)
            sentences = stories.new_zeros(S * B * N, len(used) * d, dtype=weight.dtype).index_copy(
                0, slots, _bags(words[slots], stories.reshape(-1, J)[slots] != NIL_INDEX,
                                table, U, Vt.repeat(1, len(used))))
        else:  # on an accelerator a data-dependent shape (nonzero) would sync the host: embed every slot, mask
            sentences = _bags(words, stories.reshape(-1, J) != NIL_INDEX, table, U, Vt.repeat(1, len(used)))
            sentences = sentences * flat_mask.reshape(-1, 1).to(sentences.dtype)
        sentences = sentences.reshape(S * B, N, len(used), d)
        if nil_gradient:
            nil_words, nil_query, nil_empty = _nil_terms(self, stories, story_mask, queries, used, b_index)
            sentences = sentences + nil_words
        if self.temporal is not None:
            age_index = (ages + (torch.arange(S, device=ages.device) * T).view(S, 1, 1)).reshape(S * B, N)

        def embed(index: int, temporal_index: int) -> torch.Tensor:
            out = sentences[:, :, used.index(index)]  # C^k and A^{k+1} share sentence vectors
            if self.temporal is None:
                return out
            times = F.embedding(age_index, self.temporal[temporal_index].reshape(S * T, d))
            return out + (times if time_scale is None else times * time_scale)

        empty = None
        if self.config.slots is not None:  # unfilled slots of the official fixed-size memory (may be trimmed away)
            empty = (self.config.slots - flat_mask.sum(dim=1)).clamp(min=0)
        q_flat = (queries + offsets.view(S, 1, 1)).reshape(-1, J)
        B_table = self.embeddings[b_index].reshape(S * V, d)
        u = _bags(q_flat, (queries != NIL_INDEX).reshape(-1, J), B_table, U, Vt)  # u^1 = sum_j l_j * B q_j  [S*B, d]
        if nil_gradient:
            u = u + nil_query
        attention = []
        for k, (a, c) in enumerate(hops):
            ta, tc = (a, c) if self.config.tying == "adjacent" else (0, 1)
            if nil_gradient and empty is not None:  # empty slots as nil-word memories m_e, c_e (value 0)
                p, o = _read_with_empty_memories(u, embed(a, ta), embed(c, tc), flat_mask, linear, empty,
                                                 nil_empty[used.index(a)], nil_empty[used.index(c)])
                Hu = u if self.H is None else torch.bmm(u.view(S, B, d), self.H.transpose(1, 2)).reshape(S * B, d)
                u = Hu + o
            elif self.H is None:
                u, p = memory_hop(u, embed(a, ta), embed(c, tc), flat_mask, linear, empty=empty)
            else:  # layer-wise: u^{k+1} = H u^k + o^k, with one H per copy
                p = memory_attention(u, embed(a, ta), flat_mask, linear, empty)
                Hu = torch.bmm(u.view(S, B, d), self.H.transpose(1, 2)).reshape(S * B, d)
                u = Hu + memory_output(p, embed(c, tc))
            if self.config.nonlinearity == "relu":  # official add_nonlin: ReLU after each hop's sum
                u = F.relu(u)
            attention.append(p)
        W = self.embeddings[w_index]  # [S, V, d]
        logits = torch.bmm(u.view(S, B, d), W.transpose(1, 2))  # a_hat = Softmax(W u^{K+1}) (Eq. 3)
        attention = torch.stack(attention, dim=1).view(S, B, len(hops), N)
        if single:
            return MemN2NOutput(logits[0], attention[0])
        return MemN2NOutput(logits, attention)


# ------------------------------------------------------------------------------------------------ training


@dataclass
class TrainConfig:
    """The optimisation recipe (Sec. 4.2). Epochs count passes over the training set (floor(n/batch) steps)."""

    epochs: int = 100
    lr: float = 0.01
    anneal_every: int = 25
    anneal_factor: float = 0.5
    batch_size: int = 32
    max_grad_norm: float = 40.0
    linear_start: bool = True
    ls_epochs: int = 20
    ls_lr: float = 0.005
    # None: LS lasts exactly ls_epochs (official code). An integer p: LS also ends once the mean validation
    # loss over the copies has not improved for p epochs (the paper: "when the validation loss stopped
    # decreasing, the softmax layers were re-inserted"), at most ls_epochs. Not recommended, and fit warns: the
    # linear-phase validation loss oscillates (1.69, 3.72, 1.43, 2.54, ... at ~50 % validation error in joint
    # training), so patience 2 ended LS after 5-7 of the official 30 epochs (benchmarks/RESULTS.md, issue #20).
    ls_patience: int | None = None
    random_noise: float = RANDOM_NOISE  # 0 disables RN
    seed: int = 0
    eval_batch: int = 1000
    # "per_matrix" (default): as in the official Matlab code (nn/Weight.m), each weight matrix's gradient is
    # rescaled on its own when its matrix 2-norm (largest singular value) exceeds max_grad_norm. "global": one
    # l2 norm over all of a network's gradients, a literal reading of the paper's Sec. 4.2; it clips far more
    # with the summed loss and learned much more slowly in our runs (benchmarks/RESULTS.md).
    clip: str = "per_matrix"
    # "permutation": every epoch visits each training question once (a fresh permutation); "replacement":
    # each batch draws its questions uniformly with replacement, as the official train.m does.
    sampling: str = "permutation"
    # True: the nil word's embedding rows get the gradient the official code gives them (every padding word and
    # every empty memory slot is looked up there), so per-matrix clipping measures the matrix with that row in
    # it, as Weight.m does; the row is still zeroed after every update. Outputs are unchanged. Joint training
    # needs it for task 16 (benchmarks/results/memn2n_section.md); see MemN2N.forward and _nil_terms.
    nil_gradient: bool = False

    def __post_init__(self):
        if self.clip not in ("per_matrix", "global"):
            raise ValueError(f"clip must be 'per_matrix' or 'global', got {self.clip!r}")
        if self.sampling not in ("permutation", "replacement"):
            raise ValueError(f"sampling must be 'permutation' or 'replacement', got {self.sampling!r}")


def paper_config(data, joint: bool = False, **overrides) -> MemN2NConfig:
    """The architecture that reproduces Table 1: the official code's conventions for a loaded data set.

    PE with the official matrix (``pe_formula="official"``: the paper's printed formula gives a matrix about half
    as large, which learned the yes/no and induction tasks 6, 16, 18 at chance in our runs), temporal encoding,
    adjacent tying, 3 hops, d = 20 (single task) or 50 (joint), and a memory of
    ``slots = min(50, longest story)`` whose unfilled slots are empty memories in the softmax, as in the
    official code. ``data`` is a :class:`mem_tutorial.data.babi.BabiData` (``load_babi``); ``overrides`` set
    any other :class:`MemN2NConfig` field.
    """
    cfg = dict(vocab_size=len(data.vocab), sentence_length=data.sentence_length, memory_size=data.memory_size,
               embedding_dim=50 if joint else 20, hops=3, encoding="pe", pe_formula="official",
               slots=int(data.train.stories.shape[1]))
    for key in overrides:
        if key not in MemN2NConfig.__dataclass_fields__:
            raise TypeError(f"MemN2NConfig has no field {key!r}")
    cfg.update(overrides)
    return MemN2NConfig(**cfg)


def paper_recipe(joint: bool = False, ten_k: bool = False, linear_start: bool = True,
                 random_noise: bool = True, **overrides) -> TrainConfig:
    """The paper's schedule (Sec. 4.2) with the official code's LS lengths.

    Single task: 100 epochs, lr halved every 25. Joint 1k: 60 epochs, halved every 15; joint 10k: 20
    epochs, halved every 5. With LS the learning rate starts at 0.005 (also after the softmaxes come back,
    as in the official config) and the linear phase lasts 20 epochs (30 for joint training).

    Joint training also clips as the official code does, with the nil word's gradient in each matrix
    (``nil_gradient=True``): without it task 16 stayed at 53 % in every joint run; with it the joint model
    learns induction (benchmarks/results/memn2n_section.md). Single-task runs keep ``nil_gradient=False``, the
    setting their published figures were measured with.
    """
    if joint:
        cfg = TrainConfig(epochs=20 if ten_k else 60, anneal_every=5 if ten_k else 15, ls_epochs=30,
                          nil_gradient=True)
    else:
        cfg = TrainConfig()
    cfg.linear_start = linear_start
    if linear_start:
        cfg.lr = 0.005
    cfg.random_noise = RANDOM_NOISE if random_noise else 0.0
    for key, value in overrides.items():
        if not hasattr(cfg, key):
            raise TypeError(f"TrainConfig has no field {key!r}")
        setattr(cfg, key, value)
    return cfg


def clip_grad_norm_per_copy(parameters, max_norm: float, copies: int) -> torch.Tensor:
    """Rescale each copy's gradient to l2 norm ``max_norm`` when larger (Sec. 4.2), copies independently.

    Returns:
        [S] the norms before rescaling.
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    squares = sum(g.reshape(copies, -1).pow(2).sum(dim=1) for g in grads)
    norms = squares.sqrt()
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(scale.view(copies, *([1] * (g.dim() - 1))))
    return norms


def clip_grad_per_matrix(parameters, max_norm: float, copies: int) -> None:
    """The official code's clipping: each matrix's gradient (of each copy) is rescaled to matrix 2-norm
    ``max_norm`` (its largest singular value) when larger, independently of the other matrices."""
    for p in parameters:
        if p.grad is None:
            continue
        g = p.grad.reshape(copies, p.grad.shape[1], -1)
        norms = torch.linalg.matrix_norm(g, ord=2)  # [S]
        scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        p.grad.mul_(scale.view(copies, *([1] * (p.grad.dim() - 1))))


def _trim(stories, mask, queries):
    """Drop memory slots that are padding in the whole batch (slots fill from 0, so a prefix suffices)."""
    filled = mask.reshape(-1, mask.shape[-1]).any(dim=0)
    used = int(filled.nonzero().max().item()) + 1 if filled.any() else 1
    return stories[..., :used, :], mask[..., :used], queries


def _extent(mask: torch.Tensor) -> torch.Tensor:
    """[Q] one past the last filled slot of each story (0 for none), on the host: from a [Q, N] mask."""
    mask = mask.cpu()
    last = mask.shape[1] - mask.flip(1).to(torch.int8).argmax(dim=1)
    return torch.where(mask.any(dim=1), last, torch.zeros_like(last))


def _stack(datasets, indices, device=None):
    """Gather [S, B, ...] batches: copy s takes rows ``indices[s]`` of ``datasets[s]`` (moved to ``device``)."""
    parts = [ds.subset(idx) for ds, idx in zip(datasets, indices)]
    out = [torch.stack(ts) for ts in zip(*(p.as_tuple() for p in parts))]
    return out if device is None else [t.to(device, non_blocking=True) for t in out]


@torch.no_grad()
def evaluate_copies(model: MemN2N, datasets, batch_size: int = 1000, linear: bool = False) -> list[dict]:
    """Evaluate copy s of ``model`` on ``datasets[s]`` (a list of S BabiTensors, any sizes).

    Returns:
        one dict per copy: ``loss`` (mean per question), ``error`` (fraction wrong), ``correct`` [Q] bool,
        ``predictions`` [Q].
    """
    S = model.copies
    if len(datasets) != S:
        raise ValueError(f"need one dataset per copy ({S}), got {len(datasets)}")
    was_training = model.training
    device = model.embeddings[0].device
    model.eval()
    longest = max(len(ds) for ds in datasets)
    loss = torch.zeros(S, dtype=torch.float64)
    correct = [[] for _ in range(S)]
    preds = [[] for _ in range(S)]
    for start in range(0, longest, batch_size):
        idx = [torch.arange(start, min(start + batch_size, longest)).clamp(max=max(len(ds) - 1, 0)) for ds in datasets]
        stories, mask, queries, answers = _stack(datasets, idx, device)[:4]
        stories, mask, queries = _trim(stories, mask, queries)
        logits = model(stories, mask, queries, linear=linear).logits  # [S, b, V]
        losses = F.cross_entropy(logits.transpose(1, 2), answers, reduction="none")  # [S, b]
        pred = logits.argmax(dim=2)
        for s, ds in enumerate(datasets):
            keep = max(0, min(len(ds) - start, pred.shape[1]))
            loss[s] += float(losses[s, :keep].double().sum())
            preds[s].append(pred[s, :keep])
            correct[s].append(pred[s, :keep] == answers[s, :keep])
    model.train(was_training)
    out = []
    for s, ds in enumerate(datasets):
        c = torch.cat(correct[s]).cpu() if correct[s] else torch.zeros(0, dtype=torch.bool)
        out.append({"loss": float(loss[s]) / max(len(ds), 1),
                    "error": 1.0 - float(c.float().mean()) if len(c) else 0.0,
                    "correct": c, "predictions": torch.cat(preds[s]).cpu() if preds[s] else torch.zeros(0)})
    return out


def evaluate(model: MemN2N, data, batch_size: int = 1000, linear: bool = False) -> dict:
    """:func:`evaluate_copies` for a one-copy model: dict with ``loss``, ``error``, ``correct``, ``predictions``."""
    return evaluate_copies(model, [data] * model.copies, batch_size, linear)[0]


def per_task_error(correct: torch.Tensor, tasks: torch.Tensor) -> dict[int, float]:
    """Error (fraction) per task from a [Q] correctness vector and the [Q] task numbers."""
    return {int(t): 1.0 - float(correct[tasks == t].float().mean()) for t in sorted(set(tasks.tolist()))}


@dataclass
class FitResult:
    """What :func:`fit` returns: per copy, the epoch and validation error of the selected weights."""

    best_epoch: list[int]
    best_valid_error: list[float]
    history: list[History]
    seconds: float
    config: dict = field(default_factory=dict)


def fit(model: MemN2N, train, valid, recipe: TrainConfig, *, log: Callable[[str], None] | None = None,
        progress: bool = False, desc: str = "MemN2N", report_every: int = 0,
        report: Callable[[int, "FitResult", dict], None] | None = None) -> FitResult:
    """Train with the paper's recipe and keep, for each copy, the weights with the lowest validation error.

    Linear start first (``recipe.ls_epochs`` epochs at ``recipe.ls_lr`` without memory softmaxes), then
    ``recipe.epochs`` epochs with the softmaxes: lr ``recipe.lr``, times ``anneal_factor`` at every
    ``anneal_every``-th epoch (as in the official train.m). Each step: a batch of ``batch_size`` questions (a
    fresh permutation every epoch, or drawn with replacement: ``recipe.sampling``), cross-entropy *summed* over the batch, gradient rescaled to l2 norm
    ``max_grad_norm`` if larger, plain SGD, then the nil embeddings are zeroed again. Selection (lowest
    validation error, ties broken by validation loss) only considers the softmax phase.

    Args:
        model: a :class:`MemN2N` with S copies.
        train, valid: one BabiTensors shared by all copies, or a list of S (e.g. one task per copy).
        recipe: :class:`TrainConfig` (:func:`paper_recipe`).

        report_every, report: every ``report_every`` epochs (softmax phase), ``report(epoch, partial result,
            best state dict so far)`` is called, e.g. to save intermediate results of long runs.

    Returns:
        :class:`FitResult`; the model is left holding the selected weights of every copy.
    """
    S = model.copies
    if recipe.linear_start and recipe.ls_patience is not None:
        warnings.warn("TrainConfig.ls_patience: the linear-start validation loss is too noisy to stop on (it ended "
                      "joint LS after 5-7 of the official 30 epochs); prefer a fixed ls_epochs (ls_patience=None)",
                      UserWarning, stacklevel=2)
    train = list(train) if isinstance(train, (list, tuple)) else [train] * S
    valid = list(valid) if isinstance(valid, (list, tuple)) else [valid] * S
    if len(train) != S or len(valid) != S:
        raise ValueError(f"need one train and one valid set per copy ({S})")
    device = model.embeddings[0].device
    # Batch orders and trim lengths are host-side index arithmetic (no device sync); random-noise ages are
    # drawn on the model's device (on the CPU from the same generator as the orders, as before).
    generator = torch.Generator().manual_seed(recipe.seed)
    noise_generator = generator if device.type == "cpu" else torch.Generator(device=device).manual_seed(recipe.seed)
    extents = [_extent(ds.story_mask) for ds in train]
    optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr)
    histories = [History() for _ in range(S)]
    best_error = [math.inf] * S
    best_loss = [math.inf] * S
    best_epoch = [-1] * S
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    phases = []
    if recipe.linear_start and recipe.ls_epochs > 0:
        phases.append(("linear", recipe.ls_epochs, recipe.ls_lr, recipe.ls_epochs + 1))
    phases.append(("softmax", recipe.epochs, recipe.lr, recipe.anneal_every))
    sizes = [len(ds) for ds in train]
    steps_per_epoch = max(1, max(sizes) // recipe.batch_size)
    T = model.config.memory_size
    start_time = time.perf_counter()
    epoch_counter = 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(p[1] for p in phases), desc=desc, leave=True)
    for phase, epochs, lr, anneal_every in phases:
        linear = phase == "linear"
        for group in optimizer.param_groups:
            group["lr"] = lr
        ls_best, ls_stale = math.inf, 0
        for epoch in range(1, epochs + 1):
            if linear and recipe.ls_patience is not None and ls_stale >= recipe.ls_patience:
                if log is not None:
                    log(f"{desc}: validation loss stopped decreasing, softmaxes re-inserted after {epoch - 1} LS epochs")
                break
            if epoch % anneal_every == 0:
                for group in optimizer.param_groups:
                    group["lr"] *= recipe.anneal_factor
            need = steps_per_epoch * recipe.batch_size
            if recipe.sampling == "replacement":
                orders = [torch.randint(n, (need,), generator=generator) for n in sizes]
            else:
                orders = [torch.cat([torch.randperm(n, generator=generator) for _ in range(-(-need // n))])[:need]
                          for n in sizes]
            # metrics accumulate on the model's device and are read once per epoch (no per-step host sync)
            # slots used per step (one past the batch's last filled slot): host index arithmetic, read once
            used_slots = torch.stack([e[o].view(steps_per_epoch, recipe.batch_size) for e, o in zip(extents, orders)]
                                     ).amax(dim=(0, 2)).clamp(min=1).tolist()
            total_loss = torch.zeros(S, dtype=torch.float64, device=device)
            total_wrong = torch.zeros(S, dtype=torch.long, device=device)
            for step in range(steps_per_epoch):
                window = slice(step * recipe.batch_size, (step + 1) * recipe.batch_size)
                batch = [o[window] for o in orders]
                used = used_slots[step]
                stories, mask, queries, answers = _stack(train, batch, device)[:4]
                stories, mask = stories[..., :used, :], mask[..., :used]  # slots empty in the whole batch
                flat_mask = mask.reshape(-1, mask.shape[-1])
                if recipe.random_noise > 0:
                    ages = random_noise_ages(flat_mask, recipe.random_noise, max_age=T - 1,
                                             generator=noise_generator)
                else:
                    ages = memory_ages(flat_mask)
                logits = model(stories, mask, queries, ages=ages.view(mask.shape), linear=linear,
                               nil_gradient=recipe.nil_gradient).logits
                losses = F.cross_entropy(logits.transpose(1, 2), answers, reduction="none").sum(dim=1)  # [S]
                optimizer.zero_grad(set_to_none=True)
                losses.sum().backward()  # "cost is not averaged over a batch"; copies are independent
                if recipe.clip == "per_matrix":
                    clip_grad_per_matrix(model.parameters(), recipe.max_grad_norm, S)
                else:
                    clip_grad_norm_per_copy(model.parameters(), recipe.max_grad_norm, S)
                optimizer.step()
                model.zero_nil()
                total_loss += losses.detach().double()
                total_wrong += (logits.detach().argmax(dim=2) != answers).sum(dim=1)
            epoch_counter += 1
            total_loss, total_wrong = total_loss.cpu(), total_wrong.cpu()  # the epoch's one read of the metrics
            if not torch.isfinite(total_loss).all():
                raise FloatingPointError(f"{desc}: training loss became non-finite in epoch {epoch_counter}")
            results = evaluate_copies(model, valid, recipe.eval_batch, linear=linear)
            seen = steps_per_epoch * recipe.batch_size
            lr_now = optimizer.param_groups[0]["lr"]
            improved = []
            for s, res in enumerate(results):
                histories[s].log(epoch_counter, train_loss=float(total_loss[s]) / seen,
                                 train_error=int(total_wrong[s]) / seen, valid_loss=res["loss"],
                                 valid_error=res["error"], lr=lr_now, linear=float(linear))
                if not linear and (res["error"], res["loss"]) < (best_error[s], best_loss[s]):
                    best_error[s], best_loss[s], best_epoch[s] = res["error"], res["loss"], epoch_counter
                    improved.append(s)
            if improved:
                chosen = torch.zeros(S, dtype=torch.bool)
                chosen[improved] = True
                chosen = chosen.to(device)
                with torch.no_grad():
                    for name, value in model.state_dict().items():
                        sel = chosen.view(S, *([1] * (value.dim() - 1)))
                        best_state[name] = torch.where(sel, value, best_state[name])
            if log is not None:
                errs = " ".join(f"{r['error']:.3f}" for r in results[:8])
                log(f"{desc} epoch {epoch_counter:3d} {phase:7s} lr {lr_now:.5f} "
                    f"train err {float(total_wrong.float().mean()) / seen:.3f} valid err {errs}"
                    f"{' ...' if S > 8 else ''} ({time.perf_counter() - start_time:.0f} s)")
            if linear:
                mean_loss = sum(r["loss"] for r in results) / S
                ls_best, ls_stale = (mean_loss, 0) if mean_loss < ls_best else (ls_best, ls_stale + 1)
            if report is not None and report_every and not linear and epoch % report_every == 0:
                report(epoch_counter, FitResult(list(best_epoch), list(best_error), histories,
                                                time.perf_counter() - start_time, asdict(recipe)), best_state)
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"valid err {sum(r['error'] for r in results) / S:.3f}", refresh=False)
    if bar is not None:
        bar.close()
    if any(e >= 0 for e in best_epoch):
        model.load_state_dict(best_state)
    return FitResult(best_epoch, best_error, histories, time.perf_counter() - start_time, asdict(recipe))


def load_memn2n(path) -> tuple[MemN2N, dict]:
    """Rebuild a one-copy :class:`MemN2N` from a checkpoint written by the benchmark or the notebook.

    Returns:
        (model in eval mode, payload) where ``payload["extra"]`` holds e.g. ``vocab`` (list of words),
        ``tasks``, ``test_error`` and ``payload["history"]`` the per-epoch :class:`History`.
    """
    from mem_tutorial.train import load_checkpoint

    # save_checkpoint records torch.__version__ (a TorchVersion, a str subclass): allow that one class in the
    # weights-only unpickler; everything else stays restricted.
    with torch.serialization.safe_globals([torch.torch_version.TorchVersion]):
        payload = load_checkpoint(path)
    model = MemN2N(MemN2NConfig(**payload["config"]["model"]))
    model.load_state_dict(payload["state_dict"])
    return model.eval(), payload
