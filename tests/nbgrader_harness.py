"""Grade made-up submissions of a chapter through nbgrader's own Python API and its real SQLite gradebook.

Used by every chapter's ``tests/test_<NN>_grading.py``:

    course = ScratchCourse(tmp_path, "01_memory_as_attention")
    nb = course.student_notebook()                      # the released stub
    solved = course.solved_notebook()                   # stub with the instructor's answers filled in
    course.submit("alice", solved)
    course.submit("bob", with_solution(solved, "read", "def read(m, w):\\n    return m.mean(1)"))
    scores = course.autograde()                         # {student: Scores}
    assert scores["alice"].auto == course.max_auto

Each submission is autograded on its own, so a broken one cannot stop the others.
"""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Scores:
    auto: float
    max_auto: float
    by_cell: dict[str, float] = field(default_factory=dict)  # grade_id -> auto score (None for manual cells)
    needs_manual: bool = False
    autograded_path: Path | None = None

    def errors(self) -> list[str]:
        """grade_ids (else cell ids) of cells whose outputs in the autograded notebook contain an error."""
        nb = nbformat.read(self.autograded_path, as_version=4)
        return [c.get("metadata", {}).get("nbgrader", {}).get("grade_id") or c.id
                for c in nb.cells if c.cell_type == "code" and any(o.output_type == "error" for o in c.outputs)]


@contextlib.contextmanager
def grading_env():
    """Kernels started inside inherit FAST mode, the CPU device and no progress bars; restored afterwards
    (the same pytest worker may run nbval next, which must see the environment the notebooks were built in)."""
    values = {"MEM_TUTORIAL_FAST": "1", "MEM_TUTORIAL_DEVICE": "cpu", "MEM_TUTORIAL_PROGRESS": "0"}
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _cell(nb, grade_id):
    for cell in nb.cells:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id:
            return cell
    raise KeyError(f"no cell with grade_id {grade_id!r}")


def with_solution(nb, grade_id: str, source: str):
    """A copy of ``nb`` whose cell ``grade_id`` holds ``source``."""
    nb = copy.deepcopy(nb)
    _cell(nb, grade_id).source = source
    return nb


def without_cell(nb, grade_id: str):
    """A copy of ``nb`` without the cell ``grade_id`` (e.g. a deleted test)."""
    nb = copy.deepcopy(nb)
    nb.cells = [c for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") != grade_id]
    return nb


class ScratchCourse:
    """A temporary nbgrader course holding one chapter of this repository."""

    def __init__(self, tmp: Path, chapter: str, timeout: int = 120):
        from nbgrader.apps import NbGraderAPI
        from nbgrader.coursedir import CourseDirectory
        from traitlets.config import Config

        self.root, self.chapter = Path(tmp), chapter
        shutil.copytree(ROOT / "solutions" / chapter, self.root / "source" / chapter,
                        ignore=shutil.ignore_patterns("*.py", "__pycache__", ".ipynb_checkpoints", "*.db"))
        cfg = Config()
        cfg.CourseDirectory.root = str(self.root)
        cfg.CourseDirectory.course_id = "mem-tutorial"
        cfg.CourseDirectory.source_directory = "source"
        cfg.CourseDirectory.release_directory = "release"
        cfg.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "*.py", "*.db"]
        cfg.CourseDirectory.db_url = f"sqlite:///{self.root / 'gradebook.db'}"
        cfg.Execute.timeout = timeout
        cfg.ExecutePreprocessor.timeout = timeout
        cfg.OverwriteCells.add_missing_cells = True
        bindir = str(Path(sys.executable).parent)  # nbgrader runs `alembic` from PATH
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
        self.api = NbGraderAPI(coursedir=CourseDirectory(config=cfg), config=cfg)
        with grading_env():
            result = self.api.generate_assignment(chapter, force=True)
        assert result["success"], result.get("error") or result.get("log")
        self.notebook_names = sorted(p.name for p in (self.root / "release" / chapter).glob("*.ipynb"))
        self.students: list[str] = []

    # -- notebooks ---------------------------------------------------------------------------------------
    def student_notebook(self, name: str | None = None):
        """The released (student) notebook."""
        return nbformat.read(self.root / "release" / self.chapter / (name or self.notebook_names[0]), as_version=4)

    def source_notebook(self, name: str | None = None):
        return nbformat.read(self.root / "source" / self.chapter / (name or self.notebook_names[0]), as_version=4)

    def solved_notebook(self, name: str | None = None):
        """The student notebook with every solution cell filled in from the instructor's version."""
        nb, src = self.student_notebook(name), self.source_notebook(name)
        for cell in nb.cells:
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if meta.get("solution"):  # code answers and written answers
                cell.source = _cell(src, meta["grade_id"]).source
        return nb

    def grade_ids(self, kind: str = "auto") -> dict[str, float]:
        """grade_id -> points of the autograded test cells (``kind="auto"``) or written answers (``"manual"``)."""
        out = {}
        for cell in self.source_notebook().cells:
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if meta.get("grade"):
                manual = bool(meta.get("solution"))
                if (kind == "manual") == manual:
                    out[meta["grade_id"]] = float(meta.get("points", 0))
        return out

    @property
    def max_auto(self) -> float:
        return sum(self.grade_ids("auto").values())

    # -- submitting and grading ----------------------------------------------------------------------------
    def submit(self, student: str, nb, name: str | None = None, raw: str | None = None) -> None:
        """Place a submission (a notebook object, or ``raw`` file text) for ``student``."""
        folder = self.root / "submitted" / student / self.chapter
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / (name or self.notebook_names[0])
        if raw is not None:
            path.write_text(raw, encoding="utf-8")
        else:
            nbformat.write(nb, path)
        self.students.append(student)

    def autograde(self) -> dict[str, Scores]:
        results = {}
        for student in self.students:
            with grading_env():
                result = self.api.autograde(self.chapter, student, force=True)
            results[student] = self._scores(student) if result.get("success") else None
        return results

    def _scores(self, student: str) -> Scores:
        with self.api.gradebook as gb:
            sub = gb.find_submission(self.chapter, student)
            by_cell, auto, max_auto = {}, 0.0, 0.0
            for nb in sub.notebooks:
                for grade in nb.grades:
                    if grade.cell.name in self.grade_ids("auto"):
                        by_cell[grade.name] = float(grade.auto_score or 0.0)
                        auto += float(grade.auto_score or 0.0)
                        max_auto += float(grade.max_score)
            path = self.root / "autograded" / student / self.chapter / self.notebook_names[0]
            return Scores(auto, max_auto, by_cell, bool(sub.needs_manual_grade), path)
