"""The instructor's course folder, as a thin layer over nbgrader's Python API.

Layout (nbgrader's, with this course's names; see ``nbgrader_config.py``)::

    <root>/nbgrader_config.py
    <root>/solutions/<chapter>/<name>.ipynb        nbgrader "source" (instructor copy, hidden tests inside)
    <root>/notebooks/<chapter>/<name>.ipynb        nbgrader "release" (student copy)
    <root>/submitted/<student>/<chapter>/...       written by ``mem-tutorial collect``
    <root>/autograded/<student>/<chapter>/...      written by ``mem-tutorial autograde``
    <root>/feedback/<student>/<chapter>/*.html     written by ``mem-tutorial feedback``
    <root>/gradebook.db                            nbgrader's SQLite gradebook (or ``--db URL``: PostgreSQL)

The gradebook is only ever written by the instructor's process (never by a kernel running student code): the
assignment definitions are copied into it from a scratch ``generate_assignment`` of ``solutions/<chapter>``, and
grades are copied into it from each submission's sandboxed scratch grading (:mod:`mem_tutorial.grading.grader`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

RESULT_FILE = "mem_tutorial_result.json"
"""Written last into ``autograded/<student>/<chapter>/``: the graded submission's hash and report line."""


def ensure_alembic_on_path() -> None:
    """nbgrader runs the ``alembic`` executable from PATH when it creates a gradebook."""
    bindir = str(Path(sys.executable).parent)
    parts = os.environ.get("PATH", "").split(os.pathsep)
    if bindir not in parts:
        os.environ["PATH"] = os.pathsep.join([bindir, *parts])


