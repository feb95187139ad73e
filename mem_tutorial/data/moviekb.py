"""An offline generator of a WikiMovies-style movie knowledge base, its questions, documents and memories.

WikiMovies (Miller et al. 2016, Section 4) asks questions such as "who directed Blade Runner?" that can be
answered from a knowledge base of (film, relation, object) triples or from the films' Wikipedia articles. This
module builds a small world of **fictional** films with the same relations (``directed_by``, ``written_by``,
``starred_actors``, ``release_year``, ``in_language``, ``has_genre``, ``has_tags``), seeded and sized by
arguments, in well under a second, so the chapter needs no download:

- :func:`generate_kb` -> :class:`MovieKB` (the facts; editable: :meth:`MovieKB.with_film`, :meth:`MovieKB.with_facts`);
- :func:`generate_questions` -> template questions for each relation and its inverse, each with *all* the
  answers the KB supports (hits@1 counts a prediction correct if it is any of them);
- :func:`render_documents` -> short articles stating the same facts in prose (with some "It ..." sentences, so
  reading documents is genuinely harder than reading the KB);
- memory builders as in the paper's Section 3/4: :func:`kb_memories` (key = subject + relation, value = object,
  with inverse relations), :func:`sentence_memories` (key = value = a sentence),
  :func:`window_memories` (windows of words around each entity mention; value = the centre entity; optionally the
  centre encoded with a separate dictionary and extra pairs whose value is the film title).

Tokens: text is lower-cased and split into words and punctuation, except that entity names (found by longest
match, see :func:`tokenize`) stay single tokens spelt as in the KB ("The Silent River", "Ada Moreau", "1994").
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

RELATIONS = (
    "directed_by",
    "written_by",
    "starred_actors",
    "release_year",
    "in_language",
    "has_genre",
    "has_tags",
)
#: Suffix of the inverse relations used in KB memories: (o, r + INVERSE, s) for each fact (s, r, o).
INVERSE = "_inv"

#: Entity type of each relation's object (the subject is always a film).
OBJECT_TYPE = {
    "directed_by": "person",
    "written_by": "person",
    "starred_actors": "person",
    "release_year": "year",
    "in_language": "language",
    "has_genre": "genre",
    "has_tags": "tag",
}

#: Question templates: "{e}" is the question's entity. Forward questions ask for a film's objects, inverse
#: questions for the films that have an object.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "directed_by": ("who directed {e}?", "who was the director of {e}?", "{e} was directed by who?"),
    "directed_by" + INVERSE: ("which films did {e} direct?", "what movies were directed by {e}?"),
    "written_by": ("who wrote {e}?", "who was the writer of {e}?", "who wrote the screenplay for {e}?"),
    "written_by" + INVERSE: ("which films did {e} write?", "what movies were written by {e}?"),
    "starred_actors": ("who starred in {e}?", "who acted in {e}?", "which actors were in {e}?"),
    "starred_actors" + INVERSE: ("which films did {e} star in?", "what movies did {e} act in?"),
    "release_year": ("when was {e} released?", "what year was {e} released?", "in which year did {e} come out?"),
    "release_year" + INVERSE: ("which films were released in {e}?", "what movies came out in {e}?"),
    "in_language": ("what language is {e} in?", "which language is spoken in {e}?"),
    "in_language" + INVERSE: ("which films are in {e}?", "what movies are spoken in {e}?"),
    "has_genre": ("what genre is {e}?", "what kind of film is {e}?"),
    "has_genre" + INVERSE: ("what are some {e} films?", "can you name a {e} movie?"),
    "has_tags": ("what is {e} about?", "what topics does {e} deal with?"),
    "has_tags" + INVERSE: ("which films are about {e}?", "what movies deal with {e}?"),
}

_FIRST = (
    "Ada Aldo Alma Anton Aria Basil Bea Bruno Cleo Cyril Dara Dmitri Edda Elio Esme Felix Fern Gideon Greta Hugo "
    "Ines Ivo Juno Kasper Lena Leif Lotte Marco Mila Nico Nora Otto Pia Quentin Rosa Rune Sasha Silas Tess Ugo "
    "Vera Viggo Wanda Xavi Yara Yves Zora Emil Ilse Milo"
).split()
_LAST = (
    "Abbott Alvarez Bergstrom Castellan Delacroix Draper Eklund Ferrante Galloway Hartmann Ibarra Jansen Kowalski "
    "Lindqvist Marchetti Novak Okafor Petrov Quist Rinaldi Sandoval Takeda Underhill Valdez Whitlock Yamada "
    "Zeller Moreau Brennan Castillo Duval Esposito Fairbanks Grimaldi Holm Iversen Kessler Larkin Mendel Nyberg "
    "Orsini Pallas Ruiz Sorensen Thorne Varga Wexler Ortega Falk Haddad"
).split()
_ADJ = (
    "Silent Crimson Hollow Golden Broken Distant Frozen Hidden Last Midnight Burning Velvet Iron Paper Glass "
    "Electric Wandering Forgotten Savage Quiet Bitter Painted Lonely Endless Restless Scarlet Silver Wicked "
    "Fading Northern Sunken Crooked Gentle"
).split()
_NOUN = (
    "River Harbor Garden Empire Lantern Orchard Mirror Voyage Kingdom Whisper Horizon Station Tide Meadow Circus "
    "Fortress Canyon Island Compass Theory Carnival Cathedral Desert Falcon Frontier Heist Labyrinth Machine "
    "Monsoon Nocturne Odyssey Pilgrim Prophet Raven Sonata Summit Tempest Verdict"
).split()
_LANGUAGES = (
    "English French German Spanish Italian Japanese Korean Hindi Swedish Portuguese Russian Mandarin Danish "
    "Turkish Polish Greek"
).split()
_GENRES = (
    "Drama Comedy Thriller Horror Western Musical Documentary Romance Animation Mystery Fantasy Adventure "
    "Crime Biography"
).split()
_TAGS = (
    "time travel|revenge|heist|artificial intelligence|small town|coming of age|space exploration|survival|"
    "betrayal|family secrets|road trip|haunted house|espionage|forbidden love|courtroom|boxing|chess|"
    "shipwreck|amnesia|jazz|vampires|pirates|mountaineering|elections|robots|dinosaurs|twins|circus life|"
    "undercover police|alien invasion|wine|opera|monks|cyberpunk|dragons|submarines|hurricanes|bank robbery|"
    "friendship|ghosts"
).split("|")

_TOKEN_RE = re.compile(r"\w+|[^\w\s]")


def _words(text: str) -> tuple[str, ...]:
    return tuple(_TOKEN_RE.findall(text.lower()))


@dataclass(frozen=True)
class Question:
    """A template question with every answer the KB supports.

    ``relation`` is the asked relation (with ``_inv`` for inverse questions), ``entity`` the entity it mentions.
    """

    text: str
    answers: tuple[str, ...]
    relation: str
    entity: str


@dataclass(frozen=True)
class Memory:
    """One key-value memory: token tuples for the key and the value.

    ``center`` holds the key's centre entity when it is encoded with its own dictionary (window + centre
    encoding); otherwise it is empty and the centre, if any, is part of ``key``. ``film`` names the film the
    memory comes from (for display).
    """

    key: tuple[str, ...]
    value: tuple[str, ...]
    center: tuple[str, ...] = ()
    film: str = ""


@dataclass
class MovieKB:
    """A movie knowledge base: ``facts[(film, relation)]`` is the tuple of objects, ``types[entity]`` its type.

    Films and people are the entities' names; years are strings ("1994"). Instances are treated as values:
    the editing methods return a new KB.
    """

    facts: dict[tuple[str, str], tuple[str, ...]]
    types: dict[str, str]
    doc_seed: int = 0
    _linker: dict[tuple[str, ...], str] | None = field(default=None, repr=False, compare=False)

    @property
    def films(self) -> list[str]:
        return [e for e, t in self.types.items() if t == "film"]

    @property
    def entities(self) -> list[str]:
        return list(self.types)

    def objects(self, film: str, relation: str) -> tuple[str, ...]:
        """The objects of (film, relation); empty if none."""
        return self.facts.get((film, relation), ())

    def subjects(self, relation: str, obj: str) -> tuple[str, ...]:
        """The films f with obj in objects(f, relation), in KB order."""
        return tuple(f for (f, r), objs in self.facts.items() if r == relation and obj in objs)

    def triples(self) -> list[tuple[str, str, str]]:
        """All (film, relation, object) facts, in KB order."""
        return [(f, r, o) for (f, r), objs in self.facts.items() for o in objs]

    def holds(self, subject: str, relation: str, obj: str) -> bool:
        """Whether the fact (subject, relation, obj) is in the KB; inverse relations are read backwards."""
        if relation.endswith(INVERSE):
            return subject in self.objects(obj, relation[: -len(INVERSE)])
        return obj in self.objects(subject, relation)

    # ------------------------------------------------------------------ editing (test-time memory updates)

    def with_film(self, title: str, facts: Mapping[str, Sequence[str]]) -> "MovieKB":
        """A copy of the KB with a new film and its facts (new people, years, ... are added as entities).

        Raises ValueError if the title is already an entity or a relation is unknown.
        """
        if title in self.types:
            raise ValueError(f"{title!r} is already an entity of the KB")
        kb = self._copy()
        kb.types[title] = "film"
        for relation, objects in facts.items():
            kb._set(title, relation, objects)
        return kb

    def with_facts(self, film: str, relation: str, objects: Sequence[str]) -> "MovieKB":
        """A copy of the KB where (film, relation) has exactly ``objects`` (e.g. change a film's director)."""
        if self.types.get(film) != "film":
            raise ValueError(f"{film!r} is not a film of the KB")
        kb = self._copy()
        kb._set(film, relation, objects)
        return kb

    def _copy(self) -> "MovieKB":
        return MovieKB(dict(self.facts), dict(self.types), self.doc_seed)

    def _set(self, film: str, relation: str, objects: Sequence[str]) -> None:
        if relation not in OBJECT_TYPE:
            raise ValueError(f"unknown relation {relation!r}; expected one of {RELATIONS}")
        if isinstance(objects, str):
            objects = (objects,)
        for o in objects:
            known = self.types.get(o)
            if known is None:
                self.types[o] = OBJECT_TYPE[relation]
            elif known != OBJECT_TYPE[relation]:
                raise ValueError(f"{o!r} is a {known}, not a {OBJECT_TYPE[relation]}")
        self.facts[(film, relation)] = tuple(objects)

    # ------------------------------------------------------------------ entity linking

    def linker(self) -> dict[tuple[str, ...], str]:
        """Lower-cased word tuple -> entity name, for :func:`tokenize`."""
        if self._linker is None or len(self._linker) != len(self.types):
            self._linker = {_words(e): e for e in self.types}
        return self._linker


def tokenize(text: str, kb: MovieKB) -> list[str]:
    """Split ``text`` into lower-cased words and punctuation, with each KB entity mention as one token.

    Entities are found by greedy longest match on words, so "who directed The Silent River?" becomes
    ``["who", "directed", "The Silent River", "?"]``.
    """
    words = _words(text)
    linker = kb.linker()
    longest = max((len(k) for k in linker), default=1)
    out, i = [], 0
    while i < len(words):
        for n in range(min(longest, len(words) - i), 0, -1):
            entity = linker.get(words[i : i + n])
            if entity is not None:
                out.append(entity)
                i += n
                break
        else:
            out.append(words[i])
            i += 1
    return out


# ---------------------------------------------------------------------- generation


def generate_kb(n_films: int = 300, seed: int = 0) -> MovieKB:
    """Generate a KB of ``n_films`` fictional films (deterministic in ``seed``; ~10 ms for 300 films).

    Each film has 1-2 directors, 1-2 writers (sometimes a director), 2-4 actors, one year (1950-2019), one
    language, 1-2 genres and 1-3 tags. People are drawn from a pool about 1.5x the number of films, so most
    people work on a few films. Entity names are unique (case-insensitively) across all types.
    """
    if n_films < 1:
        raise ValueError(f"n_films must be >= 1, got {n_films}")
    rng = random.Random(seed)
    taken: set[tuple[str, ...]] = set()
    types: dict[str, str] = {}

    def add(name: str, kind: str) -> bool:
        w = _words(name)
        if w in taken:
            return False
        taken.add(w)
        types[name] = kind
        return True

    for kind, names in (("language", _LANGUAGES), ("genre", _GENRES), ("tag", _TAGS)):
        for name in names:
            add(name, kind)
    films: list[str] = []
    while len(films) < n_films:
        pattern = rng.random()
        a, n, m = rng.choice(_ADJ), rng.choice(_NOUN), rng.choice(_NOUN)
        if pattern < 0.35:
            title = f"The {a} {n}"
        elif pattern < 0.6:
            title = f"{a} {n}"
        elif pattern < 0.8:
            title = f"{n} of the {a} {m}"
        else:
            title = f"The {n} {m}" if n != m else f"The {a} {n} {rng.randint(2, 9)}"
        if add(title, "film"):
            films.append(title)
        if len(taken) > 2 * n_films + 10_000:  # pragma: no cover - impossible with the pools above
            raise RuntimeError("could not generate enough unique film titles")
    n_people = max(6, (3 * n_films) // 2)
    people: list[str] = []
    while len(people) < n_people:
        name = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
        if len(people) >= len(_FIRST) * len(_LAST) - 1:  # pragma: no cover
            break
        if add(name, "person"):
            people.append(name)
    directors = people[: max(2, n_people // 4)]
    writers = people[n_people // 8 : n_people // 8 + max(2, n_people // 3)]
    actors = people[n_people // 4 :]
    facts: dict[tuple[str, str], tuple[str, ...]] = {}
    for film in films:
        direct = tuple(rng.sample(directors, 2 if rng.random() < 0.1 else 1))
        write = tuple(rng.sample(writers, rng.choice((1, 1, 2))))
        if rng.random() < 0.2:
            write = direct[:1]
        year = str(rng.randint(1950, 2019))
        facts[(film, "directed_by")] = direct
        facts[(film, "written_by")] = write
        facts[(film, "starred_actors")] = tuple(rng.sample(actors, rng.randint(2, 4)))
        facts[(film, "release_year")] = (year,)
        facts[(film, "in_language")] = (rng.choice(_LANGUAGES),)
        facts[(film, "has_genre")] = tuple(rng.sample(_GENRES, rng.choice((1, 1, 2))))
        facts[(film, "has_tags")] = tuple(rng.sample(_TAGS, rng.randint(1, 3)))
        if year not in types:
            add(year, "year")
    return MovieKB(facts=facts, types=types, doc_seed=seed)


def question_for(kb: MovieKB, relation: str, entity: str, rng: random.Random | None = None) -> Question:
    """A question asking ``relation`` (``_inv`` for inverse) about ``entity``, with all the KB's answers."""
    if relation not in TEMPLATES:
        raise ValueError(f"unknown relation {relation!r}; expected one of {sorted(TEMPLATES)}")
    if relation.endswith(INVERSE):
        answers = kb.subjects(relation[: -len(INVERSE)], entity)
    else:
        answers = kb.objects(entity, relation)
    templates = TEMPLATES[relation]
    template = templates[0] if rng is None else rng.choice(templates)
    return Question(text=template.format(e=entity), answers=tuple(answers), relation=relation, entity=entity)


def questions_about_film(kb: MovieKB, film: str, relations: Iterable[str] = RELATIONS) -> list[Question]:
    """One (first-template) forward question per relation about ``film`` (relations without facts skipped)."""
    return [question_for(kb, r, film) for r in relations if kb.objects(film, r)]


def generate_questions(kb: MovieKB, seed: int = 0) -> list[Question]:
    """Every question the KB supports, one per (film, relation) and one per (object, inverse relation).

    Templates are drawn with ``seed``; the order is the KB's (deterministic). Each question's ``answers`` are
    all the entities that make it true in the KB.
    """
    rng = random.Random(seed)
    out: list[Question] = []
    inverse_seen: set[tuple[str, str]] = set()
    for (film, relation), objects in kb.facts.items():
        if objects:
            out.append(question_for(kb, relation, film, rng))
    for (film, relation), objects in kb.facts.items():
        for o in objects:
            if (relation, o) not in inverse_seen:
                inverse_seen.add((relation, o))
                out.append(question_for(kb, relation + INVERSE, o, rng))
    return out


def split_questions(
    questions: Sequence[Question], seed: int = 0, fractions: tuple[float, float] = (0.8, 0.1)
) -> tuple[list[Question], list[Question], list[Question]]:
    """Shuffle (seeded) and split questions into train / validation / test by ``fractions`` (train, valid)."""
    order = list(range(len(questions)))
    random.Random(seed).shuffle(order)
    n_train = int(fractions[0] * len(order))
    n_valid = int(fractions[1] * len(order))
    pick = [questions[i] for i in order]
    return pick[:n_train], pick[n_train : n_train + n_valid], pick[n_train + n_valid :]


# ---------------------------------------------------------------------- documents


def _listing(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def render_document(kb: MovieKB, film: str) -> list[str]:
    """A short article about ``film`` stating all its KB facts, as a list of sentences.

    Deterministic in (KB seed, film). Some sentences refer to the film as "It" or "The film", as articles do.
    """
    rng = random.Random(f"{kb.doc_seed}:{film}")
    f = kb.objects
    genres, year, lang = f(film, "has_genre"), f(film, "release_year"), f(film, "in_language")
    sentences = []
    if genres and year:
        sentences.append(f"{film} is a {year[0]} {genres[0]} film directed by {_listing(f(film, 'directed_by'))}.")
    else:
        sentences.append(f"{film} is a film directed by {_listing(f(film, 'directed_by') or ('an unknown',))}.")
        if year:
            sentences.append(f"{film} was released in {year[0]}.")
    if len(genres) > 1:
        sentences.append(f"{film} is also a {_listing(genres[1:])} film.")
    subject = lambda: rng.choice((film, film, "It", "The film"))  # noqa: E731
    if f(film, "written_by"):
        sentences.append(f"{subject()} was written by {_listing(f(film, 'written_by'))}.")
    if f(film, "starred_actors"):
        sentences.append(f"{subject()} stars {_listing(f(film, 'starred_actors'))}.")
    if lang:
        sentences.append(f"{subject()} is in {lang[0]}.")
    if f(film, "has_tags"):
        sentences.append(f"{subject()} is about {_listing(f(film, 'has_tags'))}.")
    return sentences


def render_documents(kb: MovieKB) -> dict[str, list[str]]:
    """The article of every film: film -> list of sentences."""
    return {film: render_document(kb, film) for film in kb.films}


# ---------------------------------------------------------------------- memories


def kb_memories(kb: MovieKB, inverse: bool = True) -> list[Memory]:
    """KB memories (Miller et al. 2016, Section 3, "KB Triple"): key = (subject, relation), value = (object,).

    With ``inverse`` each fact also gives (object, relation_inv) -> subject, so questions about either end of a
    fact find it by key hashing.
    """
    out = [Memory(key=(s, r), value=(o,), film=s) for s, r, o in kb.triples()]
    if inverse:
        out += [Memory(key=(o, r + INVERSE), value=(s,), film=s) for s, r, o in kb.triples()]
    return out


def sentence_memories(kb: MovieKB) -> list[Memory]:
    """Sentence memories (Miller et al. 2016, Section 3, "Sentence Level"): key = value = a sentence's tokens."""
    out = []
    for film, sentences in render_documents(kb).items():
        for s in sentences:
            tokens = tuple(tokenize(s, kb))
            out.append(Memory(key=tokens, value=tokens, film=film))
    return out


def window_memories(kb: MovieKB, window: int = 7, center_encoding: bool = False, title: bool = False) -> list[Memory]:
    """Window memories (Miller et al. 2016, Section 3, "Window Level"; Section 5 variants).

    Each document is one token sequence; for every entity mention a window of ``window`` tokens centred on it
    (``window // 2`` each side, clipped at the document's ends) is a key and the centre entity the value.

    Args:
        window: W, an odd number of tokens.
        center_encoding: "Window + Center Encoding": the centre entity goes into ``Memory.center`` (a separate
            dictionary) instead of the key's bag of words.
        title: "Window + Title": also add, for each window, a memory whose value is the film's title; its key
            is the window plus the marker word ``_title_`` so the model can tell the two kinds apart.
    """
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be an odd positive number of tokens, got {window}")
    half = window // 2
    entities = kb.types
    out = []
    for film, sentences in render_documents(kb).items():
        tokens = [t for s in sentences for t in tokenize(s, kb)]
        for i, tok in enumerate(tokens):
            if tok not in entities:
                continue
            left, right = tokens[max(0, i - half) : i], tokens[i + 1 : i + 1 + half]
            if center_encoding:
                key, center = tuple(left + right), (tok,)
            else:
                key, center = tuple(left + [tok] + right), ()
            out.append(Memory(key=key, value=(tok,), center=center, film=film))
            if title:
                out.append(Memory(key=key + ("_title_",), value=(film,), center=center, film=film))
    return out


MEMORY_KINDS = ("kb", "sentence", "window", "window+title", "window+center+title")


def build_memories(kb: MovieKB, kind: str, window: int = 7) -> list[Memory]:
    """Memories of one kind: ``"kb"``, ``"sentence"``, ``"window"``, ``"window+title"``, ``"window+center+title"``."""
    if kind == "kb":
        return kb_memories(kb)
    if kind == "sentence":
        return sentence_memories(kb)
    if kind == "window":
        return window_memories(kb, window)
    if kind == "window+title":
        return window_memories(kb, window, title=True)
    if kind == "window+center+title":
        return window_memories(kb, window, center_encoding=True, title=True)
    raise ValueError(f"unknown memory kind {kind!r}; expected one of {MEMORY_KINDS}")
