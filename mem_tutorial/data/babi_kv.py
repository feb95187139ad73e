"""Key-value memories over bAbI stories: the bridge from Chapter 4 (MemN2N) to Chapter 5 (KV-MemNN).

A MemN2N memory slot is one sentence embedded twice (input m_i, output c_i). Written as key-value memories:

- ``kind="sentence"``: key = value = the sentence (plus a time word) -- MemN2N's memory, in KV form;
- ``kind="last-word"``: key = the sentence (plus a time word), value = its last word ("john went to the
  *kitchen*"): the value is what a "where is ...?" question wants, the key what finds it.

All examples' stories go into one memory list; each memory's key carries the token ``_story<N>`` of its example
and each question carries the same token, so key hashing (:mod:`mem_tutorial.data.hashing`, with F above the
longest story and below the number of stories) selects exactly the question's story, the way the paper's
inverted index selects the memories sharing a rare word with the question. The time word ``_t<age>`` (0 = most
recent sentence) plays the role of MemN2N's temporal encoding.

Uses Chapter 4's loader (:mod:`mem_tutorial.data.babi`) for the files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mem_tutorial.data.babi import BabiExample
from mem_tutorial.data.moviekb import Memory

KINDS = ("sentence", "last-word")


@dataclass
class BabiKV:
    """Memories, tokenised questions, answers and the candidate answer words (the "entities")."""

    memories: list[Memory]
    questions: list[list[str]]
    answers: list[tuple[str, ...]]
    entities: list[str]


def babi_kv(examples: Sequence[BabiExample], kind: str = "last-word", max_story: int = 50) -> BabiKV:
    """Key-value memories for bAbI examples (see the module docstring).

    Args:
        examples: parsed examples (``mem_tutorial.data.babi.load_task``).
        kind: ``"sentence"`` or ``"last-word"``.
        max_story: keep only the last ``max_story`` sentences of each story (MemN2N used 50).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {KINDS}")
    memories, questions, answers = [], [], []
    candidates: dict[str, None] = {}
    for n, ex in enumerate(examples):
        story_token = f"_story{n}"
        story = ex.story[-max_story:]
        for i, sentence in enumerate(story):
            time_token = f"_t{len(story) - 1 - i}"
            key = (*sentence, time_token, story_token)
            if kind == "sentence":
                value = tuple(sentence)
            else:
                value = (sentence[-1],)
                candidates.setdefault(sentence[-1])
            memories.append(Memory(key=key, value=value, film=f"story {n}"))
        questions.append([*ex.question, story_token])
        answers.append(ex.answer_words)
        for a in ex.answer_words:
            candidates.setdefault(a)
    return BabiKV(memories, questions, answers, list(candidates))
