"""bAbI stories as text memories: retrieve the supporting fact with a pretrained encoder, then read (Chapter 6).

Each statement of a story is one document of a :class:`~mem_tutorial.memory.text.TextMemory` (key = the
sentence encoder's embedding, value = the sentence); the question is encoded by the same encoder and the best
statement is retrieved. Nothing is trained. Two things decide whether it works:

* **time**: "where is Mary?" is answered by Mary's *latest* move, but all her moves are about equally similar
  to the question. Relevance alone picks one of them; relevance + recency (``recency`` > 0,
  :func:`~mem_tutorial.memory.text.recency_weighted`) picks the latest. MemN2N (Chapter 4) learns this with its
  temporal encoding; the DNC (Chapter 3) with its temporal links.
* **hops**: task 2 ("where is the milk?") needs two supporting facts: who had the milk, then where that person
  was. A second retrieval with a reformulated query ("where is mary", :func:`follow_up_query`) chains them,
  like MemN2N's second hop (u^{k+1} = u^k + o^k) but in text.

The reader is the simplest possible: the answer is the last word of the last retrieved statement that is a known
answer word (bAbI statements of tasks 1-2 end with the location or the object).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

from mem_tutorial.data.babi import BabiExample
from mem_tutorial.memory.text import DEFAULT_DECAY, Encoder, TextMemory

#: Verbs after which an object stays where it was put (bAbI task 2): the second hop must look before that statement.
DROP_VERBS = frozenset({"dropped", "discarded", "left", "put"})


class StoryRetrieval(NamedTuple):
    """The outcome of retrieve-then-read on one bAbI question."""

    answer: str  # "" when no retrieved statement ends with an answer word
    retrieved: tuple[int, ...]  # statement index retrieved at each hop (indices into ``example.story``)
    supporting_found: bool  # every supporting fact is among the retrieved statements
    correct: bool  # answer == example.answer


def story_texts(example: BabiExample) -> list[str]:
    """The story's statements as sentences (tokens joined by spaces), in story order."""
    return [" ".join(tokens) for tokens in example.story]


def question_text(example: BabiExample) -> str:
    """The question as a sentence, e.g. "where is mary?"."""
    return " ".join(example.question) + "?"


def follow_up_query(statement: str) -> str:
    """The second hop's query for task 2: "where is <actor>?" (bAbI statements begin with their actor)."""
    words = statement.split()
    if not words:
        raise ValueError("empty statement")
    return f"where is {words[0]}?"


def read_answer(statements: Sequence[str], answers: Iterable[str]) -> str:
    """The last word of the last statement (in the order given) whose last word is a known answer, else ""."""
    known = set(answers)
    for s in reversed(statements):
        last = s.split()[-1] if s.split() else ""
        if last in known:
            return last
    return ""


def retrieve_then_read_story(
    example: BabiExample,
    encoder: Encoder,
    answers: Iterable[str],
    hops: int = 1,
    recency: float = 0.0,
    decay: float = DEFAULT_DECAY,
) -> StoryRetrieval:
    """Answer one bAbI question by retrieval over its story: ``hops`` top-1 retrievals, then :func:`read_answer`.

    Hop 1 uses the question; hop h > 1 uses :func:`follow_up_query` of hop h-1's statement, looks only at
    statements before it when that statement puts the object down (:data:`DROP_VERBS`: the object stays where
    the actor was then), and only at statements that end with an answer word (what the reader can read: the
    answer-type filter of the movie reader). A statement already retrieved is not retrieved again.

    Args:
        example: a parsed bAbI question (its ``story`` holds the statements before the question).
        encoder: ``texts -> [N, D]`` unit-norm embeddings (wrap it in ``cached_encoder`` for many stories).
        answers: the answer vocabulary (e.g. every answer of the training set).
        hops: 1 for task 1, 2 for task 2.
        recency, decay: the recency term of ``TextMemory.retrieve`` (0: relevance only).
    """
    if hops < 1:
        raise ValueError(f"hops must be >= 1, got {hops}")
    texts = story_texts(example)
    if not texts:
        raise ValueError(f"example from {example.source or 'a story'} has no statements")
    answers = set(answers)
    memory = TextMemory(encoder=encoder)
    memory.add(texts)
    query, before, retrieved = question_text(example), None, []
    for hop in range(hops):
        if before == 0:
            break
        got = memory.retrieve([query], len(texts), recency=recency, decay=decay, before=before)
        fresh = [i for i in got.ids[0].tolist() if i not in retrieved
                 and (hop == 0 or texts[i].split()[-1] in answers)]  # later hops: statements the reader can read
        if not fresh:
            break
        i = fresh[0]
        retrieved.append(i)
        query = follow_up_query(texts[i])
        verb = texts[i].split()[1] if len(texts[i].split()) > 1 else ""
        before = i if verb in DROP_VERBS else None
    answer = read_answer([texts[i] for i in retrieved], answers)
    return StoryRetrieval(answer, tuple(retrieved), set(example.supporting) <= set(retrieved),
                          answer == example.answer)


def evaluate_story_retrieval(examples: Sequence[BabiExample], encoder: Encoder, answers: Iterable[str],
                             **kwargs) -> dict:
    """Supporting-fact retrieval accuracy and answer accuracy of :func:`retrieve_then_read_story` over examples.

    Returns ``{"questions": n, "supporting": fraction with every supporting fact retrieved, "answer": fraction
    answered correctly, "results": [StoryRetrieval, ...]}``.
    """
    if not examples:
        raise ValueError("no examples")
    answers = set(answers)
    results = [retrieve_then_read_story(e, encoder, answers, **kwargs) for e in examples]
    n = len(results)
    return {"questions": n, "supporting": sum(r.supporting_found for r in results) / n,
            "answer": sum(r.correct for r in results) / n, "results": results}
