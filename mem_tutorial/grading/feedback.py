"""Feedback pages a student may see: scores, each test's outcome and first failing message, never the hidden tests.

nbgrader renders ``autograded/<student>/<chapter>/*.ipynb`` to HTML. The autograded notebook holds the test cells
as the grader ran them, hidden tests included; :class:`RedactHiddenTests` replaces every hidden-test block by one
comment line before rendering (the test's outcome and message are in the cell's output, written by the trusted
runner, which never includes hidden-test source). :func:`write_feedback` then removes from the feedback folder
everything that is not a page for the student (the grader's result file, nbgrader's submission secret).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from nbconvert.preprocessors import Preprocessor
from traitlets import Bool

HIDDEN_PLACEHOLDER = "# (hidden tests: run by the grader; their outcome is shown below)"
_HIDDEN = re.compile(r"[ \t]*#+ *BEGIN HIDDEN TESTS.*?#+ *END HIDDEN TESTS[^\n]*", re.S)
_OPEN_HIDDEN = re.compile(r"[ \t]*#+ *BEGIN HIDDEN TESTS.*", re.S)
KEEP_SUFFIXES = (".html",)
"""Only the pages stay in ``feedback/<student>/<chapter>/`` (the exchange's bookkeeping files are read from
``submitted/`` when feedback is released: :func:`mem_tutorial.grading.exchange.release_feedback`)."""


def redact(source: str) -> str:
    """``source`` with each hidden-test block (also an unterminated one) replaced by one comment line."""
    out = _HIDDEN.sub(HIDDEN_PLACEHOLDER, source)
    return _OPEN_HIDDEN.sub(HIDDEN_PLACEHOLDER, out)


class RedactHiddenTests(Preprocessor):
    """Replace hidden-test blocks in every code cell (whatever its metadata says) by a placeholder comment."""

    enabled = Bool(True)  # nbgrader registers feedback preprocessors without enabling them
    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code" and "HIDDEN TESTS" in cell.source:
            cell.source = redact(cell.source)
        return cell, resources


def feedback_config(config):
    """``config`` with nbgrader's feedback preprocessors plus :class:`RedactHiddenTests` (before rendering)."""
    from nbgrader.preprocessors import GetGrades
    from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor

    config.GenerateFeedback.preprocessors = [GetGrades, RedactHiddenTests, CSSHTMLHeaderPreprocessor]
    return config


def clean_folder(folder: Path) -> list[str]:
    """Delete everything in a feedback folder that is not a feedback page; returns what was removed."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix in KEEP_SUFFIXES and not path.is_symlink():
            continue
        removed.append(path.name)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return removed


def write_feedback(course, chapter: str, student: str) -> dict:
    """Generate ``feedback/<student>/<chapter>/`` for one graded submission (nbgrader's API, hidden tests redacted)
    and keep only the pages; returns nbgrader's result dict."""
    feedback_config(course.config)
    api = course.api()
    res = api.generate_feedback(chapter, student, force=True)
    if res.get("success"):
        clean_folder(course.feedback_dir / student / chapter)
    return res
