"""The bAbI question-answering tasks, v1.2 (Weston et al. 2015, arXiv:1502.05698): parse, tokenise, vectorise.

File format (from the release README): every line is ``ID text``; IDs restart at 1 with each new story; a
question line is ``ID question?<TAB>answer<TAB>supporting fact IDs``. Answers with several words are
comma-separated (``milk,football``, ``n,w``) and are one answer class, as in the reference code.

Tokenisation follows the reference MemN2N code (facebook/MemNN, ``MemN2N-babi-matlab/parseBabiTask.m``):
split on white space, lower-case, drop one trailing ``.`` or ``?``; the answer field is lower-cased and kept
whole. Statements become memories; questions are not written to memory.

Where the data comes from (:func:`babi_dir`), in this order:

1. an explicit ``data_dir`` argument;
2. the environment variable ``MEM_TUTORIAL_BABI_DIR``;
3. the user cache (``$MEM_TUTORIAL_CACHE`` or ``~/.cache/mem_tutorial``) under ``babi/``;
4. a download of the official ``tasks_1-20_v1-2.tar.gz``, checked against its SHA-256 before it is opened.

A folder may be given as the one that *contains* ``tasks_1-20_v1-2/`` or as ``tasks_1-20_v1-2/`` itself. Every
file read is checked against the SHA-256 list shipped with the package (``babi_sha256.txt``).

Tensor symbols: Q questions, N memory slots (<= 50 most recent sentences), J words per sentence, V vocabulary.
"""

from __future__ import annotations

import hashlib
import os
import random
import tarfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from mem_tutorial.data.download import DownloadError, cache_dir, fetch

BABI_URL = "http://www.thespermwhale.com/jaseweston/babi/tasks_1-20_v1-2.tar.gz"
# SHA-256 and size of the official archive as recorded by the Hugging Face `datasets` loader
# (huggingface/datasets, datasets/babi_qa/dataset_infos.json, "download_checksums").
BABI_ARCHIVE_SHA256 = "0364ebde659f14d11bc21744516c5ec49d3d06cb692733f66680771244998898"
BABI_ARCHIVE_BYTES = 15_719_851
BABI_DIR_ENV = "MEM_TUTORIAL_BABI_DIR"
RELEASE = "tasks_1-20_v1-2"
VARIANTS = ("en", "en-10k")
SPLITS = ("train", "test")
NIL = "<nil>"  # padding word, index 0 everywhere; its embedding is kept at zero by the models
MEMORY_SIZE = 50  # Sukhbaatar et al. 2015, Sec. 4.2: "restricted to the most recent 50 sentences"
VALID_FRACTION = 0.1  # Sec. 4.2: 10 % of the training set held out for validation

TASK_NAMES = {
    1: "single-supporting-fact",
    2: "two-supporting-facts",
    3: "three-supporting-facts",
    4: "two-arg-relations",
    5: "three-arg-relations",
    6: "yes-no-questions",
    7: "counting",
    8: "lists-sets",
    9: "simple-negation",
    10: "indefinite-knowledge",
    11: "basic-coreference",
    12: "conjunction",
    13: "compound-coreference",
    14: "time-reasoning",
    15: "basic-deduction",
    16: "basic-induction",
    17: "positional-reasoning",
    18: "size-reasoning",
    19: "path-finding",
    20: "agents-motivations",
}
ALL_TASKS = tuple(TASK_NAMES)

_HOW_TO_GET = (
    "To get the bAbI data (tasks v1.2, about 15 MB):\n"
    f"  1. download {BABI_URL}\n"
    f"     (SHA-256 {BABI_ARCHIVE_SHA256});\n"
    "  2. extract it:  tar xzf tasks_1-20_v1-2.tar.gz   (this creates the folder tasks_1-20_v1-2/);\n"
    "  3. point the course at the folder that contains it:\n"
    f"       in a notebook, in a cell above the setup cell:  %env {BABI_DIR_ENV}=/path/to/that/folder\n"
    f"         (or: import os; os.environ[\"{BABI_DIR_ENV}\"] = \"/path/to/that/folder\"), then run the setup cell again;\n"
    f"       in a shell, before starting Jupyter:  export {BABI_DIR_ENV}=/path/to/that/folder\n"
    "     (or pass data_dir=... , or move tasks_1-20_v1-2/ into {cache}/babi/, where a download lands)."
)


class BabiFormatError(ValueError):
    """A line of a bAbI file does not follow the format; the message names the file and the line number."""


