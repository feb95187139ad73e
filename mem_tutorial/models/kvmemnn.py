"""Key-Value Memory Network (Miller et al. 2016, Section 3) with bag-of-words feature maps, over any memories.

Pipeline for a question x (tokens) and a list of memories (key tokens, value tokens):

1. **Key hashing** (``mem_tutorial.data.hashing``): keep the memories whose key shares a rare word with x.
2. **Feature maps** Phi: bags of words. ``A Phi_X(x)``, ``A Phi_K(k)`` and ``A Phi_V(v)`` are sums of token
   embeddings (one matrix A, as in the paper; padding embeds to 0).
3. **Hops** j = 1..H (:mod:`mem_tutorial.memory.keyvalue`): p = Softmax(q_j . A Phi_K(k)) over the hashed
   memories (padding masked out), o = sum_i p_i A Phi_V(v_i), q_{j+1} = R_j (q_j + o).
4. **Answer**: scores q_{H+1} . B Phi_Y(y) over the candidate entities y; the prediction is the argmax.

Design choice (documented, not in the paper): **entities are not trained**. Words ("directed", "who",
"directed_by") get learned embeddings; an entity ("The Silent River", "Ada Moreau", "1994") is embedded by a
fixed pseudo-random unit vector derived from its name (a hashing-trick feature), in two dictionaries:
``in`` for questions and keys (Phi_X, Phi_K) and ``out`` for values and candidates (Phi_V, Phi_Y). Window +
centre memories encode the window's centre entity with the second dictionary, ``out``, as Miller et al. 2016,
Section 3.2 do ("we double the size, D, of the dictionary and encode the center of the window and the value
using the second dictionary"): a centre code is nearly orthogonal to every ``in`` code, so a key's centre does
not match the question's own entities (it is "more related to the answer") but matches, from the second hop on,
the values read by the first (q_2 = R_1 (q_1 + o_1) carries ``out`` codes). Each use has one learned scale
(``in``, centre, ``out``). Random codes
in d dimensions are nearly orthogonal, so a question's entity matches exactly the keys that mention it, and
``B Phi_Y(y) . o`` is large exactly for the entities in the values just read. The trained weights (word
embeddings, R_j, B, three scales) learn *how to read* -- which relation a question asks for -- and cannot
store which director made which film. Hence facts come from memory only, and a film added at test time (with
people the model never saw) is answered from its new memories without retraining (Chapter 5, edit experiment).
The embedding is block-diagonal (words in the first ``word_dim`` coordinates, entity codes in the last
``entity_dim``) so learned word vectors and entity codes never interfere in the dot products.

Second documented choice: by default (``KVReader(restrict_candidates=True)``) the candidates y scored for a
question are the entities present in its hashed memories' values, i.e. the answer must come from what was read;
the paper scores every KB entity (``restrict_candidates=False``; 90.5 % instead of 97.9 % hits@1 on the
generated KB, see benchmarks/RESULTS.md).

Symbols: B batch, K memories per question (after hashing), L tokens per key/value/question, E entities,
d embedding size, H hops.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from mem_tutorial.data.hashing import STOP_WORDS, build_inverted_index, key_hashing, rank_hashed
from mem_tutorial.memory.keyvalue import candidate_scores, hop_update, key_addressing, value_reading

PAD, UNK = "<pad>", "<unk>"
#: Default key-hashing frequency cut-off F for the generated KB (the paper used F = 1000 on 100k+ memories).
DEFAULT_MAX_FREQUENCY = 100
#: Score given to candidates excluded by ``KVBatch.candidate_mask`` (finite, so losses stay finite).
CANDIDATE_MASK_SCORE = -1e9
#: Default bound on the memories kept per question after hashing (not in the paper; bounds batch size).
DEFAULT_MAX_MEMORIES = 128


def entity_codes(
    names: Sequence[str],
    dim: int,
    dictionary: str,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Fixed unit-norm pseudo-random codes for entity names: [E, d], deterministic in (name, dictionary).

    Computed in float64 on the host (a data-preparation step, once per reader), then returned in ``dtype`` on
    ``device``. The code of a name does not depend on which other names are listed, so an entity added later
    gets the same kind of code as those seen in training.
    """
    out = np.empty((len(names), dim), dtype=np.float64)
    for i, name in enumerate(names):
        seed = int.from_bytes(hashlib.sha256(f"{dictionary}|{name}".encode()).digest()[:8], "little")
        v = np.random.default_rng(seed).standard_normal(dim)
        out[i] = v / np.linalg.norm(v)
    return torch.tensor(out, dtype=dtype, device=device)


