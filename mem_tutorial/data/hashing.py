"""Key hashing with an inverted index (Miller et al. 2016, Section 3, "Key Hashing").

Before any neural computation, a Key-Value Memory Network pre-selects from a large memory the few slots that
could be relevant to a question: "we use an inverted index to find a subset (k_h1, v_h1), ..., (k_hN, v_hN) of
memories of size N where the key shares at least one word with the question with frequency < F (to ignore stop
words)" (the paper uses F = 1000 on WikiMovies). This module is that step, in plain Python: no learning, fully
deterministic (memory ids come back sorted).

Conventions (the paper leaves them open):

- A memory is identified by its position in the list given to :func:`build_inverted_index`.
- A word's *frequency* is the number of memory keys that contain it (each key counted once), so "frequency < F"
  keeps words that occur in fewer than F keys.
- Matching is exact on tokens (already lower-cased / entity-linked by the caller); an optional set of stop words
  is ignored on top of the frequency cut-off.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

#: A few English function words that never select memories, whatever their frequency (the paper's F already
#: removes them on a large memory; on a small one they may be rare enough to pass the cut-off).
STOP_WORDS = frozenset(
    "a an the of in on at to is was were are be been by for from and or it its this that what which who whom "
    "whose when where how did do does with as ? . , !".split()
)


@dataclass
class InvertedIndex:
    """Word -> ids of the memories whose key contains it, and each word's frequency (number of such keys)."""

    postings: dict[str, list[int]] = field(default_factory=dict)
    size: int = 0

    def frequency(self, word: str) -> int:
        """Number of memory keys containing ``word`` (0 for an unknown word)."""
        return len(self.postings.get(word, ()))


def build_inverted_index(keys: Sequence[Iterable[str]]) -> InvertedIndex:
    """Build the inverted index of memory keys.

    Args:
        keys: one token sequence per memory (the key's words); memory i is ``keys[i]``.

    Returns:
        An :class:`InvertedIndex` whose postings list each memory id once per word, in increasing order.
    """
    postings: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        if isinstance(key, str):
            raise TypeError(f"keys[{i}] is a string ({key!r}); expected a sequence of tokens, e.g. key.split()")
        for word in dict.fromkeys(key):  # each word once per key, first-seen order
            postings.setdefault(word, []).append(i)
    return InvertedIndex(postings=postings, size=len(keys))


def key_hashing(
    question: Iterable[str],
    index: InvertedIndex,
    max_frequency: int,
    stop_words: Iterable[str] = STOP_WORDS,
) -> list[int]:
    """Ids of the memories whose key shares with the question at least one word of frequency < ``max_frequency``.

    Miller et al. 2016, Section 3, "Key Hashing" (their F = ``max_frequency``).

    Args:
        question: the question's tokens.
        index: the inverted index of the memory keys (:func:`build_inverted_index`).
        max_frequency: F; a word selects memories only if it occurs in fewer than F keys.
        stop_words: words never used for selection.

    Returns:
        The selected memory ids, sorted increasingly, without repeats (empty if no word qualifies).
    """
    if isinstance(question, str):
        raise TypeError("question is a string; pass its tokens (e.g. question.split())")
    stop = frozenset(stop_words)
    selected: set[int] = set()
    for word in set(question):
        if word in stop:
            continue
        ids = index.postings.get(word)
        if ids and len(ids) < max_frequency:
            selected.update(ids)
    return sorted(selected)


def rank_hashed(question: Iterable[str], keys: Sequence[Sequence[str]], ids: Sequence[int], index: InvertedIndex,
                limit: int | None, stop_words: Iterable[str] = STOP_WORDS) -> list[int]:
    """Keep at most ``limit`` of the hashed memory ids: those sharing the most question words, rarest first.

    Not in the paper (which keeps every hashed memory); used to bound the memory size per question. Order of
    preference: more shared non-stop words, then a smaller summed frequency of the shared words, then lower id.
    The result is sorted increasingly (deterministic).
    """
    if limit is None or len(ids) <= limit:
        return list(ids)
    stop = frozenset(stop_words)
    q = {w for w in question if w not in stop}

    def rank(i: int) -> tuple[int, int, int]:
        shared = q.intersection(keys[i])
        return (-len(shared), sum(index.frequency(w) for w in shared), i)

    return sorted(sorted(ids, key=rank)[:limit])
