"""The learner's path: Run All on an untouched *student* notebook reaches the last cell (issue #14).

Each chapter's released notebook (``notebooks/<chapter>/``) is executed as JupyterLab's Run All, Notebook 7's
"Run All Cells" and Colab's "Run all" do it: top to bottom, stopping at the first cell that raises (nbclient with
``allow_errors=False``; Colab ignores cell tags, and no cell of ours relies on one). ``MEM_TUTORIAL_SELFCHECK`` is
unset, as on a learner's machine, so every graded test cell reports "✗ Exercise N.M ... not passed yet" and the
run goes on; the test asserts that the last code cell ran and that every exercise printed its report, naming the
exercise its stub asks for. One more case shows that with ``MEM_TUTORIAL_SELFCHECK=raise`` (the grader, CI) the
first test cell raises.

Cost: one FAST-mode execution per chapter (10–20 s each), one test per chapter so pytest-xdist spreads them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted(p.name for p in (ROOT / "notebooks").iterdir() if p.is_dir() and any(p.glob("*.ipynb")))
CELL_TIMEOUT = 300
LABEL = re.compile(r"""with exercise\(\s*["']([0-9.]+)["']\s*,\s*["']([^"']*)["']""")


def _student_notebook(chapter: str) -> Path:
    (path,) = sorted((ROOT / "notebooks" / chapter).glob("*.ipynb"))
    return path


def _graded_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")
            and not c.metadata.get("nbgrader", {}).get("solution")]


def _text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


def _run(nb, cwd: Path, selfcheck: str | None, monkeypatch) -> None:
    from nbclient import NotebookClient

    if selfcheck is None:
        monkeypatch.delenv("MEM_TUTORIAL_SELFCHECK", raising=False)
    else:
        monkeypatch.setenv("MEM_TUTORIAL_SELFCHECK", selfcheck)
    monkeypatch.setenv("MEM_TUTORIAL_FAST", "1")
    monkeypatch.setenv("MEM_TUTORIAL_DEVICE", "cpu")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MPLBACKEND", "agg")
    NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3", allow_errors=False, record_timing=False,
                   resources={"metadata": {"path": str(cwd)}}).execute()


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_run_all_reaches_the_end(chapter, monkeypatch):
    path = _student_notebook(chapter)
    nb = nbformat.read(path, as_version=4)
    graded = _graded_cells(nb)
    assert graded, f"{chapter}: no graded test cell"
    for cell in graded:
        assert "### BEGIN HIDDEN TESTS" not in cell.source, "a student copy holds no hidden tests"
        assert LABEL.search(cell.source), f"{chapter}: test cell {cell.metadata.nbgrader.grade_id} has no exercise()"
    _run(nb, path.parent, None, monkeypatch)  # raises CellExecutionError at the first failing cell

    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    assert code[-1].execution_count is not None, f"{chapter}: Run All did not reach the last code cell"
    assert all(c.execution_count is not None for c in code), f"{chapter}: some code cells did not run"
    for cell in graded:
        label, name = LABEL.search(cell.source).groups()
        out = _text(cell)
        assert f"✗ Exercise {label} {name} not passed yet" in out, f"{chapter}: no report from exercise {label}:\n{out}"
        assert f"Exercise {label}: write " in out, f"{chapter}: the stub does not name exercise {label}:\n{out}"
        assert "visible checks passed" not in out


def test_grader_mode_raises_at_the_first_exercise(monkeypatch):
    """``MEM_TUTORIAL_SELFCHECK=raise``: the first graded test cell of an untouched notebook raises."""
    from nbclient.exceptions import CellExecutionError

    path = _student_notebook(CHAPTERS[0])
    nb = nbformat.read(path, as_version=4)
    first = _graded_cells(nb)[0]
    nb.cells = nb.cells[: nb.cells.index(first) + 1]
    with pytest.raises(CellExecutionError) as info:
        _run(nb, path.parent, "raise", monkeypatch)
    label = LABEL.search(first.source).group(1)
    assert "NotImplementedError" in str(info.value) and f"Exercise {label}: write" in str(info.value)
    assert first.execution_count is not None and "not passed yet" not in _text(first)
