"""Loader for the real WikiMovies release (Miller et al. 2016), for learners who have it or are online.

The chapter runs on the offline generator (:mod:`mem_tutorial.data.moviekb`); this module reads the original
data into the same types (:class:`~mem_tutorial.data.moviekb.MovieKB`, :class:`~mem_tutorial.data.moviekb.Question`),
so every memory builder and the model work on it unchanged.

Where the data is looked for, in order:

1. an explicit folder ``data_dir`` (the ``movieqa`` folder of the archive, or the folder containing it);
2. the folder named by ``$MEM_TUTORIAL_WIKIMOVIES_DIR``;
3. the user cache (``mem_tutorial.data.download.cache_dir() / "wikimovies"``);
4. with ``download=True``, the official archive ``movieqa.tar.gz`` (57 MB), fetched with a SHA-256 check
   (:func:`mem_tutorial.data.download.fetch`) and unpacked into the cache.

Offline and without a copy, :class:`WikiMoviesMissing` says exactly how to get the files by hand.

Files read (archive layout): ``questions/wiki_entities/wiki-entities_qa_{train,dev,test}.txt`` (lines
``1 question?<TAB>answer1, answer2``) and ``knowledge_source/wiki_entities/wiki_entities_kb.txt`` (lines
``N subject relation object1, object2``, films separated by blank lines).
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterable
from pathlib import Path

from mem_tutorial.data.moviekb import OBJECT_TYPE, MovieKB, Question

ENV_VAR = "MEM_TUTORIAL_WIKIMOVIES_DIR"
URL = "https://thespermwhale.com/jaseweston/babi/movieqa.tar.gz"
#: SHA-256 of movieqa.tar.gz (57,070,041 bytes) as recorded by the Hugging Face datasets registry
#: (datasets/wiki_movies/dataset_infos.json); not re-measured here (this machine is offline).
SHA256 = "ed062b49922b602ebee6073f58951bf38c4772a8b53d46682f3ff80ed57de948"
SPLITS = {"train": "train", "valid": "dev", "dev": "dev", "test": "test"}
QUESTIONS = "questions/wiki_entities/wiki-entities_qa_{split}.txt"
KB_FILE = "knowledge_source/wiki_entities/wiki_entities_kb.txt"
#: Relations of the WikiMovies KB beyond the generator's (kept, typed as "other").
EXTRA_RELATIONS = ("has_imdb_rating", "has_imdb_votes", "has_plot")

HOW_TO_GET = """\
WikiMovies is not available offline here. To use it:
  * online: call with download=True (fetches {url}, 57 MB, checks its SHA-256, unpacks into {cache}); or
  * by hand: download movieqa.tar.gz from {url} (or the bAbI page, https://research.fb.com/downloads/babi/),
    unpack it, and either pass the `movieqa` folder as data_dir or set {env}=/path/to/movieqa.
The chapter itself needs none of this: it uses the offline generator mem_tutorial.data.moviekb."""


class WikiMoviesMissing(FileNotFoundError):
    """The WikiMovies files are not found (and no download was asked for, or it failed)."""


class WikiMoviesFormatError(ValueError):
    """A WikiMovies file has a line this loader cannot read (the message names the file and line)."""


def how_to_get() -> str:
    """Instructions for obtaining the data by hand (the text of :class:`WikiMoviesMissing`)."""
    return HOW_TO_GET.format(url=URL, cache=_cache(), env=ENV_VAR)


def _cache() -> Path:
    from mem_tutorial.data.download import cache_dir

    return cache_dir() / "wikimovies"


def _release_in(folder: Path) -> Path | None:
    for candidate in (folder, folder / "movieqa"):
        if (candidate / KB_FILE).is_file() and (candidate / QUESTIONS.format(split="train")).is_file():
            return candidate
    return None


def wikimovies_dir(data_dir: str | os.PathLike | None = None, download: bool = False) -> Path:
    """The ``movieqa`` folder, found as described in the module docstring.

    Raises:
        WikiMoviesMissing: an explicit ``data_dir`` or ``$MEM_TUTORIAL_WIKIMOVIES_DIR`` without the files, or no
            copy anywhere and ``download`` is False, or the download failed (with the reason and instructions).
    """
    for label, folder in (("data_dir", data_dir), (ENV_VAR, os.environ.get(ENV_VAR))):
        if folder:
            found = _release_in(Path(folder).expanduser())
            if found is None:
                raise WikiMoviesMissing(
                    f"{label}={folder} does not contain the WikiMovies files ({KB_FILE} and "
                    f"{QUESTIONS.format(split='train')}, in it or in its movieqa/ subfolder).\n{how_to_get()}"
                )
            return found
    found = _release_in(_cache())
    if found is not None:
        return found
    if not download:
        raise WikiMoviesMissing(how_to_get())
    return download_wikimovies()


def download_wikimovies() -> Path:
    """Fetch ``movieqa.tar.gz`` (checksummed) into the cache and unpack it; returns the ``movieqa`` folder."""
    from mem_tutorial.data.download import DownloadError, fetch

    cache = _cache()
    archive = cache / "movieqa.tar.gz"
    try:
        fetch(URL, SHA256, archive, manual_hint=how_to_get())
    except DownloadError as exc:
        raise WikiMoviesMissing(str(exc)) from exc
    with tarfile.open(archive, "r:gz") as tar:
        members = [m for m in tar.getmembers() if m.isfile() or m.isdir()]
        for m in members:  # refuse absolute paths and '..' (unsafe archives)
            if m.name.startswith("/") or ".." in Path(m.name).parts:
                raise WikiMoviesFormatError(f"{archive}: unsafe member path {m.name!r}")
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python >= 3.11.4 / 3.12
        tar.extractall(cache, members=members, **safe)
    found = _release_in(cache)
    if found is None:
        raise WikiMoviesFormatError(f"{archive} unpacked, but {KB_FILE} was not found in {cache}")
    return found


# --------------------------------------------------------------------------------------------- parsing


def parse_questions(lines: Iterable[str], source: str = "<string>") -> list[Question]:
    """Parse question lines ``N question?<TAB>answer1, answer2`` (relation and entity left empty)."""
    out = []
    for n, raw in enumerate(lines, 1):
        line = raw.rstrip("\n")
        if not line.strip():
            continue
        number, _, rest = line.partition(" ")
        if not number.isdigit() or "\t" not in rest:
            raise WikiMoviesFormatError(f"{source}:{n}: expected 'N question<TAB>answers', got {line[:80]!r}")
        text, _, answers = rest.partition("\t")
        answers = tuple(a.strip() for a in answers.split(",") if a.strip())
        if not answers:
            raise WikiMoviesFormatError(f"{source}:{n}: question without answers: {line[:80]!r}")
        out.append(Question(text=text.strip(), answers=answers, relation="", entity=""))
    return out


def parse_kb(lines: Iterable[str], source: str = "<string>") -> MovieKB:
    """Parse KB lines ``N subject relation object1, object2`` into a :class:`MovieKB`.

    The relation is found as the first known relation word in the line (subjects may contain spaces).
    Objects of the generator's relations are typed like the generator's (person, year, ...); the subject is a
    film. Lines of other relations (ratings, votes, plots) are skipped.
    """
    relations = set(OBJECT_TYPE) | set(EXTRA_RELATIONS)
    facts: dict[tuple[str, str], tuple[str, ...]] = {}
    types: dict[str, str] = {}
    for n, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line:
            continue
        number, _, rest = line.partition(" ")
        words = rest.split(" ")
        at = next((i for i, w in enumerate(words) if w in relations), None)
        if not number.isdigit() or at is None or at == 0:
            raise WikiMoviesFormatError(f"{source}:{n}: expected 'N subject relation objects', got {line[:80]!r}")
        subject, relation = " ".join(words[:at]), words[at]
        if relation in EXTRA_RELATIONS:
            continue
        objects = tuple(o.strip() for o in " ".join(words[at + 1 :]).split(",") if o.strip())
        if not objects:
            raise WikiMoviesFormatError(f"{source}:{n}: fact without object: {line[:80]!r}")
        types.setdefault(subject, "film")
        for o in objects:
            types.setdefault(o, OBJECT_TYPE[relation])
        facts[(subject, relation)] = facts.get((subject, relation), ()) + objects
    return MovieKB(facts=facts, types=types)


def load_wikimovies(split: str = "train", data_dir=None, download: bool = False) -> tuple[MovieKB, list[Question]]:
    """(KB, questions of ``split``) of the real WikiMovies (``split``: train, valid/dev or test)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    root = wikimovies_dir(data_dir, download)
    kb_path = root / KB_FILE
    q_path = root / QUESTIONS.format(split=SPLITS[split])
    with open(kb_path, encoding="utf-8") as f:
        kb = parse_kb(f, str(kb_path))
    with open(q_path, encoding="utf-8") as f:
        questions = parse_questions(f, str(q_path))
    return kb, questions
