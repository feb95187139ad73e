"""Grading an instructor can trust: test outcomes that student code cannot rig, integrity by module.

The graded test cells run in a trusted process against an *answer process* that runs the student's code with the
library's implementation of the exercise removed (mem_tutorial.grading.{verdict,answers,guard,zygote,session}).
These tests drive that machinery directly (no nbgrader, no class), with the chapters' own test cells:

* the instructor's answers pass; wrong answers fail with the check's message;
* rigging the checks from student code (patched comparison helpers, exception classes, IPython hooks that blank
  or swallow cells) changes nothing;
* reaching the library's implementation by any route (public name, private helper, alias, copy of the function or
  of its code object, source read back from disk, a reloaded module, a subprocess, with the profiler switched off)
  earns no credit with a message naming what was called, while honest answers that build on other library
  functions keep their points;
* gradients flow through the proxies (``.backward()``, ``autograd.grad``, ``gradcheck``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest
import torch

from mem_tutorial.grading import sandbox, verdict, wire
from mem_tutorial.grading.session import GradingSession, is_test_cell

ROOT = Path(__file__).resolve().parents[1]


def _solution(chapter: str):
    return nbformat.read(next((ROOT / "solutions" / chapter).glob("*.ipynb")), as_version=4)


def _gid(cell):
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


# -- the codec ------------------------------------------------------------------------------------------------
def test_wire_round_trip_of_the_values_tests_exchange():
    from collections import namedtuple

    State = namedtuple("State", "memory usage")
    value = {"a": [1, 2.5, float("inf"), None, True, "s", (1, 2)], 3: torch.randn(2, 3, dtype=torch.float64),
             "state": State(torch.arange(3), {"x": b"yy"}), "empty": torch.empty(0, 4), "big": 2**80,
             "dtype": torch.float32, "slice": slice(1, None), "mask": torch.tensor([True, False])}
    back = wire.decode(wire.encode(value))
    assert torch.equal(back[3], value[3]) and back[3].dtype == torch.float64
    assert back["state"].usage == {"x": b"yy"} and type(back["state"]).__name__ == "State"
    assert back["big"] == 2**80 and back["dtype"] is torch.float32 and back["empty"].shape == (0, 4)
    assert back["a"][2] == float("inf") and back["a"][6] == (1, 2)


def test_wire_refuses_what_it_cannot_check():
    with pytest.raises(wire.WireError):
        wire.encode(object())
    with pytest.raises(wire.WireError):
        wire.encode(lambda: 0)
    good = wire.encode([torch.ones(3)])
    for bad in (b"", good[:10], good[:-4], b"\x05\x00\x00\x00{}}}}", good.replace(b'"tensor"', b'"pickle"')):
        with pytest.raises(wire.WireError):
            wire.decode(bad)


# -- the guard, in a process of its own --------------------------------------------------------------------------
GUARD_PROBE = r'''
import json, os, sys, importlib, inspect, marshal, types
import torch
import mem_tutorial.memory as mem
from mem_tutorial.memory import addressing
from mem_tutorial.grading import guard
import numpy  # noqa
guard.poison([{"module": "mem_tutorial.memory.addressing", "qualname": "shift"},
              {"module": "mem_tutorial.memory.addressing", "qualname": "_shift"}])
guard.arm(guard.protected_inodes(), guard.native_prefixes())
results = {}
def attempt(name, fn):
    try:
        fn()
        results[name] = "allowed"
    except guard.NoCredit as exc:
        results[name] = "no credit"
    except Exception as exc:
        results[name] = type(exc).__name__
w, s = torch.softmax(torch.randn(2, 5), -1), torch.softmax(torch.randn(2, 3), -1)
attempt("public", lambda: mem.shift(w, s))
attempt("private helper", lambda: addressing._shift(w[:, None], s[:, None]))
attempt("code object copy", lambda: types.FunctionType(mem.shift.__code__, vars(addressing))(w, s))
attempt("code replace", lambda: mem.shift.__code__.replace(co_name="x"))
attempt("read source", lambda: inspect.getsource(addressing))
attempt("open source", lambda: open(addressing.__file__).read())
attempt("open via symlink", lambda: (os.symlink(addressing.__file__, "link.py"), open("link.py").read()))
attempt("reload", lambda: importlib.reload(addressing))
attempt("marshal", lambda: marshal.loads(marshal.dumps(compile("1", "x", "eval"))))
attempt("subprocess", lambda: __import__("subprocess").run(["true"]))
attempt("ctypes", lambda: __import__("ctypes").string_at(id(1), 8))
attempt("socket", lambda: __import__("socket").socket())
attempt("fork", lambda: os.fork())
attempt("other mechanisms", lambda: mem.sharpen(w, torch.full((2,), 2.0)))
attempt("stdlib import", lambda: __import__("fractions"))
attempt("own files", lambda: (open("mine.txt", "w").write("x"), open("mine.txt").read()))
attempt("torch", lambda: torch.linalg.svd(torch.randn(4, 4)))
print(json.dumps(results))
'''


def test_guard_removes_the_mechanism_and_refuses_ways_back(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", GUARD_PROBE], capture_output=True, text=True, cwd=tmp_path,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    for route in ("public", "private helper", "code object copy"):
        assert got[route] == "no credit", (route, got)
    for route in ("code replace", "read source", "open source", "open via symlink", "reload", "marshal",
                  "subprocess", "ctypes", "socket", "fork"):
        assert got[route] not in ("allowed", "no credit"), (route, got)
    for route in ("other mechanisms", "stdlib import", "own files", "torch"):
        assert got[route] == "allowed", (route, got)


# -- which library code is the exercise's mechanism -------------------------------------------------------------
def test_implementation_specs_follow_private_helpers_but_spare_building_blocks():
    import mem_tutorial.memory as mem

    def names(refs):
        return {s["qualname"] for s in verdict.implementation_specs(refs)}

    assert names([mem.shift]) >= {"shift", "_shift", "_shift_index"}
    assert "_weights_view" not in names([mem.shift])  # shape checks other public functions use
    addressing = names([mem.ntm_addressing])
    assert "ntm_addressing" in addressing and not addressing & {"_shift", "_sharpen", "_interpolate",
                                                                "content_weighting", "cosine_similarity"}
    assert names([mem.temporal_link_update]) >= {"temporal_link_update", "_TemporalLink"}
    assert names([mem.content_weighting]) == {"content_weighting"}  # cosine_similarity is a building block


# -- the whole path: fork server, answer process, trusted runner ------------------------------------------------
@pytest.fixture(scope="module")
def session(tmp_path_factory):
    base = tmp_path_factory.mktemp("trust")
    isolate = sandbox.can_isolate()[0]
    # A slot of our own, as autograde leases them: other test workers grading at the same time kill their own
    # sandbox users' processes when they finish, and must never hit this session's answer processes.
    lease = sandbox.SlotLease(1) if isolate else None
    worker = lease.slots[0] if lease else 0
    policy = sandbox.prepare_box(str(base), "student", "chapter", worker, sandbox.Limits(cell_timeout=30), hide=[],
                                 isolate=isolate, env={"MEM_TUTORIAL_FAST": "1"})
    s = GradingSession(policy, release_dir=None, worker=worker)
    try:
        yield s
    finally:
        s.close()
        sandbox.kill_sandbox_processes(s.answer_uid())
        if lease:
            lease.release()


def grade(session, chapter: str, test_gid: str, answers: dict[str, str] | None = None, extra: str | None = None,
          timeout: float = 30) -> dict:
    """Grade one test cell of a chapter: the notebook's cells before it, with ``answers`` (grade_id -> source)
    replacing the instructor's, and ``extra`` code inserted after the answers."""
    nb = _solution(chapter)
    notebook = next((ROOT / "solutions" / chapter).glob("*.ipynb")).stem
    name = f"{notebook}-{abs(hash((test_gid, json.dumps(answers, sort_keys=True), extra))) % 10**8}"
    session.release_dir = ROOT / "notebooks" / chapter
    if notebook not in session.prepared:
        session.prepare(notebook, nb)
    session.prepared.setdefault(name, session.prepared[notebook])
    prefix, test = [], None
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if is_test_cell(cell):
            if _gid(cell) == test_gid:
                test = cell
                break
            continue
        src = (answers or {}).get(_gid(cell), cell.source)
        demo = any(k in src for k in ("plt.show()", "explorer(", "train(", "inspect.getsource"))
        if prefix and not cell.get("metadata", {}).get("nbgrader") and demo:
            continue  # demos after the setup cell: not needed to grade, slow
        prefix.append({"source": src, "timeout": timeout})
    if extra:
        prefix.append({"source": extra, "timeout": timeout})
    return session.run_test(name, test_gid, test.source, prefix, timeout)


