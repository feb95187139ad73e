"""Grade made-up submissions of a chapter through the course's own grader (:mod:`mem_tutorial.grading.grader`:
nbgrader's autograde in a scratch course, the kernel sandboxed, every graded test cell run by the trusted runner
against an answer process), as ``mem-tutorial autograde`` grades a class.

Used by every chapter's ``tests/test_<NN>_grading.py``:

    course = ScratchCourse(tmp_path, "01_memory_as_attention")
    nb = course.student_notebook()                      # the released stub
    solved = course.solved_notebook()                   # stub with the instructor's answers filled in
    course.submit("alice", solved)
    course.submit("bob", with_solution(solved, "read", "def read(m, w):\\n    return m.mean(1)"))
    scores = course.autograde()                         # {student: Scores}
    assert scores["alice"].auto == course.max_auto

Each submission is autograded on its own, so a broken one cannot stop the others.

Grading is the slow part of the test suite (one fork server, kernel and answer process per test per submission), so
the chapter tests use two savings that change no automatic grade:

* :func:`lean`: the submission without the ordinary code cells after the last graded test (the chapter's training
  and demo tail). Every test cell still runs after exactly the same cells as in the full notebook. The solution and
  the stub stay complete, so the whole notebook is still checked with every answer right and with none;
* :meth:`ScratchCourse.submit_wrong`: wrong answers to *different* exercises share one submission (at most half
  of the exercises, rounded up, are wrong in each, so every wrong answer is still seen next to right ones). An
  answer whose names are read by a cell other than its own tests is never combined: it could change other tests.
  :meth:`ScratchCourse.assert_loses_only` then checks each wrong answer: its tests score 0, and every test of an
  exercise answered right in the same submission keeps its points.

The usual checks of a chapter are helpers: :meth:`~ScratchCourse.assert_solution_full`,
:meth:`~ScratchCourse.assert_stub_zero`, :meth:`~ScratchCourse.assert_loses_only`,
:meth:`~ScratchCourse.assert_deleted_test_runs`.
"""

from __future__ import annotations

import ast
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


def _meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def lean(nb):
    """A copy of ``nb`` without the ordinary code cells after the last graded test cell (training, demos).

    Each graded test cell runs after exactly the same cells as in the full notebook, so the automatic grades are
    those of the full notebook; only the time of the chapter's tail is saved."""
    nb = copy.deepcopy(nb)
    tests = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and _meta(c).get("grade")]
    last = max(tests, default=len(nb.cells))
    nb.cells = [c for i, c in enumerate(nb.cells) if i <= last or c.cell_type != "code" or _meta(c)]
    return nb


def _names(source: str, kind: str) -> set[str]:
    """Top-level names a cell defines (``kind="def"``) or any name it reads (``"use"``); IPython magics skipped."""
    text = "\n".join(ln for ln in source.splitlines() if not ln.lstrip().startswith(("%", "!")))
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return set()
    if kind == "use":
        return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    out = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            for t in (node.targets if isinstance(node, ast.Assign) else [node.target]):
                out |= {n.id for n in ast.walk(t) if isinstance(n, ast.Name)}
    return out


def coupled_exercises(nb) -> set[str]:
    """grade_ids of the answer cells whose names are read by a code cell other than the answer itself and the
    graded tests that follow it (up to the next answer cell): a wrong answer there could change other tests."""
    cells = [c for c in nb.cells if c.cell_type == "code"]
    answers = [i for i, c in enumerate(cells) if _meta(c).get("solution") and not _meta(c).get("grade")]
    out = set()
    for k, i in enumerate(answers):
        end = answers[k + 1] if k + 1 < len(answers) else len(cells)
        own = {i} | {j for j in range(i + 1, end) if _meta(cells[j]).get("grade")}
        defined = _names(cells[i].source, "def")
        if any(defined & _names(c.source, "use") for j, c in enumerate(cells) if j not in own):
            out.add(_meta(cells[i])["grade_id"])
    return out


