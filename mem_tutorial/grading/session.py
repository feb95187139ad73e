"""The grading of one submission: the fork server, the trusted runner, and one answer process per test cell.

:class:`GradingSession` is created by the grader process for one submission (after the sandbox policy of its kernel
is prepared) and used by :class:`mem_tutorial.grading.sandbox.SandboxExecute` while nbgrader runs the notebook:

* the notebook's ordinary cells run in the kernel as always (forked from the session's fork server);
* a graded test cell is not run in the kernel. :meth:`run_test` starts an answer process that runs the student's
  code before that cell, with the library's implementation of the exercise removed, and the trusted runner runs
  the instructor's test cell against it (:mod:`mem_tutorial.grading.verdict`). The outcome becomes the cell's
  output (an ``error`` output when the test failed, which is how nbgrader scores it 0).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from dataclasses import dataclass, field
from pathlib import Path

ANSWER_UID_OFFSET = 4096
"""Answer processes of worker slot ``i`` run as ``SANDBOX_UID_BASE + ANSWER_UID_OFFSET + i`` (never the kernel's)."""
TIMED_OUT_CELL_SECONDS = 5
"""A cell that ran past the timeout in the kernel gets this long in an answer process (its definitions before the
endless part still happen; the grader does not wait out the full timeout once per test)."""


def _nbg(cell) -> dict:
    return (cell.get("metadata") or {}).get("nbgrader") or {}


def release_imports(path: Path) -> list[str]:
    """The top-level import statements of a released notebook's ordinary code cells."""
    from mem_tutorial.grading import verdict

    path = Path(path)
    if not path.is_file():
        return []
    nb = json.loads(path.read_text(encoding="utf-8"))
    out: list[str] = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code" and not _nbg(cell).get("grade") and not _nbg(cell).get("solution"):
            src = cell.get("source", "")
            out += verdict.import_statements("".join(src) if isinstance(src, list) else src)
    return out


def is_test_cell(cell) -> bool:
    meta = _nbg(cell)
    return cell.get("cell_type") == "code" and bool(meta.get("grade")) and not meta.get("solution")


@dataclass
class GradingSession:
    """One submission's fork server, trusted runner and test outcomes."""

    policy: object  # sandbox.SandboxPolicy of the kernel
    release_dir: Path | None = None
    worker: int = 0
    protected_dirs: list[str] = field(default_factory=list)
    cache_dir: str | None = None
    zygote_path: str | None = None
    """The socket of a fork server shared by this worker's submissions (else one is started for this one)."""
    outcomes: dict = field(default_factory=dict)  # notebook -> grade_id -> outcome
    zygote: object = None
    trusted: socket.socket | None = None
    prepared: dict = field(default_factory=dict)  # notebook -> specs per test

    # -- life cycle ---------------------------------------------------------------------------------------------
    def start(self, warm: list[str]) -> None:
        from mem_tutorial.grading.zygote import Zygote

        base = self.policy.base
        if self.zygote_path and os.path.exists(self.zygote_path):
            self.zygote = Zygote.attach(self.zygote_path)
        else:
            self.zygote = Zygote(base, protected_dirs=self.protected_dirs, log=os.path.join(base, "zygote.log"),
                                 warm=warm)
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = self.zygote.fork("trusted", {}, (theirs.fileno(),))
        theirs.close()
        if not pid:
            raise RuntimeError("the grading fork server did not start the trusted runner")
        self.trusted = mine

    def close(self) -> None:
        if self.trusted is not None:
            self.trusted.close()
            self.trusted = None
        if self.zygote is not None:
            self.zygote.close()
            self.zygote = None

    def zygote_log(self) -> str:
        try:
            return Path(self.policy.base, "zygote.log").read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    # -- the notebook -------------------------------------------------------------------------------------------
    def release_imports(self, notebook: str) -> list[str]:
        """Import statements of the instructor's released notebook (never the student's copy)."""
        path = (self.release_dir / f"{notebook}.ipynb") if self.release_dir else None
        return release_imports(path) if path is not None else []

    def _request(self, payload: dict, fds: tuple[int, ...] = ()) -> dict:
        socket.send_fds(self.trusted, [json.dumps(payload).encode("utf-8")], list(fds))
        data = self.trusted.recv(1 << 24)
        if not data:
            raise RuntimeError(f"the trusted test runner stopped: {self.zygote_log()[-500:]}")
        reply = json.loads(data.decode("utf-8"))
        if "error" in reply:
            raise RuntimeError(f"trusted test runner: {reply['error']}\n{reply.get('traceback', '')}")
        return reply

    def prepare(self, notebook: str, nb) -> None:
        """Give the trusted runner this notebook's imports, test cells and answer names."""
        from mem_tutorial.grading import verdict

        if self.zygote is None:
            self.start(self.release_imports(notebook))
        tests = {_nbg(c)["grade_id"]: c.source for c in nb.cells if is_test_cell(c) and _nbg(c).get("grade_id")}
        answer_names: set[str] = set()
        for c in nb.cells:
            if c.cell_type == "code" and _nbg(c).get("solution"):
                answer_names |= verdict.defined_names(c.source)
        import hashlib

        key = hashlib.sha256(json.dumps(tests, sort_keys=True).encode("utf-8")).hexdigest()[:24]
        cache = os.path.join(self.cache_dir, f"specs-{key}.json") if self.cache_dir else None
        reply = self._request({"op": "prepare", "imports": self.release_imports(notebook), "tests": tests,
                               "answer_names": sorted(answer_names), "cache": cache})
        self.prepared[notebook] = reply.get("specs", {})
        self.outcomes.setdefault(notebook, {})

    def answer_box(self, name: str) -> dict:
        """The sandbox spec of one answer process: its own folder and user, no network."""
        from mem_tutorial.grading import sandbox

        pol = self.policy
        root = os.path.join(pol.base, "answers", name)
        work, home = os.path.join(root, "work"), os.path.join(root, "home")
        for d in (work, home, os.path.join(home, "tmp"), os.path.join(home, ".cache")):
            os.makedirs(d, exist_ok=True)
        uid = gid = None
        if pol.uid is not None:
            uid = gid = sandbox.SANDBOX_UID_BASE + ANSWER_UID_OFFSET + self.worker
            for d in (root, work, home, os.path.join(home, "tmp"), os.path.join(home, ".cache")):
                os.chown(d, uid, gid)
                os.chmod(d, 0o700)
            os.chown(os.path.join(pol.base, "answers"), 0, 0)
            os.chmod(os.path.join(pol.base, "answers"), 0o711)
        env = dict(pol.env)
        env.update(HOME=home, TMPDIR=os.path.join(home, "tmp"), XDG_CACHE_HOME=os.path.join(home, ".cache"),
                   MPLCONFIGDIR=os.path.join(home, "tmp"))
        spec = pol.spec()
        expose = [e for e in spec["expose"] if os.path.realpath(e[0]) != os.path.realpath(os.path.dirname(pol.home))]
        spec.update(workdir=work, home=home, uid=uid, gid=gid, env=env, newnet=True,
                    expose=[*expose, (os.path.realpath(root), True)],
                    hide=sorted(set(spec["hide"]) | {os.path.dirname(pol.home)}))
        return spec

    def answer_uid(self) -> int | None:
        from mem_tutorial.grading import sandbox

        return None if self.policy.uid is None else sandbox.SANDBOX_UID_BASE + ANSWER_UID_OFFSET + self.worker

    def run_test(self, notebook: str, grade_id: str, source: str, prefix: list[dict], timeout: float) -> dict:
        """Grade one test cell (see the module docstring); returns the trusted runner's outcome."""
        specs = self.prepared.get(notebook, {}).get(grade_id, [])
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        name = f"{len(self.outcomes.get(notebook, {})):03d}-{grade_id}"[:80]
        try:
            pid = self.zygote.fork("answer", {"box": self.answer_box(name), "specs": specs}, (theirs.fileno(),))
        finally:
            theirs.close()
        try:
            outcome = self._request({"op": "test", "grade_id": grade_id, "source": source, "prefix": prefix,
                                     "timeout": timeout, "pid": pid}, (mine.fileno(),))
        finally:
            mine.close()
            shutil.rmtree(os.path.join(self.policy.base, "answers", name), ignore_errors=True)
        outcome["specs"] = [f"{s['module']}.{s['qualname']}" for s in specs]
        self.outcomes.setdefault(notebook, {})[grade_id] = outcome
        return outcome