def redact_url(url: str) -> str:
    """A database URL without its password (for messages)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


def normalize_db_url(url: str) -> str:
    """``postgresql://`` (or ``postgres://``) with the PostgreSQL driver that is installed: SQLAlchemy 2.1 picks
    ``psycopg`` (3) by default; the course extra installs ``psycopg2-binary``."""
    import importlib.util

    scheme, sep, rest = url.partition("://")
    if sep and scheme in ("postgresql", "postgres"):
        if importlib.util.find_spec("psycopg") is not None:
            return f"postgresql+psycopg://{rest}"
        if importlib.util.find_spec("psycopg2") is not None:
            return f"postgresql+psycopg2://{rest}"
        raise RuntimeError("a PostgreSQL gradebook needs a driver: pip install psycopg2-binary "
                           "(part of the `course` extra)")
    return url


@dataclass
class Course:
    """An nbgrader course folder and its gradebook."""

    root: Path
    db_url: str | None = None

    def __post_init__(self) -> None:
        from traitlets.config import Config
        from traitlets.config.loader import PyFileConfigLoader

        self.root = Path(self.root).resolve()
        cfg_file = self.root / "nbgrader_config.py"
        self.config = Config()
        if cfg_file.is_file():
            self.config.merge(PyFileConfigLoader(cfg_file.name, path=str(self.root)).load_config())
        cd = self.config.CourseDirectory
        self.course_id = cd.get("course_id", "mem-tutorial")
        self.source_dir = self.root / cd.get("source_directory", "source")
        self.release_dir = self.root / cd.get("release_directory", "release")
        self.submitted_dir = self.root / cd.get("submitted_directory", "submitted")
        self.autograded_dir = self.root / cd.get("autograded_directory", "autograded")
        self.feedback_dir = self.root / cd.get("feedback_directory", "feedback")
        self.db_url = normalize_db_url(self.db_url or os.environ.get("MEM_TUTORIAL_DB") or cd.get("db_url") or
                                       f"sqlite:///{self.root / 'gradebook.db'}")
        self.config.CourseDirectory.root = str(self.root)
        self.config.CourseDirectory.db_url = self.db_url

    # -- folders -------------------------------------------------------------------------------------------------
    def chapters(self) -> list[str]:
        """Chapters with at least one source notebook."""
        if not self.source_dir.is_dir():
            return []
        return sorted(p.name for p in self.source_dir.iterdir() if p.is_dir() and any(p.glob("*.ipynb")))

    def resolve_chapters(self, names) -> list[str]:
        """``01`` / ``memory_as_attention`` / ``01_memory_as_attention`` -> folder names (all when empty)."""
        known = self.chapters()
        if not names:
            return known
        out = []
        for name in names:
            hits = [c for c in known if c == name or c.split("_", 1)[0] == name or c.split("_", 1)[-1] == name]
            if not hits:
                raise ValueError(f"unknown chapter {name!r}; chapters with source notebooks: {', '.join(known)}")
            out.append(hits[0])
        return out

    def notebook_names(self, chapter: str) -> list[str]:
        """Notebook names (without .ipynb) of a chapter, from its release (else its source)."""
        for folder in (self.release_dir / chapter, self.source_dir / chapter):
            names = sorted(p.stem for p in folder.glob("*.ipynb"))
            if names:
                return names
        return []

    def submissions(self, chapters=None, students=None) -> list[tuple[str, str]]:
        """(student, chapter) pairs present in ``submitted/``."""
        out = []
        if not self.submitted_dir.is_dir():
            return out
        chapters = set(chapters or self.chapters())
        for sdir in sorted(self.submitted_dir.iterdir()):
            if not sdir.is_dir() or sdir.is_symlink() or (students and sdir.name not in students):
                continue
            for cdir in sorted(sdir.iterdir()):
                if cdir.is_dir() and not cdir.is_symlink() and cdir.name in chapters:
                    out.append((sdir.name, cdir.name))
        return out

    def chapter_grade_ids(self) -> dict[str, list[str]]:
        """Chapter -> the grade ids of its notebooks (to recognise a notebook submitted under the wrong chapter)."""
        if getattr(self, "_grade_ids", None) is None:
            out: dict[str, list[str]] = {}
            for chapter in self.chapters():
                ids: list[str] = []
                for path in sorted((self.source_dir / chapter).glob("*.ipynb")):
                    try:
                        nb = json.loads(path.read_text(encoding="utf-8"))
                    except (OSError, ValueError):
                        continue
                    ids += [c.get("metadata", {}).get("nbgrader", {}).get("grade_id") for c in nb.get("cells", [])
                            if c.get("metadata", {}).get("nbgrader", {}).get("grade_id")]
                out[chapter] = ids
            self._grade_ids = out
        return self._grade_ids

    def protected_paths(self) -> list[str]:
        """What sandboxed student code must never see: the instructor's folders and the gradebook."""
        paths = [self.source_dir, self.submitted_dir, self.autograded_dir, self.feedback_dir,
                 self.root / "gradebook.db", self.root / "nbgrader_config.py", self.root / ".git",
                 self.root / ".mem_tutorial"]
        if self.db_url.startswith("sqlite:///"):
            paths.append(Path(self.db_url[len("sqlite:///"):]))
        import mem_tutorial

        checkout = Path(mem_tutorial.__file__).resolve().parent.parent  # a source checkout of the course
        paths += [checkout / "solutions", checkout / ".git", checkout / "gradebook.db"]
        return sorted({str(p) for p in paths})

    # -- nbgrader --------------------------------------------------------------------------------------------
    def api(self):
        """nbgrader's ``NbGraderAPI`` for this course (gradebook at ``db_url``)."""
        from nbgrader.apps import NbGraderAPI
        from nbgrader.coursedir import CourseDirectory

        ensure_alembic_on_path()
        return NbGraderAPI(coursedir=CourseDirectory(config=self.config), config=self.config)

    @contextlib.contextmanager
    def gradebook(self) -> Iterator:
        from nbgrader.api import Gradebook

        ensure_alembic_on_path()
        with Gradebook(self.db_url, self.course_id) as gb:
            yield gb

    def build_template(self, chapter: str, dest: Path) -> Path:
        """A SQLite gradebook holding only ``chapter``'s definition (from ``generate_assignment`` of its source
        notebooks in a scratch course), and ``dest/release/<chapter>`` (the files students were given)."""
        from nbgrader.apps import NbGraderAPI
        from nbgrader.coursedir import CourseDirectory
        from traitlets.config import Config

        ensure_alembic_on_path()
        dest = Path(dest)
        scratch = dest / f"template-{chapter}"
        if scratch.exists():
            shutil.rmtree(scratch)
        shutil.copytree(self.source_dir / chapter, scratch / "source" / chapter,
                        ignore=shutil.ignore_patterns("*.py", "__pycache__", ".ipynb_checkpoints", "*.db"))
        cfg = Config()
        cfg.CourseDirectory.root = str(scratch)
        cfg.CourseDirectory.source_directory = "source"
        cfg.CourseDirectory.release_directory = "release"
        cfg.CourseDirectory.course_id = self.course_id
        cfg.CourseDirectory.db_url = f"sqlite:///{scratch / 'gradebook.db'}"
        from mem_tutorial.grading import stubs

        stubs.configure(cfg)  # stubs that name their exercise
        api = NbGraderAPI(coursedir=CourseDirectory(config=cfg), config=cfg)
        result = api.generate_assignment(chapter, force=True)
        if not result.get("success"):
            raise RuntimeError(f"nbgrader generate_assignment failed for {chapter}: "
                               f"{result.get('error') or result.get('log')}")
        # the instructor's committed release (what students actually got) wins over the fresh one
        committed = self.release_dir / chapter
        if committed.is_dir() and any(committed.glob("*.ipynb")):
            shutil.rmtree(scratch / "release" / chapter)
            shutil.copytree(committed, scratch / "release" / chapter,
                            ignore=shutil.ignore_patterns("*.py", "__pycache__", ".ipynb_checkpoints", "*.db"))
        return scratch

    def sync_assignment(self, chapter: str, template_db_url: str) -> None:
        """Create or update ``chapter``'s definition in the course gradebook from a template gradebook."""
        from nbgrader.api import Gradebook

        with Gradebook(template_db_url, self.course_id) as src, self.gradebook() as dst:
            copy_assignment(src, dst, chapter)

    # -- grades ------------------------------------------------------------------------------------------------
    def record(self, result: dict) -> None:
        """Write one submission's grading result (from :mod:`grader`) into the course gradebook, in one
        transaction. Re-recording replaces the automatic scores (idempotent).

        Written answers keep nbgrader's semantics: no automatic score (``None``), ``needs_manual_grade`` until an
        instructor grades them. A manual score is kept when the answer is unchanged; when the student resubmitted
        a *different* answer, the old manual score no longer counts (it is cleared, the cell needs grading again,
        and ``result["manual_changed"]`` says what it was)."""
        student, chapter = result["student"], result["chapter"]
        previous = (self.read_result(student, chapter) or {}).get("answers", {})
        changed: dict[str, float] = {}
        with self.gradebook() as gb:
            try:
                gb.update_or_create_student(student)
                kwargs = {"timestamp": result["timestamp"]} if result.get("timestamp") else {}
                sub = gb.update_or_create_submission(chapter, student, **kwargs)
                for nb in sub.notebooks:
                    r = result.get("notebooks", {}).get(nb.name, {})
                    grades = r.get("grades", {})
                    answers = r.get("answers", {})
                    before = previous.get(nb.name, {})
                    for g in nb.grades:
                        info = grades.get(g.name)
                        manual = g.cell.cell_type == "markdown" or (info or {}).get("kind") == "manual"
                        if manual:
                            g.auto_score = None
                            new, old = answers.get(g.name), before.get(g.name)
                            if g.manual_score is not None and new and old and new != old:
                                changed[g.name] = float(g.manual_score)
                                g.manual_score = None
                            g.needs_manual_grade = g.manual_score is None and info is not None
                        elif info is not None:
                            g.auto_score = info["auto_score"]
                            g.needs_manual_grade = False
                        else:  # notebook not gradable (missing, not a notebook, grader failure): no points
                            g.auto_score = 0.0
                            g.needs_manual_grade = False
                    comments = r.get("comments", {})
                    for c in nb.comments:
                        if c.name in comments:
                            c.auto_comment = comments[c.name]
                    nb.flagged = bool(r.get("flagged") or result.get("flagged"))
                    if r.get("late_submission_penalty") is not None:
                        nb.late_submission_penalty = r["late_submission_penalty"]
                gb.db.commit()
            except Exception:
                gb.db.rollback()
                raise
        if changed:
            result["manual_changed"] = changed
            note = "answer changed since it was graded by hand: " + ", ".join(
                f"{k} (was {v:g})" for k, v in sorted(changed.items()))
            result["reason"] = note if result.get("reason") in (None, "", "ok") else f"{result['reason']}; {note}"

    def manual_status(self, student: str, chapter: str) -> dict[str, str]:
        """Written answer (grade id) -> "manual grading pending" / "answer changed since it was graded by hand
        (was S)" / "graded by hand", for one submission."""
        out: dict[str, str] = {}
        changed = (self.read_result(student, chapter) or {}).get("manual_changed") or {}
        with self.gradebook() as gb:
            try:
                sub = gb.find_submission(chapter, student)
            except Exception:
                return out
            for nb in sub.notebooks:
                for g in nb.grades:
                    if g.cell.cell_type != "markdown":
                        continue
                    if g.name in changed and g.manual_score is None:
                        out[g.name] = f"answer changed since it was graded by hand (was {changed[g.name]:g})"
                    elif g.manual_score is None:
                        out[g.name] = "manual grading pending"
                    else:
                        out[g.name] = "graded by hand"
        return out

    def grade_rows(self, chapters=None, students=None) -> list[dict]:
        """One row per student, chapter, notebook and graded cell (exercise test or written answer)."""
        rows = []
        with self.gradebook() as gb:
            for assignment in gb.assignments:
                if chapters and assignment.name not in chapters:
                    continue
                for sub in assignment.submissions:
                    student = sub.student.id
                    if students and student not in students:
                        continue
                    for nb in sub.notebooks:
                        for g in sorted(nb.grades, key=lambda g: g.name):
                            rows.append({
                                "student": student, "chapter": assignment.name, "notebook": nb.name,
                                "exercise": g.name, "kind": "auto" if g.cell.cell_type == "code" else "manual",
                                "score": g.score, "max_score": g.max_score,
                                "auto_score": g.auto_score, "manual_score": g.manual_score,
                                "needs_manual_grade": g.needs_manual_grade, "flagged": nb.flagged,
                                "submitted": sub.timestamp.isoformat() if sub.timestamp else "",
                            })
        return rows

    def read_result(self, student: str, chapter: str) -> dict | None:
        path = self.autograded_dir / student / chapter / RESULT_FILE
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def install_autograded(self, student: str, chapter: str, folder: Path | None, result: dict) -> None:
        """Replace ``autograded/<student>/<chapter>/`` with ``folder`` and write the result file last."""
        target = self.autograded_dir / student / chapter
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{chapter}-", dir=target.parent))
        if folder is not None and folder.is_dir():
            shutil.copytree(folder, tmp, dirs_exist_ok=True, symlinks=True)
        old = None
        if target.exists():
            old = target.with_name(f".{chapter}-old-{os.getpid()}")
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        data = json.dumps(result, indent=1, sort_keys=True)
        (target / (RESULT_FILE + ".tmp")).write_text(data, encoding="utf-8")
        os.replace(target / (RESULT_FILE + ".tmp"), target / RESULT_FILE)


