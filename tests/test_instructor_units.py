"""Unit tests of the instructor tooling that need no kernel: integrity checks, collect, preflight, gradebook
copying, the sandbox's view of the file system."""

from __future__ import annotations

import json
import os
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

import hostile_class as hc
from mem_tutorial.grading import integrity
from mem_tutorial.grading.grader import preflight

v4 = nbformat.v4


def _m(**kw):
    return {"nbgrader": {"schema_version": 3, "task": False, **kw}}


RELEASE = v4.new_notebook(cells=[
    v4.new_code_cell("import torch\nimport mem_tutorial.memory as mem", id="setup"),
    v4.new_code_cell("def content_weighting(memory, key, beta):\n    raise NotImplementedError()", id="cw",
                     metadata=_m(grade=False, solution=True, locked=False, grade_id="content_weighting")),
    v4.new_code_cell("w = content_weighting(M, k, b)\nassert w.shape == (1, 3)", id="t",
                     metadata=_m(grade=True, solution=False, locked=True, grade_id="test_cw", points=2)),
    v4.new_code_cell("def read(memory, weights):\n    raise NotImplementedError()", id="rd",
                     metadata=_m(grade=False, solution=True, locked=False, grade_id="read")),
    v4.new_code_cell("assert read(M, w).shape == (1, 2)", id="t2",
                     metadata=_m(grade=True, solution=False, locked=True, grade_id="test_read", points=1)),
    v4.new_code_cell("from mem_tutorial.memory import read as library_read  # later demo", id="demo"),
])


def student(cw_body: str | None = None, extra: str | None = None, read_body="return (weights[..., None] * memory).sum(1)"):
    nb = nbformat.from_dict(json.loads(json.dumps(RELEASE)))
    if cw_body is not None:
        nb.cells[1].source = f"def content_weighting(memory, key, beta):\n    {cw_body}"
    nb.cells[3].source = f"def read(memory, weights):\n    {read_body}"
    if extra is not None:
        nb.cells.insert(2, v4.new_code_cell(extra, id="extra"))
    return nb


def kinds(nb):
    return [(f.kind, f.zero) for f in integrity.check_submission(nb, RELEASE)]


@pytest.mark.parametrize("body, extra", [
    ("return mem.content_weighting(memory, key, beta)", None),
    ("return mem.content_weighting(memory, key, beta) * 1.0 + 0", None),
    ("from mem_tutorial.memory.addressing import content_weighting as cw\n    return cw(memory, key, beta)", None),
    ("import mem_tutorial.memory as m2\n    f = m2.content_weighting\n    return f(memory, key, beta)", None),
    ("return cw(memory, key, beta)", "from mem_tutorial.memory import content_weighting as cw"),
    ("return content_weighting(memory, key, beta)", "from mem_tutorial.memory.addressing import *"),
    (None, "content_weighting = mem.content_weighting"),
    (None, "from mem_tutorial.memory import content_weighting"),
])
def test_library_call_gets_no_credit(body, extra):
    found = [f for f in integrity.check_submission(student(body, extra), RELEASE) if f.kind == "library_call"]
    assert len(found) >= 1, integrity.check_submission(student(body, extra), RELEASE)
    assert found[0].zero == ["test_cw"] and found[0].cell == "content_weighting"
    assert "no credit for content_weighting" in found[0].message


def test_own_work_using_other_library_helpers_is_fine():
    body = "s = mem.cosine_similarity(memory, key)\n    return torch.softmax(beta[:, None] * s, -1)"
    assert kinds(student(body)) == []
    # the release's own later `from mem_tutorial.memory import read` is not the student's doing
    assert all(f.kind != "library_call" for f in integrity.check_submission(student(body), RELEASE))


def test_dynamic_lookup_is_suspicious_not_zeroed():
    body = "import importlib\n    return getattr(importlib.import_module('mem_tutorial.memory'), 'content_' + 'weighting')(memory, key, beta)"
    found = integrity.check_submission(student(body), RELEASE)
    assert [f.kind for f in found] == ["suspicious"] and found[0].zero == []


def test_tampering_findings():
    nb = student("return None")
    nb.cells = [c for c in nb.cells if c.get("id") != "t"]
    nb.cells[3].source = "print('fine')"  # test_read edited
    found = {(f.kind, f.cell) for f in integrity.check_submission(nb, RELEASE)}
    assert ("deleted_test", "test_cw") in found and ("edited_locked", "test_read") in found
    nb = student("return None")
    nb.cells[2].metadata["nbgrader"]["locked"] = False
    assert ("metadata_changed", "test_cw") in {(f.kind, f.cell) for f in integrity.check_submission(nb, RELEASE)}
    nb = student("return None")
    nb.cells.append(nbformat.from_dict(json.loads(json.dumps(nb.cells[2]))))
    assert ("duplicate_id", "test_cw") in {(f.kind, f.cell) for f in integrity.check_submission(nb, RELEASE)}