class ScratchCourse:
    """A temporary nbgrader course holding one chapter of this repository."""

    def __init__(self, tmp: Path, chapter: str, timeout: int = 120):
        from nbgrader.apps import NbGraderAPI
        from nbgrader.coursedir import CourseDirectory
        from traitlets.config import Config

        self.root, self.chapter, self.timeout = Path(tmp), chapter, timeout
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
        from mem_tutorial.grading import stubs

        stubs.configure(cfg)  # stubs that name their exercise
        bindir = str(Path(sys.executable).parent)  # nbgrader runs `alembic` from PATH
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
        self.api = NbGraderAPI(coursedir=CourseDirectory(config=cfg), config=cfg)
        with grading_env():
            result = self.api.generate_assignment(chapter, force=True)
        assert result["success"], result.get("error") or result.get("log")
        self.notebook_names = sorted(p.name for p in (self.root / "release" / chapter).glob("*.ipynb"))
        self.students: list[str] = []
        self.results: dict[str, dict] = {}

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

    def submit_wrong(self, solved, wrong: dict, tests: dict, per_submission: int | None = None) -> dict[str, str]:
        """Submit the wrong answers of ``wrong`` (name -> ``(grade_id, source)`` or ``(grade_id, source, lost
        tests)``) as lean copies of ``solved``, those to different exercises combined (see the module docstring).

        ``tests``: answer grade_id -> its graded test cell(s) (a str or a list), the tests a wrong answer loses
        unless it names them. ``per_submission``: most wrong answers in one submission (default: half of the
        exercises, rounded up). Returns wrong-answer name -> submission name (kept for :meth:`assert_loses_only`)."""
        base = lean(solved)
        cap = per_submission or max(1, (len(tests) + 1) // 2)
        alone = {gid for gid, src, *_ in wrong.values() if gid in coupled_exercises(with_solution(base, gid, src))}
        groups: list[list[str]] = []
        for name, (gid, *_rest) in wrong.items():
            spot = None if gid in alone else next(
                (g for g in groups if len(g) < cap and gid not in {wrong[n][0] for n in g}
                 and not alone & {wrong[n][0] for n in g}), None)
            if spot is None:
                groups.append([name])
            else:
                spot.append(name)
        if not hasattr(self, "wrong_lost"):
            self.wrong_in: dict[str, str] = {}
            self.wrong_lost: dict[str, set[str]] = {}
        for names in groups:
            sub = names[0] if len(names) == 1 else "wrong+" + "+".join(names)
            nb = base
            for n in names:
                gid, src, *lost = wrong[n]
                nb = with_solution(nb, gid, src)
                own = tests[gid]
                self.wrong_lost[n] = set(lost[0] if lost else ([own] if isinstance(own, str) else own))
                self.wrong_in[n] = sub
            self.submit(sub, nb)
        return dict(self.wrong_in)

    def autograde(self) -> dict[str, Scores]:
        """Grade every submission through the course's own grader (:func:`mem_tutorial.grading.grader.grade`: the
        sandboxed kernel, and each graded test cell run by the trusted runner against an answer process), exactly
        as ``mem-tutorial autograde`` does, one submission at a time."""
        from dataclasses import asdict

        from mem_tutorial.grading import sandbox
        from mem_tutorial.grading.grader import grade

        from mem_tutorial.grading.session import release_imports
        from mem_tutorial.grading.zygote import Zygote

        results = {}
        lease = sandbox.SlotLease(1) if sandbox.can_isolate()[0] else None
        worker = lease.slots[0] if lease else 0
        folder = self.root / "fork-server"
        folder.mkdir(exist_ok=True)
        warm = [s for nb in sorted((self.root / "release" / self.chapter).glob("*.ipynb")) for s in release_imports(nb)]
        zygote = Zygote(str(folder), protected_dirs=[str(self.root / "source")], log=str(folder / "log"), warm=warm)
        try:
            for student in self.students:
                out = self.root / "graded" / student
                out.mkdir(parents=True, exist_ok=True)
                limits = sandbox.Limits(cell_timeout=self.timeout, wall_seconds=20 * self.timeout,
                                        cpu_seconds=20 * self.timeout)
                job = {"student": student, "chapter": self.chapter, "course_id": "mem-tutorial",
                       "submission": str(self.root / "submitted" / student / self.chapter),
                       "template": str(self.root), "out": str(out), "worker": worker, "limits": asdict(limits),
                       "hide": [str(self.root / "source")], "isolate": None, "cache_dir": str(self.root),
                       "zygote": zygote.socket_path,
                       "env": {"MEM_TUTORIAL_FAST": "1", "MEM_TUTORIAL_DEVICE": "cpu", "MEM_TUTORIAL_PROGRESS": "0"}}
                with grading_env():
                    result = grade(job)
                self.results[student] = result
                results[student] = self._scores(student, result, out) if result.get("status") == "graded" else None
        finally:
            zygote.close()
            if lease is not None:
                lease.release()
        for name, sub in getattr(self, "wrong_in", {}).items():  # a wrong answer's name finds its submission
            results.setdefault(name, results[sub])
        return results

    # -- the usual checks of a chapter ---------------------------------------------------------------------------
    def assert_solution_full(self, scores, total: float, student: str = "solution") -> None:
        """The instructor's answers earn every automatic point, raise no error, and leave the written answers to
        the instructor."""
        s = scores[student]
        assert s is not None, f"{student}: nbgrader could not autograde the submission"
        assert s.auto == self.max_auto == total, (s.auto, self.max_auto, total, s.by_cell)
        assert s.needs_manual == bool(self.grade_ids("manual"))
        assert s.errors() == [], f"{student}: errors in {s.errors()}"

    def assert_stub_zero(self, scores, student: str = "stub") -> None:
        """The untouched student notebook scores 0 and, run top to bottom, fails only in the graded test cells."""
        s = scores[student]
        assert s.auto == 0, s.by_cell
        assert sorted(s.errors()) == sorted(self.grade_ids("auto")), s.errors()

    def assert_loses_only(self, scores, name: str) -> None:
        """Wrong answer ``name`` (from :meth:`submit_wrong`) loses its tests' points; every test of an exercise
        answered right in the same submission keeps its points."""
        sub = self.wrong_in[name]
        lost_here = set().union(*(self.wrong_lost[n] for n, s in self.wrong_in.items() if s == sub))
        by_cell = scores[sub].by_cell
        for gid in self.wrong_lost[name]:
            assert by_cell[gid] == 0.0, f"{name}: {gid} did not catch it (submission {sub}: {by_cell})"
        for gid, points in self.grade_ids("auto").items():
            if gid not in lost_here:
                assert by_cell[gid] == points, f"{name}: {gid} lost points it should keep ({sub}: {by_cell})"

    def assert_deleted_test_runs(self, scores, test_id: str, student: str = "deleted_test") -> None:
        """A deleted test cell is restored from the gradebook, run and graded (on the stub: 0 points, an error)."""
        s = scores[student]
        assert test_id in s.by_cell and s.by_cell[test_id] == 0, s.by_cell
        assert test_id in s.errors()

    def _scores(self, student: str, result: dict, out: Path) -> Scores:
        by_cell, auto, max_auto, manual = {}, 0.0, 0.0, False
        auto_ids = self.grade_ids("auto")
        for nbres in result.get("notebooks", {}).values():
            for gid, g in nbres.get("grades", {}).items():
                if gid in auto_ids:
                    by_cell[gid] = float(g.get("auto_score") or 0.0)
                    auto += by_cell[gid]
                    max_auto += float(g["max_score"])
                elif g.get("needs_manual_grade"):
                    manual = True
        return Scores(auto, max_auto, by_cell, manual, out / "autograded" / self.notebook_names[0])
