"""A TF-IDF text memory: the course's own retrieval keys for retrieve-then-generate (Chapter 7).

Shapes: N documents, Q questions, V vocabulary of the stored documents.

A document's key is its TF-IDF vector (Salton & Buckley 1988; Manning et al. 2008, Ch. 6), unit-normalised:

    tf(w, d) = count of w in d,   idf(w) = log((1 + N) / (1 + df(w))) + 1,   key(d) = tf·idf / |tf·idf|,

and a question is scored against every key by the cosine (Chapter 1's similarity). Words that occur in every
document ("the", "of", "is") get the smallest idf and count least; rare words (a name) count most.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import torch

from mem_tutorial.memory.index import ExactIndex


class TfidfMemory:
    """Stored sentences with TF-IDF keys; ``retrieve`` returns the k most similar for each question.

    ``replace`` edits a sentence in place (its key is recomputed with the idf of the current memory).
    """

    def __init__(self, texts: Sequence[str]):
        self.texts = list(texts)
        self._fit()

    def _fit(self) -> None:
        docs = [t.split() for t in self.texts]
        self.words = sorted({w for d in docs for w in d})
        self.pos = {w: i for i, w in enumerate(self.words)}
        df = Counter(w for d in docs for w in set(d))
        n = len(docs)
        self.idf = torch.tensor([math.log((1 + n) / (1 + df[w])) + 1 for w in self.words], dtype=torch.float64)
        self.keys = self.vectors(self.texts)
        self.index = ExactIndex(metric="cosine").build(self.keys)

    def vectors(self, texts: Sequence[str]) -> torch.Tensor:
        """[len(texts), V] TF-IDF vectors (words outside the memory's vocabulary are ignored)."""
        out = torch.zeros(len(texts), len(self.words), dtype=torch.float64)
        for i, t in enumerate(texts):
            for w, c in Counter(t.split()).items():
                if w in self.pos:
                    out[i, self.pos[w]] = c
        return out * self.idf

    def retrieve(self, questions: Sequence[str], k: int) -> tuple[torch.Tensor, list[list[str]]]:
        """(cosine scores [Q, k], texts) of the k best sentences per question, best first."""
        scores, ids = self.index.search(self.vectors(questions), k)
        return scores, [[self.texts[int(i)] for i in row] for row in ids]

    def scores(self, question: str) -> torch.Tensor:
        """[N] cosine of the question with every stored sentence."""
        q = self.vectors([question])
        q = q / q.norm().clamp_min(1e-12)
        return (self.index.keys @ q.T).squeeze(-1)

    def replace(self, i: int, text: str) -> None:
        self.texts[i] = text
        self._fit()