def test_suspicious_code_flagged_only_when_written_by_the_student():
    assert integrity.check_suspicious(RELEASE, RELEASE) == []
    nb = student("return None", extra="import shutil\nshutil.rmtree('../../../solutions')")
    (f,) = integrity.check_suspicious(nb, RELEASE)
    assert "shutil.rmtree" in f.message and "'solutions'" in f.message


@pytest.mark.parametrize("data, words", [
    (b"", "empty file"),
    (b"\x89PNG\r\n\x1a\n\x00\x01", "binary file"),
    (b'{"cells": [', "invalid json at line 1"),
    (b"[1, 2, 3]", "not a jupyter notebook"),
    (b'{"cells": "x", "nbformat": 4}', "not a jupyter notebook"),
])
def test_preflight_rejects_with_reason(tmp_path, data, words):
    p = tmp_path / "nb.ipynb"
    p.write_bytes(data)
    nb, why, _ = preflight(p)
    assert nb is None and words in why.lower()


def test_preflight_repairs_duplicate_ids_and_bad_metadata(tmp_path):
    d = json.loads(nbformat.writes(RELEASE))
    d["cells"].append(dict(d["cells"][0]))
    d["cells"][2]["metadata"]["nbgrader"]["points"] = "lots"
    p = tmp_path / "nb.ipynb"
    p.write_text(json.dumps(d))
    nb, why, repairs = preflight(p)
    assert why is None and len({c.id for c in nb.cells}) == len(nb.cells)
    assert any("duplicated cell id `setup`" in r for r in repairs)
    assert any("invalid nbgrader metadata" in r for r in repairs) and "nbgrader" not in nb.cells[2].metadata


# -- collect --------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = hc.make_toy_course(tmp_path_factory.mktemp("toy") / "course")
    release = hc.toy_release(root, tmp_path_factory.mktemp("scratch"))
    return root, release


def test_collect_folder_tree(toy, tmp_path):
    from mem_tutorial.grading.collect import collect
    from mem_tutorial.grading.course import Course

    root, release = toy
    course = Course(root)
    src = tmp_path / "in"
    good = hc.toy_answer(release, "return x * x")
    for who, chapter, name in [("alice", "01_toy", "toy.ipynb"), ("bob", "01", "Toy (1).ipynb"),
                               ("carol", "01_toy", "toi.ipynb"), ("dave", "99_nope", "toy.ipynb"),
                               ("bad id!", "01_toy", "toy.ipynb")]:
        (src / who / chapter).mkdir(parents=True)
        (src / who / chapter / name).write_bytes(good)
    (src / "alice" / "01_toy" / "data.csv").write_text("1,2\n")
    os.symlink("/etc/passwd", src / "alice" / "01_toy" / "secret.txt")
    rep = collect(course, src)
    text = rep.format()
    assert ("alice", "01_toy", "toy.ipynb") in rep.imported and ("bob", "01_toy", "toy.ipynb") in rep.imported
    assert "carol/01_toy/toi.ipynb: notebook name matches none" in text and "did you mean toy.ipynb" in text
    assert "dave/99_nope: not a chapter folder" in text and "bad id!: folder name is not a valid student id" in text
    assert "alice/01_toy/secret.txt: symbolic link" in text
    assert (root / "submitted" / "alice" / "01_toy" / "data.csv").is_file()
    assert not (root / "submitted" / "alice" / "01_toy" / "secret.txt").exists()
    assert (root / "submitted" / "alice" / "01_toy" / "timestamp.txt").is_file()
    again = collect(course, src)
    assert not again.imported and ("alice", "01_toy") in again.unchanged