CH1 = "01_memory_as_attention"
WRONG_READ = "def read(memory, weights):\n    return memory.mean(1)\n"


def test_solution_passes_and_a_wrong_answer_fails_with_its_message(session):
    ok = grade(session, CH1, "test_read")
    assert ok["passed"], ok
    assert "visible checks passed" in ok["stdout"]
    bad = grade(session, CH1, "test_read", {"read": WRONG_READ})
    assert not bad["passed"] and bad["failure"]["message"], bad
    stub = grade(session, CH1, "test_read", {"read": "def read(memory, weights):\n    raise NotImplementedError()\n"})
    assert not stub["passed"] and "NotImplementedError" in stub["failure"]["message"]


RIGGING = {
    "patched checks": """
import torch, builtins
import mem_tutorial.grading.checks as C
torch.allclose = lambda *a, **k: True
torch.equal = lambda *a, **k: True
C.assert_close = lambda *a, **k: None
C.assert_own_work = lambda f, refs, *a, **k: f(*a, **k)
builtins.AssertionError = type("AssertionError", (Exception,), {})
AssertionError = Exception
""",
    "ipython hooks": """
ip = get_ipython()
ip.input_transformers_cleanup.append(lambda lines: ["pass\\n"])
ip.events.register("pre_run_cell", lambda *a: None)
import sys
sys.excepthook = lambda *a: None
""",
    "swallows errors": """
import sys, builtins
_real = builtins.__build_class__
sys.settrace(None)
def _quiet(*a, **k):
    return None
sys.displayhook = _quiet
""",
}


