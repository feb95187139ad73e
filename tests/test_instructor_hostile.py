"""End to end through the CLI: collect and autograde the hostile class (tests/hostile_class.py), then read every
student's score and flag back from the gradebook, check that nothing of the course was touched, that a re-run is
idempotent and an interrupted run resumes, and that feedback and the CSV export work."""

from __future__ import annotations

import csv
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

import hostile_class as hc

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not (hc.source_path().is_file() and hc.release_path().is_file()),
                                reason="Chapter 1 notebooks not built (run `mem-tutorial build 01 && mem-tutorial release 01`)")


def cli(*args: str, root: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), MEM_TUTORIAL_FAST="1",
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    env.pop("MEM_TUTORIAL_DB", None)
    return subprocess.run([sys.executable, "-W", "ignore", "-m", "mem_tutorial.cli", *args, "--root", str(root)],
                          capture_output=True, text=True, env=env, timeout=timeout)


def tree_hash(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(Path(folder).rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode() + p.read_bytes())
    return h.hexdigest()


def gradebook_view(course: Path) -> dict:
    """student -> (automatic points, flagged, number of submissions) as stored in the gradebook."""
    from mem_tutorial.grading.course import Course

    out = {}
    with Course(course).gradebook() as gb:
        for sub in gb.find_assignment(hc.CHAPTER).submissions:
            auto = sum(g.auto_score or 0.0 for nb in sub.notebooks for g in nb.grades if g.cell.cell_type == "code")
            flagged = any(nb.flagged for nb in sub.notebooks)
            out.setdefault(sub.student.id, []).append((auto, flagged))
    return out


def table_line(stdout: str, student: str) -> str:
    return next((ln for ln in stdout.splitlines() if ln.split(" ", 1)[0] == student), "")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        pytest.skip("the hostile class needs the isolated sandbox (root on Linux: kernels as their own user in a "
                    "private mount namespace); without it the file-deleting cases would run as you")
    base = tmp_path_factory.mktemp("hostile")
    course = hc.make_course(base / "course")
    cases = hc.write_class(base / "incoming", course)
    before = {name: tree_hash(path) for name, path in
              [("course solutions", course / "solutions"), ("course notebooks", course / "notebooks"),
               ("repo solutions", ROOT / "solutions"), ("repo notebooks", ROOT / "notebooks")]}
    collected = cli("collect", str(base / "incoming"), root=course)
    assert collected.returncode == 0, collected.stderr
    graded = cli("autograde", "01", "--workers", "2", "--timeout", "30", "--no-progress", "--require-isolation",
                 root=course)
    return {"course": course, "cases": cases, "before": before, "collect": collected, "autograde": graded,
            "base": base}


def test_collect_reports_unmatched_file(graded):
    out = graded["collect"].stdout
    line = next(ln for ln in out.splitlines() if "UNMATCHED" in ln)
    assert "wrong_name" in line and "memory_as_atention.ipynb" in line and "did you mean memory_as_attention" in line
    n = len(graded["cases"])
    assert f"{n} submission(s) imported for {n} student(s)" in out


def test_autograde_exits_zero_and_reports_every_student(graded):
    ag = graded["autograde"]
    assert ag.returncode == 0, ag.stdout + ag.stderr
    assert "TOOL ERROR" not in ag.stdout
    assert "sandbox: isolated" in ag.stdout
    for case in graded["cases"]:
        assert table_line(ag.stdout, case.student), f"{case.student} missing from the table:\n{ag.stdout}"


def test_every_score_flag_and_reason(graded):
    view = gradebook_view(graded["course"])
    stdout = graded["autograde"].stdout
    problems = []
    for case in graded["cases"]:
        got = view.get(case.student)
        if not got:
            problems.append(f"{case.student}: no submission in the gradebook")
            continue
        (auto, flagged), = got
        line = table_line(stdout, case.student).lower()
        if abs(auto - case.auto) > 1e-9:
            problems.append(f"{case.student} ({case.what}): {auto} automatic points, expected {case.auto}; {line}")
        if flagged != case.flagged:
            problems.append(f"{case.student} ({case.what}): flagged={flagged}, expected {case.flagged}; {line}")
        for word in case.reason:
            if word.lower() not in line:
                problems.append(f"{case.student} ({case.what}): reason lacks {word!r}: {line}")
        if case.status not in line:
            problems.append(f"{case.student}: status {case.status!r} not in {line}")
    assert not problems, "\n".join(problems)


def test_course_and_repository_untouched(graded):
    course = graded["course"]
    after = {name: tree_hash(path) for name, path in
             [("course solutions", course / "solutions"), ("course notebooks", course / "notebooks"),
              ("repo solutions", ROOT / "solutions"), ("repo notebooks", ROOT / "notebooks")]}
    assert after == graded["before"]
    assert (course / "gradebook.db").is_file() and (course / "nbgrader_config.py").is_file()
    view = gradebook_view(course)
    assert sorted(view) == sorted(c.student for c in graded["cases"])
    assert all(len(v) == 1 for v in view.values())
    # every other student's submitted files are intact
    for case in graded["cases"]:
        assert (course / "submitted" / case.student / hc.CHAPTER / case.filename).is_file()
    out = (course / "autograded" / "deletes_files" / hc.CHAPTER / "memory_as_attention.ipynb").read_text()
    assert "deleted: []" in out  # the sandbox stopped every deletion outside its own folder


def test_tampered_tests_restored_and_run(graded):
    import nbformat

    folder = graded["course"] / "autograded"
    nb = nbformat.read(folder / "deleted_test" / hc.CHAPTER / "memory_as_attention.ipynb", as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "test_content_weighting")
    assert "content_weighting: visible checks passed" in "".join(o.get("text", "") for o in cell.outputs)
    nb = nbformat.read(folder / "edited_test" / hc.CHAPTER / "memory_as_attention.ipynb", as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "test_read")
    assert "print('all good')" not in cell.source and any(o.output_type == "error" for o in cell.outputs)


def test_library_call_message_reaches_feedback(graded):
    from mem_tutorial.grading.course import Course

    course = graded["course"]
    with Course(course).gradebook() as gb:
        comment = gb.find_comment("content_weighting", hc.NOTEBOOK, hc.CHAPTER, "library_call")
        assert "no credit" in (comment.auto_comment or "")
    fb = cli("feedback", "01", "--students", "library_call", "perfect", "invalid_json", root=course)
    assert fb.returncode == 0, fb.stdout + fb.stderr
    html = (course / "feedback" / "library_call" / hc.CHAPTER / "memory_as_attention.html").read_text()
    assert "no credit for content_weighting" in html
    assert (course / "feedback" / "perfect" / hc.CHAPTER / "memory_as_attention.html").is_file()
    assert "invalid_json/01_memory_as_attention: no feedback (memory_as_attention.ipynb: invalid JSON" in fb.stdout
    # what a student sees: no line of a hidden test, and nothing in the folder but the page
    import nbformat
    from test_exchange import page_text

    source = nbformat.read(hc.source_path(), as_version=4)
    hidden = set()
    for cell in source.cells:
        if "### BEGIN HIDDEN TESTS" in cell.source:
            head, rest = cell.source.split("### BEGIN HIDDEN TESTS", 1)
            hidden |= {ln.strip() for ln in rest.split("### END HIDDEN TESTS")[0].splitlines()} - \
                {ln.strip() for ln in head.splitlines()}
    hidden = {ln for ln in hidden if len(ln) > 3}
    for student in ("library_call", "perfect"):
        folder = course / "feedback" / student / hc.CHAPTER
        assert sorted(p.name for p in folder.iterdir()) == ["memory_as_attention.html"]
        lines = {ln.strip() for ln in page_text((folder / "memory_as_attention.html").read_text()).splitlines()}
        assert not hidden & lines, sorted(hidden & lines)[:3]


def test_grades_csv(graded):
    course = graded["course"]
    out = course / "grades.csv"
    res = cli("grades", "--csv", str(out), root=course)
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(out.open()))
    n = len(graded["cases"])
    assert len(rows) == n * 6  # 4 tests + 2 written answers per student
    perfect = {r["exercise"]: r for r in rows if r["student"] == "perfect"}
    assert float(perfect["test_write"]["score"]) == 2.0 and perfect["written_beta"]["needs_manual_grade"] == "True"
    assert {r["flagged"] for r in rows if r["student"] == "library_call"} == {"True"}
    assert "invalid JSON" in next(r["reason"] for r in rows if r["student"] == "invalid_json")