# -- copying assignment definitions between gradebooks --------------------------------------------------------
def export_assignment(gb, name: str) -> dict:
    """An assignment's definition (notebooks, graded/solution/task/source cells) as plain data."""
    a = gb.find_assignment(name)
    out = {"name": a.name, "duedate": a.duedate.isoformat() if a.duedate else None, "notebooks": []}
    for nb in a.notebooks:
        out["notebooks"].append({
            "name": nb.name, "kernelspec": nb.kernelspec,
            "grade_cells": [{"name": c.name, "max_score": c.max_score, "cell_type": c.cell_type}
                            for c in nb.grade_cells],
            "solution_cells": [{"name": c.name} for c in nb.solution_cells],
            "task_cells": [{"name": c.name, "max_score": c.max_score, "cell_type": c.cell_type}
                           for c in nb.task_cells],
            "source_cells": [{"name": c.name, "cell_type": c.cell_type, "locked": c.locked, "source": c.source,
                              "checksum": c.checksum} for c in nb.source_cells],
        })
    return out


def import_assignment(gb, data: dict) -> None:
    """Create or update an assignment definition (inverse of :func:`export_assignment`)."""
    name = data["name"]
    kwargs = {"duedate": data["duedate"]} if data.get("duedate") else {}
    gb.update_or_create_assignment(name, **kwargs)
    for nb in data["notebooks"]:
        gb.update_or_create_notebook(nb["name"], name, kernelspec=nb.get("kernelspec"))
        for c in nb["grade_cells"]:
            gb.update_or_create_grade_cell(c["name"], nb["name"], name, max_score=c["max_score"],
                                           cell_type=c["cell_type"])
        for c in nb["solution_cells"]:
            gb.update_or_create_solution_cell(c["name"], nb["name"], name)
        for c in nb["task_cells"]:
            gb.update_or_create_task_cell(c["name"], nb["name"], name, max_score=c["max_score"],
                                          cell_type=c["cell_type"])
        for c in nb["source_cells"]:
            gb.update_or_create_source_cell(c["name"], nb["name"], name, cell_type=c["cell_type"],
                                            locked=c["locked"], source=c["source"], checksum=c["checksum"])


def copy_assignment(src_gb, dst_gb, name: str) -> None:
    import_assignment(dst_gb, export_assignment(src_gb, name))