class BabiDataMissing(FileNotFoundError):
    """The bAbI data (or one file of it) is not where the course looks; the message says how to get it."""


def how_to_get_babi() -> str:
    """Step-by-step instructions to obtain the data by hand (printed in every 'data missing' error)."""
    return _HOW_TO_GET.replace("{cache}", str(_cache_root()))


# --------------------------------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class BabiExample:
    """One question with its story.

    Attributes:
        task: the task number (1-20), 0 when unknown.
        story: every statement of the story before the question, oldest first, tokenised.
        question: the question, tokenised (no ``?``).
        answer: the answer class, lower-cased, as in the file (``"milk,football"`` for two words).
        supporting: 0-based indices into ``story`` of the supporting facts, in the file's order.
        source: ``"file:line"`` of the question line.
    """

    task: int
    story: tuple[tuple[str, ...], ...]
    question: tuple[str, ...]
    answer: str
    supporting: tuple[int, ...]
    source: str = ""

    @property
    def answer_words(self) -> tuple[str, ...]:
        """The answer split at commas: ``"milk,football"`` -> ``("milk", "football")``."""
        return tuple(self.answer.split(","))


def tokenize(text: str) -> list[str]:
    """Tokenise like the reference code: split on white space, lower-case, drop a trailing '.' or '?'.

    >>> tokenize("Where is Mary?")
    ['where', 'is', 'mary']
    """
    words = []
    for word in text.split():
        word = word.lower()
        if word.endswith((".", "?")):
            word = word[:-1]
        if word:
            words.append(word)
    return words


def parse_babi(lines: Iterable[str], source: str = "<string>", task: int = 0) -> list[BabiExample]:
    """Parse the lines of one bAbI file into :class:`BabiExample` records (one per question).

    Raises:
        BabiFormatError: naming ``source`` and the 1-based line number, when a line has no numeric ID, an ID
            does not follow the previous one (or restart at 1), a question line does not have exactly three
            tab-separated fields, the question does not end with '?', the answer is empty, a supporting fact
            ID is not a number or does not name an earlier statement of the same story, or a statement
            contains a tab.
    """
    examples: list[BabiExample] = []
    story: list[tuple[str, ...]] = []
    line_to_statement: dict[int, int] = {}
    previous_id = 0
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r\n")

        def fail(why: str) -> BabiFormatError:
            return BabiFormatError(f"{source}, line {number}: {why}: {line!r}")

        head, _, rest = line.partition(" ")
        if not head.isdigit() or not rest.strip():
            raise fail("expected 'ID text' with a numeric ID")
        line_id = int(head)
        if line_id == 1:
            story, line_to_statement = [], {}
        elif line_id != previous_id + 1:
            raise fail(f"line ID {line_id} does not follow {previous_id} (IDs restart at 1 with each story)")
        previous_id = line_id
        if "\t" not in rest:
            words = tokenize(rest)
            if rest.rstrip().endswith("?"):
                raise fail("a question needs a tab-separated answer and supporting fact IDs")
            line_to_statement[line_id] = len(story)
            story.append(tuple(words))
            continue
        fields = rest.split("\t")
        if len(fields) != 3:
            raise fail(f"a question line needs 3 tab-separated fields (question, answer, IDs), got {len(fields)}")
        question, answer, ids = fields
        if not question.rstrip().endswith("?"):
            raise fail("the question does not end with '?'")
        answer = answer.strip().lower()
        if not answer or any(not part for part in answer.split(",")) or " " in answer:
            raise fail("the answer must be one word or comma-separated words")
        supporting = []
        for token in ids.split():
            if not token.isdigit():
                raise fail(f"supporting fact ID {token!r} is not a number")
            if int(token) not in line_to_statement:
                raise fail(f"supporting fact ID {token} does not name an earlier statement of this story")
            supporting.append(line_to_statement[int(token)])
        examples.append(
            BabiExample(
                task=task,
                story=tuple(story),
                question=tuple(tokenize(question)),
                answer=answer,
                supporting=tuple(supporting),
                source=f"{source}:{number}",
            )
        )
    return examples


def read_babi_file(path: str | os.PathLike, task: int = 0, verify: bool = True) -> list[BabiExample]:
    """Parse one bAbI file; with ``verify`` check it first against the packaged SHA-256 list (if listed)."""
    path = Path(path)
    if verify:
        verify_babi_file(path)
    with open(path, encoding="utf-8") as handle:
        return parse_babi(handle, source=str(path), task=task)


# ------------------------------------------------------------------------------------- where the data lives


