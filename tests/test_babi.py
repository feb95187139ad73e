"""bAbI parser, tokenisation, vectorisation, data location and checksum tests (Chapter 4)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch

from mem_tutorial.data import babi, download

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "babi"
CANDIDATES = [os.environ.get(babi.BABI_DIR_ENV), str(SHARED), "/work/shared/data/babi"]
SHARED_DIR = next((Path(c) for c in CANDIDATES if c and (Path(c) / babi.RELEASE / "en").is_dir()), None)
needs_data = pytest.mark.skipif(
    SHARED_DIR is None,
    reason=f"bAbI v1.2 not found: set {babi.BABI_DIR_ENV} to the folder holding tasks_1-20_v1-2/ "
    "(the course's shared copy is ../shared/data/babi)",
)

STORY = """1 Mary moved to the bathroom.
2 John went to the hallway.
3 Where is Mary? \tbathroom\t1
4 Daniel went back to the hallway.
5 Sandra moved to the garden.
6 Where is Daniel? \thallway\t4
1 Mary got the milk there.
2 Mary took the football there.
3 What is Mary carrying?\tmilk,football\t1 2
4 Is Mary in the kitchen?\tno\t1
"""


def parse(text: str, task: int = 8):
    return babi.parse_babi(text.splitlines(keepends=True), source="fixture.txt", task=task)


def test_tokenize_matches_reference_rules():
    assert babi.tokenize("Where is Mary? ") == ["where", "is", "mary"]
    assert babi.tokenize("Mary moved to the bathroom.") == ["mary", "moved", "to", "the", "bathroom"]
    assert babi.tokenize("  Bill  gave\tit.") == ["bill", "gave", "it"]


def test_parse_stories_questions_answers_and_supporting_facts():
    examples = parse(STORY)
    assert len(examples) == 4
    first, second, multi, yes_no = examples
    assert first.story == (("mary", "moved", "to", "the", "bathroom"), ("john", "went", "to", "the", "hallway"))
    assert first.question == ("where", "is", "mary") and first.answer == "bathroom"
    assert first.supporting == (0,)
    # questions are not memories: line 4 is the 3rd statement of the story (index 2)
    assert len(second.story) == 4 and second.supporting == (2,)
    # a new story starts at ID 1
    assert multi.story == (("mary", "got", "the", "milk", "there"), ("mary", "took", "the", "football", "there"))
    assert multi.answer == "milk,football" and multi.answer_words == ("milk", "football")
    assert multi.supporting == (0, 1)
    assert yes_no.answer == "no" and yes_no.task == 8
    assert first.source == "fixture.txt:3"


@pytest.mark.parametrize(
    "bad, line, words",
    [
        ("1 Mary moved.\nx John went.\n", 2, "numeric ID"),
        ("1 Mary moved.\n3 John went.\n", 2, "does not follow"),
        ("1 Mary moved.\n2 Where is Mary?\tbathroom\n", 2, "3 tab-separated fields"),
        ("1 Mary moved.\n2 Where is Mary?\tbathroom\t5\n", 2, "earlier statement"),
        ("1 Mary moved.\n2 Where is Mary?\tbathroom\ta\n", 2, "not a number"),
        ("1 Mary moved.\n2 Where is Mary\tbathroom\t1\n", 2, "'?'"),
        ("1 Mary moved.\n2 Where is Mary?\t\t1\n", 2, "answer"),
        ("1 Mary moved.\n2 Where is Mary?\n", 2, "tab-separated"),
        ("1 Mary moved.\n\n", 2, "numeric ID"),
        ("1 Mary moved.\n2 Where is Mary?\tbathroom\t2\n", 2, "earlier statement"),
    ],
)
def test_malformed_lines_name_file_and_line(bad, line, words):
    with pytest.raises(babi.BabiFormatError) as info:
        parse(bad)
    message = str(info.value)
    assert f"fixture.txt, line {line}" in message
    assert words in message


def test_vocab_and_vectorize_pad_mask_and_window():
    examples = parse(STORY)
    vocab = babi.build_vocab(examples)
    assert vocab.words[0] == babi.NIL and "milk,football" in vocab and "bathroom" in vocab
    t = babi.vectorize(examples, vocab, memory_size=3)
    Q, N, J = t.stories.shape
    assert (Q, N, J) == (4, 3, 6)  # "daniel went back to the hallway"
    # example 2 has 4 statements; only the 3 most recent are kept, oldest first
    assert t.story_mask[1].tolist() == [True, True, True]
    assert vocab.decode(t.stories[1, 0]) == ["john", "went", "to", "the", "hallway"]
    assert vocab.decode(t.stories[1, 2]) == ["sandra", "moved", "to", "the", "garden"]
    assert t.supporting[1].tolist() == [False, True, False]
    # example 1 (2 statements) is padded on the right with nil sentences
    assert t.story_mask[0].tolist() == [True, True, False] and t.stories[0, 2].eq(0).all()
    # supporting fact that fell out of the window is dropped
    t1 = babi.vectorize(examples[:2], vocab, memory_size=1)
    assert not t1.supporting[0].any() and t1.supporting[1].sum() == 0
    assert vocab.decode(t.queries[2]) == ["what", "is", "mary", "carrying"]
    assert vocab.words[t.answers[2]] == "milk,football"
    assert t.tasks.tolist() == [8, 8, 8, 8]
    sub = t.subset(torch.tensor([0, 2]))
    assert len(sub) == 2 and sub.answers.tolist() == [t.answers[0].item(), t.answers[2].item()]


def test_vectorize_unknown_word_names_source():
    examples = parse(STORY)
    vocab = babi.build_vocab(examples[:1])
    with pytest.raises(KeyError, match="fixture.txt:6"):
        babi.vectorize(examples, vocab)


def test_split_validation_is_ten_percent_per_task_and_seeded():
    examples = [babi.BabiExample(task=1 + i % 2, story=(), question=("q",), answer="a", supporting=()) for i in range(40)]
    train, valid = babi.split_validation(examples, 0.1, seed=3)
    assert len(valid) == 4 and len(train) == 36
    assert sorted(ex.task for ex in valid) == [1, 1, 2, 2]
    again = babi.split_validation(examples, 0.1, seed=3)[1]
    assert [id(e) for e in valid] == [id(e) for e in again]


def test_split_validation_tail_holds_out_each_tasks_last_questions():
    examples = [babi.BabiExample(task=1 + i % 2, story=(), question=(f"q{i}",), answer="a", supporting=())
                for i in range(40)]
    train, valid = babi.split_validation(examples, 0.1, seed=None)
    assert [ex.question[0] for ex in valid] == ["q36", "q38", "q37", "q39"]  # task 1's last two, then task 2's
    assert len(train) == 36 and not {id(e) for e in train} & {id(e) for e in valid}


def test_data_dir_resolution_order(tmp_path, monkeypatch):
    explicit = tmp_path / "explicit"
    (explicit / babi.RELEASE / "en").mkdir(parents=True)
    env = tmp_path / "env" / babi.RELEASE
    (env / "en").mkdir(parents=True)
    cache = tmp_path / "cache"
    (cache / "babi" / babi.RELEASE / "en").mkdir(parents=True)
    monkeypatch.setenv("MEM_TUTORIAL_CACHE", str(cache))
    monkeypatch.setenv(babi.BABI_DIR_ENV, str(env))
    assert babi.babi_dir(explicit) == explicit / babi.RELEASE
    assert babi.babi_dir(explicit / babi.RELEASE) == explicit / babi.RELEASE
    assert babi.babi_dir() == env  # the release folder itself is accepted
    monkeypatch.delenv(babi.BABI_DIR_ENV)
    assert babi.babi_dir() == cache / "babi" / babi.RELEASE


def test_missing_data_offline_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("MEM_TUTORIAL_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.delenv(babi.BABI_DIR_ENV, raising=False)
    with pytest.raises(babi.BabiDataMissing) as info:
        babi.babi_dir(download=False)
    message = str(info.value)
    assert babi.BABI_URL in message and babi.BABI_DIR_ENV in message and "tar xzf" in message
    with pytest.raises(babi.BabiDataMissing, match="does not hold the bAbI data"):
        babi.babi_dir(tmp_path / "nowhere")


def test_offline_download_error_is_clear(tmp_path, monkeypatch):
    monkeypatch.setenv("MEM_TUTORIAL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(babi.BABI_DIR_ENV, raising=False)

    def offline(*args, **kwargs):
        raise download.urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(download.urllib.request, "urlopen", offline)
    with pytest.raises(babi.BabiDataMissing) as info:
        babi.babi_dir()
    assert "could not be downloaded" in str(info.value) and babi.BABI_URL in str(info.value)
    assert not list((tmp_path / "cache").rglob("*.part"))


def test_fetch_checks_sha256_and_reuses_cache(tmp_path, monkeypatch):
    payload = b"hello babi"
    digest = hashlib.sha256(payload).hexdigest()
    source = tmp_path / "src.bin"
    source.write_bytes(payload)
    dest = tmp_path / "out" / "file.bin"
    assert download.fetch(source.as_uri(), digest, dest).read_bytes() == payload
    source.write_bytes(b"changed")  # a cached copy with the right digest is reused, not downloaded again
    assert download.fetch(source.as_uri(), digest, dest).read_bytes() == payload
    with pytest.raises(download.DownloadError, match="SHA-256"):
        download.fetch(source.as_uri(), digest, tmp_path / "other.bin")
    assert not (tmp_path / "other.bin").exists()


def test_checksum_list_is_packaged_and_complete():
    sums = babi._checksums()
    assert len(sums) == 81 and "en/qa1_single-supporting-fact_train.txt" in sums
    assert all(len(d) == 64 for d in sums.values())


def test_modified_release_file_is_rejected(tmp_path):
    folder = tmp_path / babi.RELEASE / "en"
    folder.mkdir(parents=True)
    bad = folder / "qa1_single-supporting-fact_train.txt"
    bad.write_text("1 Mary moved to the bathroom.\n2 Where is Mary?\tbathroom\t1\n")
    with pytest.raises(ValueError, match="SHA-256"):
        babi.read_babi_file(bad)
    assert len(babi.read_babi_file(bad, verify=False)) == 1


@needs_data
def test_loader_on_shared_data_single_task():
    data = babi.load_babi(1, data_dir=SHARED_DIR)
    assert (len(data.train), len(data.valid), len(data.test)) == (900, 100, 1000)
    assert data.train.stories.shape[1:] == data.test.stories.shape[1:]
    assert set(data.train.tasks.tolist()) == {1}
    # every supporting fact of task 1 is inside the 50-sentence window
    assert data.test.supporting.any(dim=1).all()
    assert (data.test.stories[~data.test.story_mask] == 0).all()


@needs_data
def test_loader_on_shared_data_joint_and_multiword_answers():
    data = babi.load_babi((8, 19), data_dir=SHARED_DIR)
    assert len(data.train) == 1800 and len(data.test) == 2000
    assert "milk,football" in data.vocab or "football,milk" in data.vocab
    assert "n,w" in data.vocab
    assert data.train.stories.shape[1] <= babi.MEMORY_SIZE


@needs_data
def test_en10k_missing_file_is_named():
    if babi.task_available(3, "train", "en-10k", SHARED_DIR):
        pytest.skip("this copy has en-10k qa3 train")
    with pytest.raises(babi.BabiDataMissing, match="qa3_three-supporting-facts_train.txt"):
        babi.load_task(3, "train", "en-10k", data_dir=SHARED_DIR)
    assert babi.task_available(1, "train", "en-10k", SHARED_DIR)