def test_collect_lms_zip(toy, tmp_path):
    from mem_tutorial.grading.collect import collect
    from mem_tutorial.grading.course import Course

    root, release = toy
    course = Course(root)
    z = tmp_path / "download.zip"
    old, new = hc.toy_answer(release, "return 0"), hc.toy_answer(release, "return x * x")
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr(zipfile.ZipInfo("doejane_12345_678901_toy.ipynb", (2026, 11, 1, 10, 0, 0)), old)
        zf.writestr(zipfile.ZipInfo("doejane_LATE_12345_678999_toy-1.ipynb", (2026, 11, 2, 10, 0, 0)), new)
        zf.writestr("Jane Roe_777_assignsubmission_file_/toy.ipynb", new)
        zf.writestr("s42_toy.ipynb", new)
        zf.writestr("../../evil.ipynb", new)
        zf.writestr("readme", "no id here")
        link = zipfile.ZipInfo("s43_toy.ipynb")
        link.external_attr = (0o120777 << 16)
        zf.writestr(link, "/etc/passwd")
    rep = collect(course, z, chapter="01")
    text = rep.format()
    assert {s for s, _, _ in rep.imported} == {"12345", "777", "s42"}
    assert (root / "submitted" / "12345" / "01_toy" / "toy.ipynb").read_bytes() == new  # newest resubmission wins
    assert "older duplicate" in text and "../../evil.ipynb: unsafe path" in text
    assert "readme: no student id" in text and "s43_toy.ipynb: symbolic link" in text
    stamp = (root / "submitted" / "12345" / "01_toy" / "timestamp.txt").read_text()
    assert stamp.startswith("2026-11-02T10:00:00")


# -- gradebook ------------------------------------------------------------------------------------------------------
def test_assignment_copy_and_idempotent_record(toy, tmp_path):
    from nbgrader.api import Gradebook

    from mem_tutorial.grading.course import Course, export_assignment

    root, _ = toy
    course = Course(root, db_url=f"sqlite:///{tmp_path / 'gb.db'}")
    tpl = course.build_template("01_toy", tmp_path)
    url = f"sqlite:///{tpl / 'gradebook.db'}"
    course.sync_assignment("01_toy", url)
    course.sync_assignment("01_toy", url)  # again: update, not duplicate
    with Gradebook(url, course.course_id) as a, course.gradebook() as b:
        assert export_assignment(a, "01_toy") == export_assignment(b, "01_toy")
    result = {"student": "zoe", "chapter": "01_toy", "timestamp": "2026-11-02T10:00:00+00:00", "flagged": True,
              "notebooks": {"toy": {"grades": {"test_square": {"auto_score": 3.0, "max_score": 3.0,
                                                               "needs_manual_grade": False},
                                               "why": {"auto_score": 0.0, "max_score": 1.0,
                                                       "needs_manual_grade": True}},
                                    "comments": {"square": "note"}, "flagged": True}}}
    course.record(result)
    result["notebooks"]["toy"]["grades"]["test_square"]["auto_score"] = 0.0
    course.record(result)
    rows = course.grade_rows()
    # a written answer has no automatic score: it waits for the instructor (auto_score None, needs grading)
    assert [(r["exercise"], r["auto_score"], r["flagged"]) for r in rows] == [("test_square", 0.0, True),
                                                                            ("why", None, True)]
    assert [r["needs_manual_grade"] for r in rows] == [False, True]
    with course.gradebook() as gb:
        assert len(gb.find_assignment("01_toy").submissions) == 1
        assert gb.find_comment("square", "toy", "01_toy", "zoe").auto_comment == "note"


# -- sandbox --------------------------------------------------------------------------------------------------------
def test_sandbox_view_exposes_package_not_checkout(tmp_path):
    from mem_tutorial.grading import sandbox

    if not sandbox.can_isolate()[0]:
        pytest.skip("isolation needs root on Linux")
    base = tmp_path / "base"
    base.mkdir()
    lease = sandbox.SlotLease(1)
    try:
        policy = sandbox.prepare_box(str(base), "s", "c", lease.slots[0], sandbox.Limits(), hide=[], isolate=True)
        ok, mode = sandbox.probe(policy)
    finally:
        lease.release()
    exposed = [p for p, _ in policy.expose]
    root = str(Path(__file__).resolve().parents[1])
    assert str(Path(root) / "mem_tutorial") in exposed and root not in exposed
    assert (str(Path(policy.base, "box")), True) in [(p, w) for p, w in policy.expose]
    assert ok and mode == "isolated"


def test_kernel_env_is_scrubbed(monkeypatch, tmp_path):
    from mem_tutorial.grading.sandbox import kernel_env

    monkeypatch.setenv("MEM_TUTORIAL_DB", "postgresql://u:secret@h/db")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    env = kernel_env({}, str(tmp_path))
    assert "AWS_SECRET_ACCESS_KEY" not in env and env["HOME"] == str(tmp_path)
    assert env["MEM_TUTORIAL_FAST"] == os.environ.get("MEM_TUTORIAL_FAST", "1")
    assert "MEM_TUTORIAL_DB" not in env and "secret" not in json.dumps(env)


