"""nbgrader's exchange on a shared server (JupyterHub, or one machine with several users).

The exchange is a folder every user can write to: the instructor *releases* an assignment into it, students
*fetch* it and *submit* their work into it, the instructor *collects* the submissions and later *releases feedback*
that students *fetch*. nbgrader does all of that; this module only sets it up and fills one gap:

* :func:`setup_exchange` creates the folder with the permissions nbgrader needs (world-writable with the sticky
  bit, so that nobody can remove another user's files) and checks that nbgrader accepts it;
* :func:`release_feedback` runs nbgrader's ``release_feedback`` from a private staging copy of the feedback pages
  plus the bookkeeping files nbgrader needs (``timestamp.txt``, ``submission_secret.txt``, read from
  ``submitted/``), so the course's own ``feedback/`` folders hold only pages for students.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

DEFAULT_ROOT = "/srv/nbgrader/exchange"
STUDENT_CONFIG = """\
# ~/.jupyter/nbgrader_config.py of every student (or the system-wide /etc/jupyter/nbgrader_config.py)
c = get_config()  # noqa: F821
c.Exchange.root = "{root}"
c.CourseDirectory.course_id = "{course_id}"
"""


def exchange_root(course) -> str | None:
    """The exchange folder the course's ``nbgrader_config.py`` names (``c.Exchange.root``), if any."""
    root = course.config.Exchange.get("root") if "Exchange" in course.config else None
    return str(root) if root else None


def setup_exchange(path: str, group: str | None = None) -> list[str]:
    """Create (or fix) the exchange folder ``path``; returns what was done. Mode 1777 (everyone may write, only
    owners may delete), or 2770 owned by ``group`` (a course group) when given."""
    done = []
    p = Path(path)
    if not p.is_dir():
        p.mkdir(parents=True)
        done.append(f"created {p}")
    if group:
        import grp

        gid = grp.getgrnam(group).gr_gid
        os.chown(p, -1, gid)
        mode = 0o2770
    else:
        mode = 0o1777
    if stat.S_IMODE(p.stat().st_mode) != mode:
        os.chmod(p, mode)
        done.append(f"set the permissions of {p} to {oct(mode)[2:]}")
    if not os.access(p, os.W_OK | os.X_OK):
        raise RuntimeError(f"{p} is not writable by you after the change")
    return done or [f"{p} was already set up"]


def release_feedback(course, chapter: str, students: list[str] | None = None) -> dict:
    """nbgrader ``release_feedback`` for ``chapter`` through a staging copy (see the module docstring)."""
    staging = Path(tempfile.mkdtemp(prefix="mt-feedback-"))
    released = []
    try:
        for sdir in sorted(course.feedback_dir.iterdir()) if course.feedback_dir.is_dir() else []:
            if students and sdir.name not in students:
                continue
            pages = sdir / chapter
            sub = course.submitted_dir / sdir.name / chapter
            if not pages.is_dir() or not (sub / "timestamp.txt").is_file() or \
                    not (sub / "submission_secret.txt").is_file():
                continue  # graded from a folder or an LMS download, not through the exchange
            dest = staging / sdir.name / chapter
            dest.mkdir(parents=True)
            for page in pages.glob("*.html"):
                shutil.copy2(page, dest / page.name)
            for name in ("timestamp.txt", "submission_secret.txt"):
                shutil.copy2(sub / name, dest / name)
            released.append(sdir.name)
        if not released:
            return {"success": True, "released": [], "log": "no feedback of an exchange submission to release"}
        from nbgrader.apps import NbGraderAPI
        from nbgrader.coursedir import CourseDirectory
        from traitlets.config import Config

        from mem_tutorial.grading.course import ensure_alembic_on_path

        cfg = Config(course.config)
        cfg.CourseDirectory.feedback_directory = str(staging)
        ensure_alembic_on_path()
        api = NbGraderAPI(coursedir=CourseDirectory(config=cfg), config=cfg)
        res = api.release_feedback(chapter, student_id=None)
        res["released"] = released
        return res
    finally:
        shutil.rmtree(staging, ignore_errors=True)
