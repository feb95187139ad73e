"""The shared-server path, end to end through nbgrader's exchange, with three students (the toy course: one exercise
worth 3 points, one written answer worth 1):

release_assignment -> fetch_assignment -> submit -> collect -> mem-tutorial autograde -> manual grading (nbgrader's
API, as Formgrader does it) -> mem-tutorial feedback -> mem-tutorial release-feedback -> fetch_feedback ->
mem-tutorial grades; then two students resubmit (one with a changed written answer, one with the same one) and
collect --update + autograde regrade exactly those two: the changed answer's old manual score stops counting, the
unchanged one's is kept.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

import hostile_class as hc

ROOT = Path(__file__).resolve().parents[1]
CH = hc.TOY_CHAPTER


def run(args, cwd, env, check=True, timeout=900):
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out


def nbgrader(*args, cwd, env, check=True):
    """An nbgrader command; the exchange is the test's own (never the machine's default one)."""
    return run([sys.executable, "-m", "nbgrader", *args, f"--Exchange.root={env['MEM_TUTORIAL_EXCHANGE']}"], cwd,
               env, check)


def mt(*args, course, env):
    return run([sys.executable, "-W", "ignore", "-m", "mem_tutorial.cli", *args, "--root", str(course)], course, env)


def answer(folder: Path, body: str, written: str) -> None:
    path = folder / CH / f"{hc.TOY_NOTEBOOK}.ipynb"
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if gid == "square":
            cell.source = f"def square(x):\n    {body}\n"
        elif gid == "why":
            cell.source = written
    nbformat.write(nb, path)


def page_text(html: str) -> str:
    """What a reader sees of an HTML page (code is split into highlighted spans in the markup)."""
    import html as html_lib
    import re

    return html_lib.unescape(re.sub(r"<[^>]+>", "", re.sub(r"<style.*?</style>|<script.*?</script>", " ", html,
                                                          flags=re.S)))


def rows(course: Path, env) -> dict:
    mt("grades", "--csv", str(course / "grades.csv"), course=course, env=env)
    keep = os.environ.get("MEM_TUTORIAL_TEST_ARTIFACTS")  # optional: keep each CSV for a report
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        n = len(list(Path(keep).glob("grades-*.csv")))
        shutil.copy(course / "grades.csv", Path(keep) / f"grades-{n}.csv")
    return {(r["student"], r["exercise"]): r for r in csv.DictReader((course / "grades.csv").open())}


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    base = tmp_path_factory.mktemp("exchange")
    course = hc.make_toy_course(base / "course")
    hc.toy_release(course, base / "scratch")
    exchange = base / "exchange"
    env = dict(os.environ, PYTHONPATH=str(ROOT), MEM_TUTORIAL_FAST="1", MEM_TUTORIAL_EXCHANGE=str(exchange),
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    env.pop("MEM_TUTORIAL_DB", None)
    setup = mt("exchange", "--path", str(exchange), course=course, env=env)
    nbgrader("generate_assignment", CH, "--force", cwd=course, env=env)
    nbgrader("release_assignment", CH, "--force", cwd=course, env=env)
    homes = {s: base / s for s in ("alice", "bob", "carol")}
    first = {"alice": ("return x * x", "Squares are never negative."),
             "bob": ("return x + x", "Because."),
             "carol": ("return x * x", "A square is a product of two equal factors.")}
    for s, home in homes.items():
        home.mkdir()
        nbgrader("fetch_assignment", CH, "--course", "mem-tutorial", cwd=home, env=env)
        answer(home, *first[s])
        nbgrader("submit", CH, "--course", "mem-tutorial", f"--student={s}", cwd=home, env=env)
    nbgrader("collect", CH, cwd=course, env=env)
    graded = mt("autograde", CH, "--no-progress", "--timeout", "60", course=course, env=env)
    # manual grading, as Formgrader does it: alice and bob get their written answer graded, carol not yet
    from mem_tutorial.grading.course import Course

    with Course(course).gradebook() as gb:
        for s, score in (("alice", 1.0), ("bob", 0.0)):
            g = gb.find_grade("why", hc.TOY_NOTEBOOK, CH, s)
            g.manual_score = score
            g.needs_manual_grade = False
        gb.db.commit()
    before = rows(course, env)
    fb = mt("feedback", CH, course=course, env=env)
    rel = mt("release-feedback", CH, course=course, env=env)
    for s, home in homes.items():
        nbgrader("fetch_feedback", CH, "--course", "mem-tutorial", f"--student={s}", cwd=home, env=env)
    # resubmissions: bob fixes his code and rewrites the written answer; alice resubmits the same written answer
    answer(homes["bob"], "return x * x", "Squares are never negative: x * x >= 0.")
    nbgrader("submit", CH, "--course", "mem-tutorial", "--student=bob", cwd=homes["bob"], env=env)
    answer(homes["alice"], "return x ** 2", "Squares are never negative.")
    nbgrader("submit", CH, "--course", "mem-tutorial", "--student=alice", cwd=homes["alice"], env=env)
    nbgrader("collect", "--update", CH, cwd=course, env=env)
    regraded = mt("autograde", CH, "--no-progress", "--timeout", "60", course=course, env=env)
    after = rows(course, env)
    return {"course": course, "homes": homes, "setup": setup, "graded": graded, "before": before, "after": after,
            "feedback": fb, "release": rel, "regraded": regraded, "exchange": exchange}


def test_exchange_is_set_up_for_every_user(loop):
    mode = loop["exchange"].stat().st_mode & 0o7777
    assert mode == 0o1777, oct(mode)
    assert 'c.Exchange.root = "' in loop["setup"].stdout and "course_id" in loop["setup"].stdout


def test_scores_after_the_first_round(loop):
    r = loop["before"]
    assert float(r[("alice", "test_square")]["score"]) == 3.0 and r[("alice", "test_square")]["reason"] == "ok"
    assert float(r[("bob", "test_square")]["score"]) == 0.0 and r[("bob", "test_square")]["reason"]
    assert float(r[("carol", "test_square")]["score"]) == 3.0
    assert r[("alice", "why")]["reason"] == "graded by hand" and float(r[("alice", "why")]["score"]) == 1.0
    assert r[("carol", "why")]["reason"] == "manual grading pending"
    assert r[("carol", "why")]["auto_score"] == ""  # no automatic score for a written answer (nbgrader's none)
    table = loop["graded"].stdout
    assert "1 pending" in next(ln for ln in table.splitlines() if ln.startswith("carol"))


def test_feedback_reaches_students_and_holds_only_pages(loop):
    assert "feedback released for 3 student(s)" in loop["release"].stdout, loop["release"].stdout
    for s, home in loop["homes"].items():
        pages = list((home / CH / "feedback").rglob("*.html"))
        assert pages, f"{s} fetched no feedback"
        text = page_text(pages[0].read_text())
        assert "square(-2)" not in text and "(hidden tests: run by the grader" in text  # hidden test redacted
        folder = loop["course"] / "feedback" / s / CH
        assert sorted(p.suffix for p in folder.iterdir()) == [".html"], list(folder.iterdir())


def test_resubmission_regrades_only_what_changed(loop):
    assert "2 graded" in loop["regraded"].stdout, loop["regraded"].stdout
    r = loop["after"]
    assert float(r[("bob", "test_square")]["score"]) == 3.0
    assert r[("bob", "why")]["reason"] == "answer changed since it was graded by hand (was 0)"
    assert r[("bob", "why")]["needs_manual_grade"] == "True" and r[("bob", "why")]["manual_score"] == ""
    assert r[("alice", "why")]["reason"] == "graded by hand" and float(r[("alice", "why")]["score"]) == 1.0
    assert float(r[("alice", "test_square")]["score"]) == 3.0
    assert r[("carol", "why")]["reason"] == "manual grading pending"
    bob_line = next(ln for ln in loop["regraded"].stdout.splitlines() if ln.startswith("bob"))
    assert "1 changed" in bob_line and "answer changed since it was graded by hand" in bob_line