class Vocab:
    """Word <-> id for the non-entity tokens; 0 is padding, 1 the unknown word."""

    def __init__(self, words: Iterable[str] = ()):
        self.itos = [PAD, UNK]
        self.stoi = {PAD: 0, UNK: 1}
        for w in words:
            self.add(w)

    def add(self, word: str) -> int:
        if word not in self.stoi:
            self.stoi[word] = len(self.itos)
            self.itos.append(word)
        return self.stoi[word]

    def __len__(self) -> int:
        return len(self.itos)

    def __getitem__(self, word: str) -> int:
        return self.stoi.get(word, 1)


class KVBatch(NamedTuple):
    """Encoded questions with their hashed memories (padding: word id 0, entity id E, ``key_mask`` False).

    Shapes: question_words [B, Lq], question_entities [B, Lq]; key_words / key_entities / key_centers /
    value_words / value_entities [B, K, L]; key_mask [B, K]; memory_ids [B, K] (index into the memory list,
    -1 for padding); codes_in / codes_out [E + 1, d_e] fixed entity codes (row E is zero); candidates [C] entity
    ids scored as answers; candidate_mask [B, C] which candidates each question may answer (all True, or with
    ``KVReader(restrict_candidates=True)`` only the entities in its hashed memories' values).
    """

    question_words: torch.Tensor
    question_entities: torch.Tensor
    key_words: torch.Tensor
    key_entities: torch.Tensor
    key_centers: torch.Tensor
    value_words: torch.Tensor
    value_entities: torch.Tensor
    key_mask: torch.Tensor
    memory_ids: torch.Tensor
    codes_in: torch.Tensor
    codes_out: torch.Tensor
    candidates: torch.Tensor
    candidate_mask: torch.Tensor


class KVOutput(NamedTuple):
    """Model output: ``scores`` [B, C] over the candidates, ``weights`` [H, B, K] key addressing per hop,
    ``queries`` [H + 1, B, d] (q_1 .. q_{H+1})."""

    scores: torch.Tensor
    weights: torch.Tensor
    queries: torch.Tensor


