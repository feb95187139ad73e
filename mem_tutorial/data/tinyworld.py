"""A tiny generated world of people and their facts, for the language-model chapter (Chapter 7).

Each person has four facts: a city, a job, a pet and a sport. The values are drawn at random (seeded), so a
language model can only know them from text. Two disjoint groups of people make two *worlds*:

- world A (:func:`make_world` with ``group=0``): the language model trains on its text;
- world B (``group=1``): text the model never trains on; it fills the kNN-LM datastore and the text memory.

All person names are in the vocabulary and are trained: the retrieval-augmented training examples
(:func:`rag_example`) use *random* facts about *any* person (they teach reading a fact from the context, not facts
about anyone). Text is a list of lower-case word tokens; every name and value is one token.

Renderings (:func:`render_person`): a paragraph stating a person's four facts, in a random order, each with one
of two templates per relation (so two renderings of the same facts are different texts). Memory sentences
(:func:`fact_sentence`) use one fixed template that names the relation ("the city of ada is oslo ."), so that a
bag-of-words retriever can match a question ("which city does ada live in ?") to it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

NAMES = (
    "ada aldo alma anton aria basil bea bruno cleo cyril dara dmitri edda elio esme felix fern gideon greta hugo "
    "ines ivo juno kasper lena leif lotte marco mila nico nora otto pia quentin rosa rune sasha silas tess ugo "
    "vera viggo wanda xavi yara yves zora emil ilse milo abel agnes boris carla dante elsa farah gus hana igor "
    "jonas kira lars maya nils olga pavel rita sven tara umar vik wren axel bodil cato dirk enzo flora hilde"
).split()
VALUES: dict[str, tuple[str, ...]] = {
    "city": tuple("oslo lima rome kyiv baku doha quito accra hanoi sofia riga porto turin lyon graz cork".split()),
    "job": tuple("baker pilot nurse judge miner tailor farmer sailor potter barber chemist banker".split()),
    "pet": tuple("cat dog parrot turtle rabbit hamster lizard goldfish".split()),
    "sport": tuple("tennis rugby chess hockey rowing boxing golf fencing judo cricket".split()),
}
RELATIONS = tuple(VALUES)
#: Two paragraph templates per relation ({p}: person, {v}: value).
TEMPLATES: dict[str, tuple[str, str]] = {
    "city": ("{p} lives in {v} .", "{p} has a home in {v} ."),
    "job": ("{p} works as a {v} .", "{p} earns a living as a {v} ."),
    "pet": ("{p} has a pet {v} .", "{p} looks after a {v} ."),
    "sport": ("{p} plays {v} .", "{p} spends weekends on {v} ."),
}
#: The memory sentence of a fact (names the relation, for retrieval).
FACT_TEMPLATE = "the {r} of {p} is {v} ."
QUESTIONS: dict[str, str] = {
    "city": "which city does {p} live in ?",
    "job": "what is the job of {p} ?",
    "pet": "which pet does {p} have ?",
    "sport": "which sport does {p} play ?",
}
SPECIALS = ("<pad>", "<bos>", "<eos>")
PROMPT_WORDS = ("fact", ":", "question", "answer")
PEOPLE_PER_WORLD = 40


@dataclass(frozen=True)
class World:
    """People and their facts: ``facts[person][relation] = value``."""

    people: tuple[str, ...]
    facts: dict[str, dict[str, str]]

    def value(self, person: str, relation: str) -> str:
        return self.facts[person][relation]

    def with_fact(self, person: str, relation: str, value: str) -> "World":
        """A copy with one fact changed (the worlds are immutable)."""
        facts = {p: dict(f) for p, f in self.facts.items()}
        facts[person][relation] = value
        return World(self.people, facts)


def random_facts(rng: random.Random) -> dict[str, str]:
    return {r: rng.choice(VALUES[r]) for r in RELATIONS}


def make_world(group: int, seed: int = 0, size: int = PEOPLE_PER_WORLD) -> World:
    """World ``group`` (0 = A, 1 = B): the people ``NAMES[group*size:(group+1)*size]`` with seeded random facts."""
    people = tuple(NAMES[group * size : (group + 1) * size])
    if len(people) < size:
        raise ValueError(f"only {len(NAMES)} names: group {group} of size {size} does not fit")
    rng = random.Random(f"tinyworld:{seed}:{group}")
    return World(people, {p: random_facts(rng) for p in people})


def vocabulary() -> list[str]:
    """Every token of the world's texts, specials first (index 0 is padding)."""
    words = set()
    for pair in TEMPLATES.values():
        for t in pair:
            words.update(t.split())
    for q in QUESTIONS.values():
        words.update(q.split())
    words.update(FACT_TEMPLATE.split())
    words.update(RELATIONS)
    words.update(PROMPT_WORDS)
    for vals in VALUES.values():
        words.update(vals)
    words.update(NAMES)
    words -= {"{p}", "{v}", "{r}"}
    return list(SPECIALS) + sorted(words)