@pytest.mark.parametrize("how", sorted(RIGGING))
def test_student_code_cannot_rig_the_outcome(session, how):
    out = grade(session, CH1, "test_read", {"read": WRONG_READ}, extra=RIGGING[how])
    assert not out["passed"], (how, out)


NO_CREDIT = {
    "public name": "def read(memory, weights):\n    return mem.read(memory, weights)\n",
    "another import route": ("def read(memory, weights):\n"
                             "    from mem_tutorial.memory.access import read as r\n    return r(memory, weights)\n"),
    "alias made earlier": "_r = mem.read\ndef read(memory, weights):\n    return _r(memory, weights)\n",
    "code object copy": ("import types\n_f = types.FunctionType(mem.read.__code__, mem.read.__globals__)\n"
                         "def read(memory, weights):\n    return _f(memory, weights)\n"),
    "profiler switched off": ("import sys\ndef read(memory, weights):\n    sys.setprofile(None)\n"
                              "    sys.settrace(None)\n    return mem.read(memory, weights)\n"),
    "source read back": ("import inspect, textwrap\n_ns = {}\n"
                         "exec(textwrap.dedent(inspect.getsource(mem.read)), vars(mem), _ns)\nread = _ns['read']\n"),
}


@pytest.mark.parametrize("route", sorted(NO_CREDIT))
def test_reaching_the_library_earns_no_credit(session, route):
    out = grade(session, CH1, "test_read", {"read": NO_CREDIT[route]})
    assert not out["passed"], (route, out)
    if route != "source read back":  # that one never gets the code: it fails as a plain wrong answer
        assert out["no_credit"] and "mem_tutorial.memory.access.read" in out["failure"]["message"], out


def test_private_helper_behind_a_public_function_earns_no_credit(session):
    answer = ("from mem_tutorial.memory import addressing as _A\n"
              "def shift(weights, shift_dist):\n"
              "    return _A._shift(weights.unsqueeze(1), shift_dist.unsqueeze(1)).squeeze(1)\n")
    out = grade(session, "02_ntm", "test_shift", {"shift": answer})
    assert not out["passed"] and out["no_credit"] and "_shift" in out["failure"]["message"], out


def test_honest_answers_that_build_on_the_library_keep_their_points(session):
    # content_weighting is asked to use the library's cosine similarity; address builds on Chapter 1 and 2's
    # mechanisms; both must pass although those mechanisms share private helpers with the removed ones
    assert grade(session, CH1, "test_content_weighting")["passed"]
    out = grade(session, "02_ntm", "test_address")
    assert out["passed"], out


def test_gradients_flow_through_the_proxy(session):
    out = grade(session, "06_memory_at_scale", "test_topk_read")  # autograd.grad, gradcheck, zero-grad rows
    assert out["passed"], out
    detached = ("EPS = 1e-8\n" + _answer_of("06_memory_at_scale", "topk_read").replace(
        "    key_norm = torch.sqrt", "    memory = memory.detach()\n    key_norm = torch.sqrt"))
    out = grade(session, "06_memory_at_scale", "test_topk_read", {"topk_read": detached})
    assert not out["passed"] and "memory" in out["failure"]["message"], out


def test_in_place_changes_to_arguments_are_seen(session):
    in_place = ("def write(memory, weights, erase, add):\n    w = weights.unsqueeze(-1)\n"
                "    memory.mul_(1 - w * erase.unsqueeze(1)).add_(w * add.unsqueeze(1))\n    return memory\n")
    out = grade(session, CH1, "test_write", {"write": in_place})
    assert not out["passed"] and "modify" in out["failure"]["message"], out