def _pad(rows: Sequence[Sequence[int]], fill: int, min_len: int = 1) -> torch.Tensor:
    width = max([min_len] + [len(r) for r in rows])
    out = torch.full((len(rows), width), fill, dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out


class KVReader:
    """Turns questions and a memory list into :class:`KVBatch` es: vocab, entity table, inverted index.

    Args:
        entities: the entity names (tokens that are entities rather than words); candidates are all of them
            unless ``candidate_types``/``candidates`` restrict it.
        memories: objects with ``key``, ``value`` and ``center`` token tuples (``mem_tutorial.data.moviekb.Memory``).
        vocab: the word vocabulary (a trained model's); by default built from the memories.
        entity_dim: the model's entity block size d_e (for the entity codes).
        max_frequency: key hashing's F. max_memories: keep at most this many hashed memories per question.
        restrict_candidates: score as answers only the entities found in the question's hashed memories'
            values (not in the paper, which scores every KB entity; see the chapter's design note). It makes
            the answer come from what was read and removes the cross-talk of hundreds of unrelated codes.
    """

    def __init__(
        self,
        entities: Sequence[str],
        memories: Sequence,
        vocab: Vocab | None = None,
        entity_dim: int = 64,
        max_frequency: int = DEFAULT_MAX_FREQUENCY,
        max_memories: int | None = DEFAULT_MAX_MEMORIES,
        stop_words: Iterable[str] = STOP_WORDS,
        restrict_candidates: bool = True,
    ):
        self.entities = list(entities)
        self.entity_id = {e: i for i, e in enumerate(self.entities)}
        self.memories = list(memories)
        self.vocab = vocab if vocab is not None else Vocab(
            t for m in self.memories for t in (*m.key, *m.value) if t not in self.entity_id
        )
        self.entity_dim, self.max_frequency, self.max_memories = entity_dim, max_frequency, max_memories
        self.restrict_candidates = restrict_candidates
        dim = entity_dim
        self.stop_words = frozenset(stop_words)
        self.keys = [tuple(m.key) + tuple(m.center) for m in self.memories]
        self.index = build_inverted_index(self.keys)
        E = len(self.entities)
        zero = torch.zeros(1, dim)  # the padding entity's code (row E); the model casts codes to its dtype/device
        self.codes_in = torch.cat([entity_codes(self.entities, dim, "in"), zero])
        self.codes_out = torch.cat([entity_codes(self.entities, dim, "out"), zero])
        self.candidates = torch.arange(E)
        # every memory encoded once; row M is the padding memory
        w, e = self._split_many([m.key for m in self.memories])
        self.key_words, self.key_entities = w, e
        self.key_centers = self._split_many([m.center for m in self.memories])[1]
        self.value_words, self.value_entities = self._split_many([m.value for m in self.memories])

    # -------------------------------------------------------------- encoding

    def _split(self, tokens: Sequence[str]) -> tuple[list[int], list[int]]:
        words, ents = [], []
        for t in tokens:
            if t in self.entity_id:
                ents.append(self.entity_id[t])
            else:
                words.append(self.vocab[t])
        return words, ents

    def _split_many(self, token_lists: Sequence[Sequence[str]]) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = [self._split(t) for t in token_lists] + [([], [])]
        return _pad([p[0] for p in pairs], 0), _pad([p[1] for p in pairs], len(self.entities))

    def hash(self, question: Sequence[str]) -> list[int]:
        """Memory ids selected for a tokenised question (key hashing, then the ``max_memories`` bound)."""
        ids = key_hashing(question, self.index, self.max_frequency, self.stop_words)
        return rank_hashed(question, self.keys, ids, self.index, self.max_memories, self.stop_words)

    def encode(self, questions: Sequence[Sequence[str]], device: torch.device | str = "cpu") -> KVBatch:
        """Encode tokenised questions and gather their hashed memories into one padded :class:`KVBatch`."""
        qw, qe = self._split_many(questions)
        qw, qe = qw[:-1], qe[:-1]
        hashed = [self.hash(q) for q in questions]
        M = len(self.memories)
        ids = _pad(hashed, -1)
        mask = ids >= 0
        rows = torch.where(mask, ids, torch.full_like(ids, M))
        E = len(self.entities)
        value_entities = self.value_entities[rows]
        if self.restrict_candidates:
            flat = value_entities.flatten(1)  # padding rows hold entity id E
            cand = torch.zeros(len(questions), E + 1, dtype=torch.bool).scatter_(1, flat, True)[:, :E]
        else:
            cand = torch.ones(len(questions), E, dtype=torch.bool)
        t = lambda x: x.to(device)  # noqa: E731
        return KVBatch(
            t(qw), t(qe),
            t(self.key_words[rows]), t(self.key_entities[rows]), t(self.key_centers[rows]),
            t(self.value_words[rows]), t(value_entities),
            t(mask), t(ids), t(self.codes_in), t(self.codes_out), t(self.candidates), t(cand),
        )

    def answer_targets(self, answers: Sequence[Sequence[str]], device: torch.device | str = "cpu") -> torch.Tensor:
        """Multi-hot [B, C] of the correct answers among the candidates."""
        target = torch.zeros(len(answers), len(self.candidates), dtype=torch.bool)
        for i, ans in enumerate(answers):
            for a in ans:
                if a in self.entity_id:
                    target[i, self.entity_id[a]] = True
        return target.to(device)


# ------------------------------------------------------------------------------------------------- the model


@dataclass
class KVConfig:
    """Hyper-parameters that rebuild a :class:`KVMemNN` (stored in checkpoints)."""

    n_words: int
    word_dim: int = 32
    entity_dim: int = 64
    hops: int = 2
    init_std: float = 0.1


class KVMemNN(nn.Module):
    """Key-Value Memory Network (Miller et al. 2016, Section 3). Parameters only; ``forward`` is pure.

    The embedding size is d = ``word_dim + entity_dim``: the embedding matrix A is block-diagonal, words in the
    first ``word_dim`` coordinates (learned, ``A_words`` [n_words, word_dim], shared by Phi_X, Phi_K, Phi_V as in
    the paper) and entities in the last ``entity_dim`` (fixed codes, see the module docstring), so learned word
    vectors and entity codes never interfere in the dot products. Other parameters: ``R`` [H, d, d] the hop
    matrices R_j (initialised to the identity), ``B`` [d, d] the answer map applied to the candidates'
    features, and ``log_scale`` [3] the log-scales of the entity codes as used in questions and keys (``in``),
    window centres (``out`` codes, the paper's second dictionary, Section 3.2) and values/candidates (``out``).
    The fixed codes carried by a batch are cast to the model's dtype and device in :meth:`embed`.
    """

    def __init__(self, n_words: int, word_dim: int = 32, entity_dim: int = 64, hops: int = 2, init_std: float = 0.1):
        super().__init__()
        if hops < 1:
            raise ValueError(f"hops must be >= 1, got {hops}")
        self.config = KVConfig(n_words, word_dim, entity_dim, hops, init_std)
        dim = word_dim + entity_dim
        self.A_words = nn.Embedding(n_words, word_dim, padding_idx=0)
        nn.init.normal_(self.A_words.weight, std=init_std)
        with torch.no_grad():
            self.A_words.weight[0].zero_()
        self.R = nn.Parameter(torch.eye(dim).repeat(hops, 1, 1))
        self.B = nn.Parameter(torch.eye(dim))
        self.log_scale = nn.Parameter(torch.zeros(3))  # entity codes: in (X, K), centre (K; out codes), out (V, Y)

    @property
    def hops(self) -> int:
        return self.R.shape[0]

    @property
    def entity_dim(self) -> int:
        return self.config.entity_dim

    def _bag(self, words: torch.Tensor, entities: torch.Tensor, codes: torch.Tensor, scale: torch.Tensor):
        """Bag-of-tokens feature [..., d]: [sum of word embeddings, scale * sum of entity codes]."""
        return torch.cat([self.A_words(words).sum(-2), scale * codes[entities].sum(-2)], dim=-1)

    def embed(self, batch: KVBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """A Phi_X(x) [B, d], A Phi_K(k) [B, K, d], A Phi_V(v) [B, K, d] and B Phi_Y(y) [C, d]."""
        if batch.codes_in.shape[-1] != self.entity_dim:
            raise ValueError(
                f"the batch's entity codes have {batch.codes_in.shape[-1]} dimensions, the model expects "
                f"{self.entity_dim}: build the KVReader with entity_dim={self.entity_dim}"
            )
        s_in, s_center, s_out = self.log_scale.exp()
        codes_in, codes_out = batch.codes_in.to(self.B), batch.codes_out.to(self.B)  # model dtype and device
        q = self._bag(batch.question_words, batch.question_entities, codes_in, s_in)
        keys = self._bag(batch.key_words, batch.key_entities, codes_in, s_in)
        # Window + centre encoding (Miller et al. 2016, Sec. 3.2): the centre in the second dictionary (out codes)
        center = s_center * codes_out[batch.key_centers].sum(-2)
        keys = keys + torch.cat([torch.zeros_like(keys[..., : -self.entity_dim]), center], dim=-1)
        values = self._bag(batch.value_words, batch.value_entities, codes_out, s_out)
        y = s_out * codes_out[batch.candidates]
        y = torch.cat([y.new_zeros(y.shape[0], self.config.word_dim), y], dim=-1)  # Phi_Y: entity block only
        return q, keys, values, y @ self.B.transpose(0, 1)

    def forward(self, batch: KVBatch) -> KVOutput:
        q, keys, values, cands = self.embed(batch)
        queries, weights = [q], []
        for j in range(self.hops):
            p = key_addressing(q, keys, batch.key_mask)
            o = value_reading(p, values)
            q = hop_update(q, o, self.R[j])
            weights.append(p)
            queries.append(q)
        scores = candidate_scores(q, cands)
        scores = scores.masked_fill(~batch.candidate_mask, CANDIDATE_MASK_SCORE)
        return KVOutput(scores, torch.stack(weights), torch.stack(queries))


def answer_loss(scores: torch.Tensor, targets: torch.Tensor, candidate_mask: torch.Tensor | None = None):
    """-log sum_{y correct} Softmax(scores)_y, averaged over the questions (several answers allowed).

    With ``candidate_mask`` [B, C], answers outside it are dropped and questions with no answer left (key
    hashing missed every fact they need) are left out of the average: no gradient can help them. No host
    synchronisation: the questions left out are masked, not indexed away (0 when no question has an answer).
    """
    if candidate_mask is not None:
        targets = targets & candidate_mask
    ok = targets.any(-1)  # [B]
    log_p = torch.log_softmax(scores, dim=-1)
    # a question with no answer left sums over all candidates instead: log 1 = 0, finite, and masked out below
    keep = targets | ~ok.unsqueeze(-1)
    per_question = -torch.logsumexp(log_p.masked_fill(~keep, float("-inf")), dim=-1)  # [B]
    return (per_question * ok).sum() / ok.sum().clamp_min(1)


def hits_tensor(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """:func:`hits_at_1` as a 0-dim tensor on the scores' device (no host synchronisation)."""
    top = scores.argmax(-1)
    return targets.gather(-1, top.unsqueeze(-1)).squeeze(-1).to(scores.dtype).mean()


def hits_at_1(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """Fraction of questions whose top-scored candidate is one of the correct answers."""
    return hits_tensor(scores, targets).item()


# ------------------------------------------------------------------------------------------------- training


def build_vocab(memories: Sequence, questions: Sequence[Sequence[str]], entities: Iterable[str]) -> Vocab:
    """Word vocabulary of the memories' and questions' non-entity tokens (first-seen order, deterministic)."""
    ents = set(entities)
    tokens = (t for seq in [*(m.key + m.value for m in memories), *questions] for t in seq)
    return Vocab(t for t in tokens if t not in ents)


def train_kvmemnn(
    model: KVMemNN,
    reader: KVReader,
    questions: Sequence[Sequence[str]],
    answers: Sequence[Sequence[str]],
    steps: int,
    batch_size: int = 32,
    lr: float = 0.01,
    seed: int = 0,
    desc: str = "KV-MemNN",
    max_grad_norm: float = 5.0,
):
    """Train with Adam on minibatches of questions; returns the :class:`mem_tutorial.train.History`.

    Questions are encoded once (hashing included) and minibatches drawn with a seeded generator on the host; a
    step does not synchronise with the device (the memories kept per minibatch are counted from a host copy of
    the per-question counts, and the metrics are returned as device tensors).
    """
    from mem_tutorial.train import train

    device = next(model.parameters()).device
    full = reader.encode(questions, device)
    targets = reader.answer_targets(answers, device)
    counts = full.key_mask.sum(-1).cpu()  # [n] hashed memories per question, once, on the host
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    n = len(questions)

    def step(i: int) -> dict[str, torch.Tensor]:
        idx_host = torch.randint(0, n, (min(batch_size, n),), generator=gen)
        idx = idx_host.to(device)
        batch = take(full, idx, k=max(1, int(counts[idx_host].max())))
        out = model(batch)
        loss = answer_loss(out.scores, targets[idx], batch.candidate_mask)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        opt.step()
        return {"loss": loss.detach(), "hits@1": hits_tensor(out.scores.detach(), targets[idx])}

    return train(step, steps, desc=desc, log_every=max(1, steps // 100), plot_metrics=("loss",))


def take(batch: KVBatch, idx: torch.Tensor, k: int | None = None) -> KVBatch:
    """Rows ``idx`` of a batch (shared fields -- codes, candidates -- kept), trimmed to the first ``k`` memories.

    ``k`` defaults to the longest selected row's memory count, read from the device (a host synchronisation);
    a training loop passes it from a host-side count instead.
    """
    if k is None:
        mask = batch.key_mask[idx]
        k = max(1, int(mask.sum(-1).max().item())) if mask.numel() else 1
    per_q = {"question_words", "question_entities"}
    shared = {"codes_in", "codes_out", "candidates"}
    per_q.add("candidate_mask")
    fields = {}
    for name, value in batch._asdict().items():
        if name in shared:
            fields[name] = value
        elif name in per_q:
            fields[name] = value[idx]
        else:
            fields[name] = value[idx][:, :k]
    return KVBatch(**fields)


@torch.no_grad()
def evaluate(model: KVMemNN, reader: KVReader, questions, answers, batch_size: int = 256) -> float:
    """hits@1 of ``model`` on tokenised questions (fraction in [0, 1])."""
    model.eval()
    device = next(model.parameters()).device
    hits = 0.0
    for start in range(0, len(questions), batch_size):
        qs, ans = questions[start : start + batch_size], answers[start : start + batch_size]
        out = model(reader.encode(qs, device))
        hits += hits_at_1(out.scores, reader.answer_targets(ans, device)) * len(qs)
    model.train()
    return hits / max(1, len(questions))


@torch.no_grad()
def answer(model: KVMemNN, reader: KVReader, question: Sequence[str], top: int = 5) -> dict:
    """Answer one tokenised question and explain it.

    Returns a dict with ``answers`` (top candidates with probabilities), ``memories`` (the hashed memory ids)
    and ``weights`` ([H, K] key addressing per hop, aligned with ``memories``).
    """
    model.eval()
    device = next(model.parameters()).device
    batch = reader.encode([question], device)
    out = model(batch)
    probs = torch.softmax(out.scores[0], -1)
    p, i = probs.topk(min(top, probs.numel()))
    k = int(batch.key_mask[0].sum())
    model.train()
    return {
        "answers": [(reader.entities[int(c)], float(v)) for v, c in zip(p, i)],
        "memories": batch.memory_ids[0, :k].tolist(),
        "weights": out.weights[:, 0, :k].cpu(),
    }


def timed(fn, *args, **kwargs):
    """(result, seconds) of ``fn(*args, **kwargs)``."""
    t0 = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - t0


__all__ = [
    "KVBatch", "KVConfig", "KVMemNN", "KVOutput", "KVReader", "Vocab", "answer", "answer_loss", "build_vocab",
    "entity_codes", "evaluate", "hits_at_1", "hits_tensor", "take", "train_kvmemnn", "DEFAULT_MAX_FREQUENCY",
    "DEFAULT_MAX_MEMORIES",
]


# ------------------------------------------------------------------------------------------------- movie QA


CHECKPOINT_DIR = __import__("pathlib").Path(__file__).resolve().parent.parent / "checkpoints"


def movie_reader(kb, kind: str, vocab: Vocab | None = None, entity_dim: int = 64, window: int = 7,
                 **kwargs) -> KVReader:
    """A :class:`KVReader` over the memories of ``kind`` (``mem_tutorial.data.moviekb.MEMORY_KINDS``) of a KB."""
    from mem_tutorial.data.moviekb import build_memories

    return KVReader(kb.entities, build_memories(kb, kind, window), vocab, entity_dim=entity_dim, **kwargs)


def load_pretrained(kind: str = "kb", path=None) -> tuple[KVMemNN, Vocab, dict]:
    """The shipped checkpoint for memories of ``kind`` (``"kb"`` or ``"window+center+title"``).

    Returns (model, vocab, payload); ``payload["extra"]`` holds the KB generator's arguments, the memory kind
    and the benchmark figures measured when it was trained.
    """
    from mem_tutorial.train import load_checkpoint

    path = path or CHECKPOINT_DIR / f"kvmemnn_{kind.replace('+', '_')}.pt"
    payload = load_checkpoint(path)
    model = KVMemNN(**payload["config"])
    model.load_state_dict(payload["state_dict"])
    return model, Vocab(payload["extra"]["vocab"][2:]), payload