def render_person(world: World, person: str, rng: random.Random) -> list[str]:
    """A paragraph (tokens) of the person's four facts, random order and templates."""
    order = list(RELATIONS)
    rng.shuffle(order)
    out: list[str] = []
    for r in order:
        out += rng.choice(TEMPLATES[r]).format(p=person, v=world.value(person, r)).split()
    return out


def fact_sentence(person: str, relation: str, value: str) -> str:
    """The memory sentence of one fact: "the city of ada is oslo ."."""
    return FACT_TEMPLATE.format(r=relation, p=person, v=value)


def question(person: str, relation: str) -> str:
    return QUESTIONS[relation].format(p=person)


def rag_prompt_text(facts: Sequence[str], q: str) -> str:
    """The course's retrieval-augmented prompt: "fact : <f1> fact : <f2> question : <q> answer :"."""
    return " ".join([f"fact : {f}" for f in facts] + [f"question : {q} answer :"])


def closed_book_example(world: World, rng: random.Random) -> list[str]:
    """A question about a person of ``world`` answered without context (the LM must know the fact)."""
    p, r = rng.choice(world.people), rng.choice(RELATIONS)
    return f"question : {question(p, r)} answer : {world.value(p, r)} .".split()


def rag_example(rng: random.Random, n_facts: int = 2) -> list[str]:
    """A retrieval-augmented example with *random* facts about a random person (teaches reading the context).

    One fact answers the question; the others are distractors about the same person (other relations) or
    about another person (same relation), in random order.
    """
    p = rng.choice(NAMES)
    r = rng.choice(RELATIONS)
    answer = rng.choice(VALUES[r])
    facts = [fact_sentence(p, r, answer)]
    for _ in range(n_facts - 1):
        if rng.random() < 0.5:
            r2 = rng.choice([x for x in RELATIONS if x != r])
            facts.append(fact_sentence(p, r2, rng.choice(VALUES[r2])))
        else:
            p2 = rng.choice([x for x in NAMES if x != p])
            facts.append(fact_sentence(p2, r, rng.choice(VALUES[r])))
    rng.shuffle(facts)
    return f"{rag_prompt_text(facts, question(p, r))} {answer} .".split()


def training_sequences(world: World, rng: random.Random, n: int, mix: tuple[float, float] = (0.5, 0.25)
                       ) -> list[list[str]]:
    """``n`` training texts: paragraphs of ``world`` (fraction ``mix[0]``), closed-book questions about it
    (``mix[1]``) and retrieval-augmented examples with random facts (the rest)."""
    out = []
    for _ in range(n):
        u = rng.random()
        if u < mix[0]:
            out.append(render_person(world, rng.choice(world.people), rng))
        elif u < mix[0] + mix[1]:
            out.append(closed_book_example(world, rng))
        else:
            out.append(rag_example(rng, n_facts=rng.choice((1, 2))))
    return out