def _cache_root() -> Path:
    return Path(os.environ.get("MEM_TUTORIAL_CACHE") or "~/.cache/mem_tutorial").expanduser()


def _release_in(folder: Path) -> Path | None:
    """``folder`` itself if it is the release folder (has en/), else ``folder/tasks_1-20_v1-2`` if present."""
    if (folder / "en").is_dir() or (folder / "en-10k").is_dir():
        return folder
    if (folder / RELEASE).is_dir():
        return folder / RELEASE
    return None


def babi_dir(data_dir: str | os.PathLike | None = None, download: bool = True) -> Path:
    """The ``tasks_1-20_v1-2`` folder: explicit argument, else ``$MEM_TUTORIAL_BABI_DIR``, else the user cache,
    else (``download=True``) the official archive, downloaded into the cache and checked.

    Raises:
        BabiDataMissing: when a named folder does not hold the data, or nothing is found and the download
            is off or fails; the message says exactly how to get the data.
    """
    for origin, value in (("data_dir", data_dir), (BABI_DIR_ENV, os.environ.get(BABI_DIR_ENV))):
        if value:
            folder = Path(value).expanduser()
            found = _release_in(folder)
            if found is None:
                raise BabiDataMissing(
                    f"{origin}={str(value)!r} does not hold the bAbI data: expected {folder}/{RELEASE}/en/ "
                    f"or {folder}/en/.\n{how_to_get_babi()}"
                )
            return found
    cached = _release_in(_cache_root() / "babi")
    if cached is not None:
        return cached
    if not download:
        raise BabiDataMissing(f"The bAbI data was not found and download=False.\n{how_to_get_babi()}")
    return download_babi()


def download_babi() -> Path:
    """Download the official archive into the cache, check its SHA-256, extract ``en/`` and ``en-10k/`` and
    check every extracted file against the packaged list. Returns the release folder."""
    target = cache_dir() / "babi"
    archive = target / f"{RELEASE}.tar.gz"
    try:
        fetch(BABI_URL, BABI_ARCHIVE_SHA256, archive, manual_hint=how_to_get_babi())
    except DownloadError as exc:
        raise BabiDataMissing(f"The bAbI data is not on this machine and could not be downloaded: {exc}") from exc
    with tarfile.open(archive, "r:gz") as tar:
        members = []
        for member in tar.getmembers():
            parts = Path(member.name).parts
            if member.isfile() and len(parts) >= 2 and parts[0] == RELEASE and ".." not in parts:
                if parts[1] in VARIANTS or (len(parts) == 2 and parts[1] in ("README.txt", "LICENSE.txt")):
                    members.append(member)
        tar.extractall(target, members=members)
    release = target / RELEASE
    for name in _checksums():
        if (release / name).exists():
            verify_babi_file(release / name)
    return release