def test_an_answer_that_never_returns_is_stopped(session):
    out = grade(session, CH1, "test_read", {"read": "def read(memory, weights):\n    while True:\n        pass\n"},
                timeout=5)
    assert not out["passed"] and "timed out" in out["failure"]["message"], out


def _answer_of(chapter: str, gid: str) -> str:
    import re

    cell = next(c for c in _solution(chapter).cells if _gid(c) == gid)
    return re.sub(r"[ \t]*### (BEGIN|END) SOLUTION[^\n]*\n?", "", cell.source)


def _page_text(html: str) -> str:
    import html as html_lib
    import re

    text = re.sub(r"<style.*?</style>|<script.*?</script>", " ", html, flags=re.S)
    return html_lib.unescape(re.sub(r"<[^>]+>", "", text))


@pytest.mark.parametrize("chapter", sorted(p.name for p in (ROOT / "solutions").iterdir() if p.is_dir()))
def test_feedback_page_shows_no_hidden_test_line(chapter):
    """Every chapter's notebook, rendered as a feedback page (nbgrader's HTML exporter with the feedback
    preprocessor), contains no line of any hidden-test block that the visible checks do not also contain."""
    from nbconvert import HTMLExporter

    from mem_tutorial.grading.feedback import HIDDEN_PLACEHOLDER, RedactHiddenTests

    nb = _solution(chapter)
    hidden_lines, visible = set(), set()
    for cell in nb.cells:
        if "BEGIN HIDDEN TESTS" not in cell.source:
            visible |= {ln.strip() for ln in cell.source.splitlines()}
            continue
        head, rest = cell.source.split("### BEGIN HIDDEN TESTS", 1)
        visible |= {ln.strip() for ln in head.splitlines()}
        hidden_lines |= {ln.strip() for ln in rest.split("### END HIDDEN TESTS", 1)[0].splitlines()}
    hidden_lines = {ln for ln in hidden_lines - visible if len(ln) > 3}
    assert hidden_lines, chapter
    exporter = HTMLExporter()
    exporter.register_preprocessor(RedactHiddenTests)  # as nbgrader's GenerateFeedback registers it
    body, _ = exporter.from_notebook_node(nb)
    text = _page_text(body)
    assert HIDDEN_PLACEHOLDER in text
    page_lines = {ln.strip() for ln in text.splitlines()}
    leaked = sorted(ln for ln in hidden_lines if ln in page_lines)
    assert not leaked, (chapter, leaked[:5])


# -- what a killed run leaves behind, and what kernels share ---------------------------------------------------
def test_a_later_run_removes_what_a_killed_run_left(tmp_path):
    import signal
    import time

    from mem_tutorial.grading.autograde import OWNER_FILE, cleanup_stale, mark_owner

    live = tmp_path / "mt-autograde-live"
    live.mkdir()
    mark_owner(live)  # this process: still running
    dead = tmp_path / "mt-grade-dead"
    dead.mkdir()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", str(dead)])
    deadline = time.time() + 10
    while str(dead) not in Path(f"/proc/{child.pid}/cmdline").read_bytes().decode(errors="replace"):
        assert time.time() < deadline, "the leftover process did not start"
        time.sleep(0.05)  # until it has exec'd: before that its command line is this test's
    (dead / OWNER_FILE).write_text("999999 1")  # a process that is gone
    (dead / "box").mkdir()
    removed = cleanup_stale(str(tmp_path))
    assert removed == [str(dead)] and live.is_dir() and not dead.exists()
    deadline = time.time() + 10
    while child.poll() is None and time.time() < deadline:  # its leftover process (names the folder) is killed
        time.sleep(0.1)
    assert child.poll() is not None
    assert child.returncode == -signal.SIGKILL


@pytest.mark.skipif(not sandbox.can_isolate()[0], reason="needs root on Linux (the isolated sandbox)")
def test_kernels_get_a_private_dev_shm_and_ipc(tmp_path):
    marker = Path("/dev/shm") / f"mt-host-{os.getpid()}"
    marker.write_text("visible to everyone on the host")
    lease = sandbox.SlotLease(1)
    try:
        policy = sandbox.prepare_box(str(tmp_path), "s", "c", lease.slots[0], sandbox.Limits(), hide=[], isolate=True)
        spec = policy.write_spec()
        code = ("import os, sys; open('/dev/shm/mine', 'w').write('x'); print(sorted(os.listdir('/dev/shm')))")
        out = subprocess.run([sys.executable, "-I", str(sandbox.LAUNCHER), spec, "--", sys.executable, "-c", code],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "['mine']", out.stdout
        assert not (Path("/dev/shm") / "mine").exists()
    finally:
        marker.unlink()
        lease.release()
