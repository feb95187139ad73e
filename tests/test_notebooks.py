"""The committed notebooks are complete, current and consistent with their sources.

nbval (run by the README's test command over solutions/) then re-executes every solution notebook and compares
its checked outputs with the committed ones: a second run must reproduce the first.
"""

import json
from pathlib import Path

import nbformat
import pytest

from mem_tutorial.grading import release as rel

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = rel.available_chapters(ROOT)


def solution_notebooks():
    return [p for c in CHAPTERS for p in sorted((ROOT / "solutions" / c).glob("*.ipynb"))]


def test_chapter_one_exists():
    assert "01_memory_as_attention" in CHAPTERS


@pytest.mark.parametrize("path", solution_notebooks(), ids=lambda p: p.parent.name)
def test_solution_notebook_fully_executed_without_errors(path):
    nb = nbformat.read(path, as_version=4)
    assert rel.unexecuted_cells(nb) == [], f"{path.name}: unexecuted cells (nbval would skip them silently)"
    errors = [c.id for c in nb.cells if c.cell_type == "code" and any(o.output_type == "error" for o in c.outputs)]
    assert errors == [], f"{path.name}: cells with errors {errors}"
    assert "widgets" not in nb.metadata  # no random widget ids committed


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_solution_notebook_matches_its_source(chapter):
    assert rel.stale_solutions(ROOT, chapter) == []


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_student_notebooks_are_current(chapter):
    assert rel.stale_release(ROOT, chapter) == []


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_student_notebook_has_no_solutions_and_a_colab_badge(chapter):
    for path in sorted((ROOT / "notebooks" / chapter).glob("*.ipynb")):
        text = path.read_text(encoding="utf-8")
        assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text
        nb = nbformat.read(path, as_version=4)
        assert "colab.research.google.com" in nb.cells[0].source
        assert f"notebooks/{chapter}/{path.name}" in nb.cells[0].source
        assert not list((ROOT / "notebooks" / chapter).glob("*.py")), "a jupytext source leaked into the release"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_notebook_metadata_is_valid_nbgrader(chapter):
    from nbgrader.nbgraderformat import read as nbgrader_read

    for path in sorted((ROOT / "solutions" / chapter).glob("*.ipynb")):
        with open(path, encoding="utf-8") as f:
            nbgrader_read(f, as_version=4)  # validates the nbgrader schema
        nb = json.loads(path.read_text(encoding="utf-8"))
        ids = [c["metadata"]["nbgrader"]["grade_id"] for c in nb["cells"] if "nbgrader" in c["metadata"]]
        assert len(ids) == len(set(ids)), "duplicate grade_id"
        graded = [c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade")]
        assert graded and all(c["metadata"]["nbgrader"]["points"] > 0 for c in graded)


def test_sections_end_with_summary_exercises_references():
    for path in solution_notebooks():
        md = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown")
        for heading in ("Summary", "Exercises", "References"):
            assert heading in md, f"{path.name} lacks a {heading} section"