def task_file(task: int, split: str = "train", variant: str = "en", data_dir: str | os.PathLike | None = None,
              download: bool = True) -> Path:
    """Path of ``qa{task}_{name}_{split}.txt`` in ``variant`` (``en`` or ``en-10k``).

    Raises:
        ValueError: for an unknown task, split or variant.
        BabiDataMissing: when that file is absent (e.g. ``en-10k`` qa3 train in the course's shared copy),
            naming it.
    """
    if task not in TASK_NAMES:
        raise ValueError(f"bAbI task must be one of 1..20, got {task!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    root = babi_dir(data_dir, download=download)
    path = root / variant / f"qa{task}_{TASK_NAMES[task]}_{split}.txt"
    if not path.is_file():
        raise BabiDataMissing(
            f"bAbI file missing: {path} (task {task}, {variant}, {split}). The rest of {root} is there; get "
            f"this file from the official archive {BABI_URL} and put it at that path."
        )
    return path


def task_available(task: int, split: str = "train", variant: str = "en", data_dir=None) -> bool:
    """Whether :func:`task_file` would find the file (benchmarks use it to skip en-10k qa3 explicitly)."""
    try:
        task_file(task, split, variant, data_dir, download=False)
    except (BabiDataMissing, FileNotFoundError):
        return False
    return True


@lru_cache(maxsize=1)
def _checksums() -> dict[str, str]:
    listing = Path(__file__).with_name("babi_sha256.txt").read_text().splitlines()
    return {name.strip(): digest for digest, name in (line.split(maxsplit=1) for line in listing if line.strip())}


@lru_cache(maxsize=256)
def _verified(path: str, size: int, mtime: float) -> str:
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return digest


def verify_babi_file(path: str | os.PathLike) -> None:
    """Check a release file against the packaged SHA-256 list (files not in the list, e.g. test fixtures
    outside a ``tasks_1-20_v1-2`` tree, are not checked).

    Raises:
        ValueError: naming the file, the expected and the actual digest.
    """
    path = Path(path)
    parts = path.resolve().parts
    if RELEASE not in parts:
        return
    name = "/".join(parts[len(parts) - parts[::-1].index(RELEASE):])
    expected = _checksums().get(name)
    if expected is None:
        return
    stat = path.stat()
    got = _verified(str(path.resolve()), stat.st_size, stat.st_mtime)
    if got != expected:
        raise ValueError(
            f"{path}: SHA-256 {got} differs from the bAbI v1.2 release's {expected}; the file is corrupt or "
            f"modified. Replace it with the original.\n{how_to_get_babi()}"
        )


def load_task(task: int, split: str = "train", variant: str = "en", data_dir=None, download: bool = True
              ) -> list[BabiExample]:
    """Parse one task file into examples (see :func:`task_file` for the errors)."""
    return read_babi_file(task_file(task, split, variant, data_dir, download), task=task)


# ------------------------------------------------------------------------------------ vocabulary, tensors


@dataclass
class Vocab:
    """Words <-> indices; index 0 is the nil (padding) word."""

    words: list[str] = field(default_factory=lambda: [NIL])

    def __post_init__(self):
        if not self.words or self.words[0] != NIL:
            raise ValueError(f"Vocab.words[0] must be the nil word {NIL!r}")
        self.index = {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self.index

    def encode(self, words: Sequence[str]) -> list[int]:
        try:
            return [self.index[w] for w in words]
        except KeyError as exc:
            raise KeyError(f"word {exc.args[0]!r} is not in the vocabulary ({len(self)} words)") from None

    def decode(self, indices: Iterable[int]) -> list[str]:
        return [self.words[int(i)] for i in indices if int(i) != 0]


def build_vocab(*example_lists: Iterable[BabiExample]) -> Vocab:
    """Vocabulary of every story word, question word and answer class, sorted (deterministic), nil first."""
    words: set[str] = set()
    for examples in example_lists:
        for ex in examples:
            for sentence in ex.story:
                words.update(sentence)
            words.update(ex.question)
            words.add(ex.answer)
    words.discard(NIL)
    return Vocab([NIL, *sorted(words)])


@dataclass
class BabiTensors:
    """Vectorised questions. Memory slot 0 holds the oldest kept sentence; padding is at the end (right).

    Attributes:
        stories: [Q, N, J] word indices (0 = nil).
        story_mask: [Q, N] True where the slot holds a sentence.
        queries: [Q, J] question word indices.
        answers: [Q] answer class indices (into the vocabulary).
        supporting: [Q, N] True where the slot holds a supporting fact (facts older than the window: lost).
        tasks: [Q] task numbers.
    """

    stories: torch.Tensor
    story_mask: torch.Tensor
    queries: torch.Tensor
    answers: torch.Tensor
    supporting: torch.Tensor
    tasks: torch.Tensor

    def __len__(self) -> int:
        return int(self.answers.shape[0])

    def subset(self, index) -> "BabiTensors":
        return BabiTensors(*(t[index] for t in self.as_tuple()))

    def as_tuple(self) -> tuple[torch.Tensor, ...]:
        return (self.stories, self.story_mask, self.queries, self.answers, self.supporting, self.tasks)

    def to(self, device) -> "BabiTensors":
        return BabiTensors(*(t.to(device) for t in self.as_tuple()))


def vectorize(examples: Sequence[BabiExample], vocab: Vocab, memory_size: int = MEMORY_SIZE,
              sentence_length: int | None = None, slots: int | None = None) -> BabiTensors:
    """Turn examples into padded tensors, keeping the ``memory_size`` most recent sentences of each story.

    Args:
        examples: parsed questions.
        vocab: the vocabulary (every word must be in it).
        memory_size: how many of the most recent sentences become memories (50 in the paper).
        sentence_length: J; default the longest sentence or question in ``examples``.
        slots: N; default ``min(memory_size, longest story)``.
    """
    if memory_size < 1:
        raise ValueError(f"memory_size must be >= 1, got {memory_size}")
    kept = [ex.story[-memory_size:] for ex in examples]
    longest = max([len(s) for story in kept for s in story] + [len(ex.question) for ex in examples] + [1])
    J = sentence_length or longest
    if J < longest:
        raise ValueError(f"sentence_length={J} is shorter than the longest sentence ({longest} words)")
    N = slots or max([len(s) for s in kept] + [1])
    if N < max([len(s) for s in kept] + [0]):
        raise ValueError(f"slots={N} is fewer than the memories of the longest kept story")
    index = vocab.index
    Q = len(examples)
    stories = np.zeros((Q, N, J), dtype=np.int64)
    mask = np.zeros((Q, N), dtype=bool)
    queries = np.zeros((Q, J), dtype=np.int64)
    answers = np.zeros(Q, dtype=np.int64)
    supporting = np.zeros((Q, N), dtype=bool)
    tasks = np.zeros(Q, dtype=np.int64)
    for q, (ex, story) in enumerate(zip(examples, kept)):
        try:
            for i, sentence in enumerate(story):
                stories[q, i, : len(sentence)] = [index[w] for w in sentence]
            queries[q, : len(ex.question)] = [index[w] for w in ex.question]
            answers[q] = index[ex.answer]
        except KeyError as exc:
            raise KeyError(f"{ex.source}: word {exc.args[0]!r} is not in the vocabulary") from None
        mask[q, : len(story)] = True
        dropped = len(ex.story) - len(story)
        for s in ex.supporting:
            if s >= dropped:
                supporting[q, s - dropped] = True
        tasks[q] = ex.task
    stories, mask, queries, answers, supporting, tasks = (
        torch.from_numpy(a) for a in (stories, mask, queries, answers, supporting, tasks))
    return BabiTensors(stories, mask, queries, answers, supporting, tasks)


def split_validation(examples: Sequence[BabiExample], fraction: float = VALID_FRACTION, seed: int | None = 0
                     ) -> tuple[list[BabiExample], list[BabiExample]]:
    """Hold out ``fraction`` of each task's questions as validation; returns (train, valid).

    ``seed``: an integer draws the held-out questions at random (seeded; the official joint config);
    None holds out each task's *last* questions in file order (the official single-task config).
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    train, valid = [], []
    for task in sorted({ex.task for ex in examples}):
        items = [ex for ex in examples if ex.task == task]
        n_valid = int(round(fraction * len(items)))
        if seed is None:
            held = set(range(len(items) - n_valid, len(items)))
        else:
            order = list(range(len(items)))
            random.Random(seed * 1000 + task).shuffle(order)
            held = set(order[:n_valid])
        for i, ex in enumerate(items):
            (valid if i in held else train).append(ex)
    return train, valid


@dataclass
class BabiData:
    """One loaded configuration: raw examples, vocabulary and tensors for train / valid / test."""

    tasks: tuple[int, ...]
    variant: str
    vocab: Vocab
    train: BabiTensors
    valid: BabiTensors
    test: BabiTensors
    raw_train: list[BabiExample]
    raw_valid: list[BabiExample]
    raw_test: list[BabiExample]
    memory_size: int
    sentence_length: int


def load_babi(tasks: int | Iterable[int] = ALL_TASKS, variant: str = "en", data_dir=None,
              memory_size: int = MEMORY_SIZE, valid_fraction: float = VALID_FRACTION, seed: int | None = 0,
              download: bool = True) -> BabiData:
    """Load one task (``tasks=1``) or several for joint training (default: all 20), vectorised.

    The vocabulary covers train and test of the chosen tasks; J is the longest sentence over all splits,
    N = min(``memory_size``, longest story). 10 % of each task's training questions form the validation set
    (:func:`split_validation`: at random with ``seed``, the last ones with ``seed=None``).

    Raises:
        BabiDataMissing: when a needed file is absent (naming it) or the data cannot be found at all.
    """
    task_list = (tasks,) if isinstance(tasks, int) else tuple(tasks)
    raw_train_all, raw_test = [], []
    for t in task_list:
        raw_train_all += load_task(t, "train", variant, data_dir, download)
        raw_test += load_task(t, "test", variant, data_dir, download)
    raw_train, raw_valid = split_validation(raw_train_all, valid_fraction, seed)
    vocab = build_vocab(raw_train_all, raw_test)
    everything = raw_train_all + raw_test
    J = max([len(s) for ex in everything for s in ex.story[-memory_size:]] + [len(ex.question) for ex in everything])
    N = max(min(memory_size, len(ex.story)) for ex in everything)
    make = lambda exs: vectorize(exs, vocab, memory_size, sentence_length=J, slots=N)  # noqa: E731
    return BabiData(task_list, variant, vocab, make(raw_train), make(raw_valid), make(raw_test),
                    raw_train, raw_valid, raw_test, memory_size, J)