def test_rerun_is_idempotent_and_resumes(graded):
    """Runs last (pytest keeps file order): a re-run grades nothing; after a simulated interruption (one result
    file missing) and one resubmission, exactly those two are graded and no grade is duplicated."""
    course = graded["course"]
    view = gradebook_view(course)
    again = cli("autograde", "01", "--workers", "2", "--timeout", "30", "--no-progress", root=course)
    n = len(graded["cases"])
    assert again.returncode == 0 and f"0 graded, {n} up to date" in again.stdout, again.stdout + again.stderr
    assert gradebook_view(course) == view
    (course / "autograded" / "empty" / hc.CHAPTER / "mem_tutorial_result.json").unlink()
    fixed = graded["base"] / "resubmit" / "invalid_json" / hc.CHAPTER
    fixed.mkdir(parents=True)
    (fixed / "memory_as_attention.ipynb").write_bytes(hc.perfect_bytes(fast_only=True))
    assert cli("collect", str(graded["base"] / "resubmit"), root=course).returncode == 0
    resumed = cli("autograde", "01", "--workers", "2", "--timeout", "30", "--no-progress", root=course)
    assert resumed.returncode == 0 and f"2 graded, {n - 2} up to date" in resumed.stdout, resumed.stdout
    new = gradebook_view(course)
    assert new["invalid_json"] == [(hc.AUTO_POINTS, False)]
    assert {k: v for k, v in new.items() if k != "invalid_json"} == {k: v for k, v in view.items() if k != "invalid_json"}