# -- an interrupted run resumes -------------------------------------------------------------------------------------
def test_interrupted_autograde_resumes(toy, tmp_path):
    import signal
    import subprocess
    import time

    from mem_tutorial.grading.course import Course

    root, release = toy
    root = Path(root)
    students = [f"r{i}" for i in range(4)]
    for i, s in enumerate(students):
        d = root / "submitted" / s / "01_toy"
        d.mkdir(parents=True)
        # all but the first take a few seconds (wall, not CPU), so Ctrl-C surely lands while one is being graded
        slow = "time.sleep(2); " if i else ""
        body = f"import time; {slow}return " + ("x * x" if i % 2 == 0 else "-1")
        (d / "toy.ipynb").write_bytes(hc.toy_answer(release, body))
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]),
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    env.pop("MEM_TUTORIAL_DB", None)
    cmd = [sys.executable, "-W", "ignore", "-m", "mem_tutorial.cli", "autograde", "--students", *students,
           "--no-progress", "--root", str(root)]
    def ctrl_c_works():  # a test runner may hand its children an ignored or blocked SIGINT
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=ctrl_c_works)
    first = root / "autograded" / students[0] / "01_toy" / "mem_tutorial_result.json"
    t0 = time.time()
    while not first.exists() and proc.poll() is None and time.time() < t0 + 300:
        time.sleep(0.1)
    status = Path(f"/proc/{proc.pid}/status")
    sig = [ln for ln in status.read_text().splitlines() if ln.startswith(("SigBlk", "SigIgn", "SigCgt"))] \
        if status.exists() else []
    seen = (f"result of r0 seen: {first.exists()}, grader still running: {proc.poll() is None}, "
            f"after {time.time() - t0:.1f} s; signals of the grader: {sig}")
    proc.send_signal(signal.SIGINT)  # Ctrl-C while the next submission is being graded
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "run the same command again to resume" in out, f"{seen}\n{out}"
    done = [s for s in students if (root / "autograded" / s / "01_toy" / "mem_tutorial_result.json").exists()]
    assert 1 <= len(done) < len(students)
    resumed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"{len(students) - len(done)} graded, {len(done)} up to date" in resumed.stdout, resumed.stdout
    with Course(root).gradebook() as gb:
        subs = [sub for sub in gb.find_assignment("01_toy").submissions if sub.student.id in students]
        assert sorted(sub.student.id for sub in subs) == students
        scores = {sub.student.id: sum(g.auto_score or 0 for nb in sub.notebooks for g in nb.grades) for sub in subs}
    assert scores == {"r0": 3.0, "r1": 0.0, "r2": 3.0, "r3": 0.0}


# -- the canary: the instructor's solution is graded first ---------------------------------------------------------
def test_autograde_canary_stops_before_recording_zeros_for_the_class(tmp_path):
    """A broken grading environment (or solution) must not record zeros for every student: the canary grades
    the instructor's solution first and stops the run when it loses points."""
    import nbformat

    from mem_tutorial.grading.autograde import autograde
    from mem_tutorial.grading.course import Course

    root = hc.make_toy_course(tmp_path / "course")
    release = hc.toy_release(root, tmp_path / "scratch")
    for student, body in [("ann", "return x * x"), ("bo", "return -1")]:
        d = root / "submitted" / student / "01_toy"
        d.mkdir(parents=True)
        (d / "toy.ipynb").write_bytes(hc.toy_answer(release, body))
    src = root / "solutions" / "01_toy" / "toy.ipynb"
    good = src.read_bytes()
    nb = nbformat.read(src, as_version=4)
    cell = next(c for c in nb.cells if c.get("id") == "square")
    cell.source = cell.source.replace("return x * x", "return x + x")  # the solution no longer passes its tests
    nbformat.write(nb, src)

    report = autograde(Course(root), progress=False, log=lambda m: None)
    assert report.exit_status == 1 and report.graded == 0, report
    assert len(report.tool_errors) == 1 and "canary" in report.tool_errors[0]
    assert "01_toy scored 0/3" in report.tool_errors[0], report.tool_errors  # the written answer is not counted
    assert not (root / "autograded").exists() or not any((root / "autograded").iterdir())
    with Course(root).gradebook() as gb:
        assert not [sub for a in gb.assignments for sub in a.submissions]

    src.write_bytes(good)  # the solution earns 3/3 again: the class is graded
    report = autograde(Course(root), progress=False, log=lambda m: None)
    assert report.exit_status == 0 and report.graded == 2 and not report.tool_errors, report
    assert {r["student"]: r["score"] for r in report.rows} == {"ann": 3.0, "bo": 0.0}
