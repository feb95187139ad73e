"""Missing data in notebooks: detected once, explained once, the sections that need it skipped cleanly.

The notebook runs execute the *solution* notebooks (every exercise answered) with bAbI absent and downloads
disabled: any error is then the data handling's fault. Chapter 5 reads no bAbI file (its movie world is generated)
and is not run here.
"""

from pathlib import Path

import nbformat
import pytest

from mem_tutorial.data import download
from mem_tutorial.data import notebook as dn
from mem_tutorial.grading import release as rel

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _clean_state():
    dn._MISSING.clear()
    dn._ANNOUNCED.clear()
    yield
    dn._MISSING.clear()
    dn._ANNOUNCED.clear()
    download.forget_failures()


def test_marked_cells_are_skipped_once_per_section_only_when_missing():
    cell = ["# NBVAL_IGNORE_OUTPUT\n", "# needs-data: babi | 1. The bAbI tasks\n", "data = load()\n"]
    assert dn.skip_transformer(cell) == cell  # nothing missing: the marker is a comment
    dn.mark_missing("babi", "bAbI")
    first = dn.skip_transformer(cell)
    assert len(first) == 1 and "Section 1. The bAbI tasks skipped" in first[0] and "bAbI data" in first[0]
    assert dn.skip_transformer(cell) == first  # the same cell transformed again (IPython does): same note
    second = ["# needs-data: babi | 1. The bAbI tasks\n", "more = 1\n"]
    assert dn.skip_transformer(second) == ["pass\n"]  # another cell of the same section: silent
    other = ["# needs-data: babi | 2. More\n", "x = 1\n"]
    assert "Section 2. More skipped" in dn.skip_transformer(other)[0]
    plain = ["x = 1  # needs-data: babi\n"]
    assert dn.skip_transformer(plain) == plain  # only leading comment lines mark a cell
    unrelated = ["# needs-data: wikimovies\n", "y = 2\n"]
    assert dn.skip_transformer(unrelated) == unrelated
    dn.mark_present("babi")
    assert dn.skip_transformer(cell) == cell


def test_downloads_disabled_or_failed_are_not_retried(tmp_path, monkeypatch):
    calls = []

    def offline(*args, **kwargs):
        calls.append(args)
        raise download.urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(download.urllib.request, "urlopen", offline)
    url = "https://example.invalid/data.tgz"
    for _ in range(3):
        with pytest.raises(download.DownloadError, match="Could not download"):
            download.fetch(url, None, tmp_path / "a.tgz")
    assert len(calls) == 1, "a failed download must not be retried (each retry may wait 60 s)"
    download.forget_failures()
    with pytest.raises(download.DownloadError):
        download.fetch(url, None, tmp_path / "a.tgz")
    assert len(calls) == 2
    monkeypatch.setenv(download.NO_DOWNLOAD_ENV, "1")
    with pytest.raises(download.DownloadError, match="disabled"):
        download.fetch("https://example.invalid/other.tgz", None, tmp_path / "b.tgz")
    assert len(calls) == 2


def test_require_babi_explains_once_with_notebook_instructions(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MEM_TUTORIAL_BABI_DIR", str(tmp_path))  # an empty folder
    assert dn.require_babi() is None
    out = capsys.readouterr().out
    assert "sections that need it will be skipped" in out
    assert "%env MEM_TUTORIAL_BABI_DIR=" in out and 'os.environ["MEM_TUTORIAL_BABI_DIR"]' in out
    assert "babi" in dn._MISSING
    monkeypatch.setenv("MEM_TUTORIAL_BABI_DIR", "/work/shared/data/babi")
    if Path("/work/shared/data/babi").is_dir():
        assert dn.require_babi() is not None and "babi" not in dn._MISSING


@pytest.mark.parametrize("chapter", ["04_memn2n", "06_memory_at_scale"])
def test_chapter_runs_to_the_end_without_bab_i(chapter, tmp_path):
    src = rel.sources(ROOT, chapter)[0]
    nb = nbformat.read(src.with_suffix(".ipynb"), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    empty = tmp_path / "no-babi"
    empty.mkdir()
    env = {"MEM_TUTORIAL_BABI_DIR": str(empty), "MEM_TUTORIAL_NO_DOWNLOAD": "1",
           "MEM_TUTORIAL_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    rel.execute_notebook(nb, src.parent, timeout=300, env=env)  # raises CellExecutionError on any error
    texts = ["".join(o.get("text", "") for o in c.outputs if o.output_type == "stream")
             for c in nb.cells if c.cell_type == "code"]
    whole = "\n".join(texts)
    assert sum("%env MEM_TUTORIAL_BABI_DIR=" in t for t in texts) <= 1, "the explanation must come once"
    if chapter == "04_memn2n":
        assert "sections that need it will be skipped" in texts[0] + texts[1]
        marked = {line.split("|", 1)[1].strip() for line in src.read_text().splitlines()
                  if line.startswith("# needs-data: babi |")}
        notes = [line for line in whole.splitlines() if line.startswith("\u23ed Section")]
        assert len(notes) == len(marked) >= 4, notes  # one note per skipped section
        assert "the model answers:" in texts[-1] or any("the model answers:" in t for t in texts[-3:])
