"""Isolated execution of student notebooks for nbgrader's autograder.

nbgrader runs each submission's kernel as the grader's own user, in ``autograded/<student>/<chapter>/``, so a
student cell can reach ``../../../gradebook.db`` and the course's source notebooks. Here the grading of one
submission happens in a *scratch course* (see :mod:`mem_tutorial.grading.grader`) and its kernel is started through
:mod:`mem_tutorial.grading._launch`, which confines it:

* **working folder**: a fresh folder holding only the student's files (``box/<student>/<chapter>/``, owned by the
  sandbox user); the scratch gradebook and the notebooks nbgrader writes are out of its reach;
* **user** (grader running as root on Linux): the kernel runs as an unprivileged user id of its own (one per
  worker, never a real account), in a private mount namespace where the instructor's course folders (source,
  submissions, autograded, feedback, gradebook, ``nbgrader_config.py``) are covered by empty read-only mounts.
  It cannot write anything the grader owns, cannot read another student's files, and every process it leaves
  behind is killed by user id when the submission is done;
* **limits**: per-cell timeout (nbgrader's ``Execute.timeout``), address space, CPU seconds, file size, number of
  processes, and the size of a cell's output (a cell that prints gigabytes is cut, so the grader's memory stays
  bounded);
* **environment**: scrubbed (only ``PATH``, locale, ``PYTHONPATH``, the course's ``MEM_TUTORIAL_*`` switches, thread
  counts), so no database URL or token of the grader reaches student code.

Without root (an instructor grading on a laptop) the user and namespace steps are unavailable: the grader then uses
the *basic* sandbox (scratch folder, limits, scrubbed environment) and says so in its report.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from nbformat import NotebookNode
from traitlets import Integer

from nbgrader.preprocessors import Execute

LAUNCHER = Path(__file__).with_name("_launch.py")
RELAY = Path(__file__).with_name("_relay.py")
SANDBOX_UID_BASE = int(os.environ.get("MEM_TUTORIAL_SANDBOX_UID", "2000100000"))
"""First user id used for sandboxed kernels (slot ``i`` uses ``SANDBOX_UID_BASE + i``; see :class:`SlotLease`)."""
ENV_KEEP = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "PYTHONPATH", "VIRTUAL_ENV",
            "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NBGRADER_EXECUTION",
            "JPY_PARENT_PID", "JPY_SESSION_NAME")
ENV_KEEP_PREFIXES = ("MEM_TUTORIAL_",)
ENV_DROP = ("MEM_TUTORIAL_DB", "MEM_TUTORIAL_SANDBOX_UID", "MEM_TUTORIAL_SANDBOX_EXPOSE")
DEAD_KERNEL_NOTE = ("the kernel died in this cell (os._exit, a crash, or the memory or CPU limit); it was "
                    "restarted, so the cells after it run without this cell's state")
TIMED_OUT_CELL_SECONDS = 5
TRUNCATION_NOTE = "\n[mem-tutorial autograder: output truncated after {limit} KiB]\n"


@dataclass
class Limits:
    """Resource limits for one submission's kernel."""

    cell_timeout: int = 60
    """Seconds per cell before nbgrader interrupts it (``Execute.timeout``)."""
    memory_mb: int = 3072
    """Address-space limit of the kernel (RLIMIT_AS); a memory bomb gets a ``MemoryError``."""
    cpu_seconds: int = 900
    """CPU seconds for the whole kernel (RLIMIT_CPU); past it the kernel is killed."""
    file_mb: int = 64
    """Largest file the kernel may write."""
    nproc: int = 256
    """Processes and threads of the sandbox user."""
    nofile: int = 512
    output_kb: int = 256
    """Output kept per cell; the rest is dropped with a note."""
    wall_seconds: int = 900
    """Wall-clock limit for grading one submission (the worker is killed past it)."""


@dataclass
class SandboxPolicy:
    """How one worker confines its kernels; written as the launcher's spec."""

    base: str
    """Private folder of this submission's grading (root-only)."""
    workdir: str
    """The kernel's working folder (only the student's files)."""
    home: str
    limits: Limits = field(default_factory=Limits)
    uid: int | None = None
    gid: int | None = None
    isolate: bool = False
    hide: list[str] = field(default_factory=list)
    mask: list[str] = field(default_factory=list)
    expose: list[tuple[str, bool]] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def mode(self) -> str:
        return "isolated" if self.isolate and self.uid is not None else "basic"

    def spec(self) -> dict:
        lim = self.limits
        return {
            "workdir": self.workdir, "home": self.home, "uid": self.uid, "gid": self.gid,
            "isolate": self.isolate, "hide": self.hide, "mask": self.mask, "expose": self.expose, "env": self.env,
            "limits": {"memory_bytes": lim.memory_mb * 2**20, "cpu_seconds": lim.cpu_seconds,
                       "file_bytes": lim.file_mb * 2**20, "nproc": lim.nproc, "nofile": lim.nofile},
        }

    def write_spec(self) -> str:
        path = os.path.join(self.base, "sandbox.json")
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(self.spec(), fh)
        os.chmod(path, 0o600)
        return path


def can_isolate() -> tuple[bool, str]:
    """Whether kernels can run as a separate user in a private mount namespace (root on Linux)."""
    if not sys.platform.startswith("linux"):
        return False, "isolation needs Linux"
    if os.geteuid() != 0:
        return False, "not running as root: kernels run as your own user (basic sandbox)"
    return True, "kernels run as an unprivileged user in a private mount namespace"


def sandbox_uid(worker: int) -> int:
    """The user id of worker ``worker``'s kernels; refuses ids that belong to an account."""
    uid = SANDBOX_UID_BASE + worker
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return uid
    raise RuntimeError(f"sandbox user id {uid} belongs to an account; set MEM_TUTORIAL_SANDBOX_UID")


class SlotLease:
    """Sandbox user ids reserved for one autograde run: slot ``i`` is user id ``SANDBOX_UID_BASE + i``, held with an
    exclusive ``flock`` on a lock file, so concurrent runs on one machine never share (or kill) each other's
    sandbox users. The locks go with the process, so a crashed run frees its slots."""

    def __init__(self, n: int, lock_dir: str | None = None, max_slots: int = 4096):
        import fcntl
        import tempfile

        lock_dir = lock_dir or ("/run/lock" if os.access("/run/lock", os.W_OK) else tempfile.gettempdir())
        self.slots: list[int] = []
        self._files = []
        for i in range(max_slots):
            if len(self.slots) == n:
                break
            fh = open(os.path.join(lock_dir, f"mem-tutorial-sandbox-{SANDBOX_UID_BASE + i}.lock"), "a")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fh.close()
                continue
            try:
                sandbox_uid(i)
            except RuntimeError:
                fh.close()
                continue
            self.slots.append(i)
            self._files.append(fh)
        if len(self.slots) < n:
            self.release()
            raise RuntimeError(f"could not reserve {n} sandbox user ids")

    def release(self) -> None:
        for fh in self._files:
            fh.close()
        self._files, self.slots = [], []


DATA_ENV = ("MEM_TUTORIAL_BABI_DIR", "MEM_TUTORIAL_WIKIMOVIES_DIR", "MEM_TUTORIAL_CACHE")
"""Data folders of the course a kernel may read (shown read-only in the isolated sandbox)."""


def _instructor_cache() -> str | None:
    path = os.path.realpath(os.path.expanduser("~/.cache/mem_tutorial"))
    return path if os.path.isdir(path) else None


def data_paths() -> list[str]:
    """The instructor's data folders (bAbI, WikiMovies, the course's download cache) that kernels read."""
    out = []
    for var in DATA_ENV:
        value = os.environ.get(var)
        if value and os.path.isdir(value):
            out.append(os.path.realpath(value))
    if not os.environ.get("MEM_TUTORIAL_CACHE") and _instructor_cache():
        out.append(_instructor_cache())
    return sorted(set(out))


def kernel_env(extra: dict[str, str] | None, home: str) -> dict[str, str]:
    """The scrubbed environment of a sandboxed kernel."""
    env = {k: v for k, v in os.environ.items()
           if (k in ENV_KEEP or k.startswith(ENV_KEEP_PREFIXES)) and k not in ENV_DROP}
    if "MEM_TUTORIAL_CACHE" not in env and _instructor_cache():  # data sets the instructor already has
        env["MEM_TUTORIAL_CACHE"] = _instructor_cache()
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.setdefault("MEM_TUTORIAL_FAST", "1")
    env.setdefault("OMP_NUM_THREADS", "1")
    # the interpreter's own folder first, so `python` in student shell-outs is the course's
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]
    tmp = os.path.join(home, "tmp")
    env.update(HOME=home, TMPDIR=tmp, MPLCONFIGDIR=os.path.join(home, ".matplotlib"),
               IPYTHONDIR=os.path.join(home, ".ipython"), JUPYTER_RUNTIME_DIR=os.path.join(home, ".jupyter"),
               XDG_CACHE_HOME=os.path.join(home, ".cache"), MPLBACKEND="agg", PYTHONDONTWRITEBYTECODE="1")
    env.update(extra or {})
    return env


SYSTEM_DIRS = {"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc", "dev", "proc", "sys"}
"""Top-level folders a sandboxed kernel sees as they are (read-only for it by their permissions)."""


def mask_dirs() -> list[str]:
    """Top-level folders hidden from sandboxed kernels: everything but the operating system's."""
    out = []
    for name in sorted(os.listdir("/")):
        path = os.path.join("/", name)
        if name not in SYSTEM_DIRS and os.path.isdir(path) and not os.path.islink(path):
            out.append(path)
    return out


def exposed_paths(box: str) -> list[tuple[str, bool]]:
    """What a sandboxed kernel needs below the masked folders: (path, writable)."""
    import mem_tutorial

    package = os.path.dirname(os.path.realpath(mem_tutorial.__file__))
    want = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix,
                                          os.path.dirname(os.path.realpath(sys.executable)))}
    want.add(package)
    for p in list(sys.path) + os.environ.get("PYTHONPATH", "").split(os.pathsep):
        if not p or not os.path.isdir(p):
            continue
        rp = os.path.realpath(p)
        if os.path.isdir(os.path.join(rp, "mem_tutorial")) and os.path.realpath(os.path.join(rp, "mem_tutorial")) == package:
            continue  # a source checkout: expose the package only, never its solutions/ or .git
        if "site-packages" in rp or "dist-packages" in rp or rp.startswith(tuple(want)):
            want.add(rp)
    want.update(p for p in os.environ.get("MEM_TUTORIAL_SANDBOX_EXPOSE", "").split(os.pathsep) if p)
    want.update(data_paths())
    masked = tuple(d + os.sep for d in mask_dirs())
    keep = sorted(p for p in want if p.startswith(masked) and os.path.exists(p))
    keep = [p for p in keep if not any(p != q and p.startswith(q + os.sep) for q in keep)]
    return [(p, False) for p in keep] + [(os.path.realpath(box), True)]


def prepare_box(base: str, student: str, chapter: str, worker: int, limits: Limits, hide: list[str],
                isolate: bool | None = None, env: dict[str, str] | None = None) -> SandboxPolicy:
    """Create the sandbox folders of one submission below ``base`` and return its policy."""
    if isolate is None:
        isolate = can_isolate()[0]
    os.chmod(base, 0o711)
    box = os.path.join(base, "box")
    home = os.path.join(box, "home")
    workdir = os.path.join(box, student, chapter)
    for d in (box, os.path.join(box, student)):
        os.makedirs(d, exist_ok=True)
        os.chmod(d, 0o711)
    os.makedirs(workdir, exist_ok=True)
    for sub in ("", "tmp", ".matplotlib", ".ipython", ".jupyter", ".cache"):
        os.makedirs(os.path.join(home, sub), exist_ok=True)
    uid = gid = None
    if isolate:
        uid = gid = sandbox_uid(worker)
        for d in (home, workdir):
            for root, dirs, files in os.walk(d):
                os.chown(root, uid, gid)
                for f in files:
                    os.lchown(os.path.join(root, f), uid, gid)
        os.chmod(home, 0o700)
        os.chmod(workdir, 0o700)
    hide = sorted({os.path.realpath(h) for h in hide if os.path.exists(h)})
    return SandboxPolicy(base=base, workdir=workdir, home=home, limits=limits, uid=uid, gid=gid,
                         isolate=isolate, hide=hide, mask=mask_dirs() if isolate else [],
                         expose=exposed_paths(box) if isolate else [], env=kernel_env(env, home))


def populate_workdir(policy: SandboxPolicy, source_dir: str) -> None:
    """Copy the student's files (regular files only, no links) into the kernel's working folder."""
    for root, dirs, files in os.walk(source_dir):
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]
        rel = os.path.relpath(root, source_dir)
        dest_root = os.path.normpath(os.path.join(policy.workdir, rel))
        os.makedirs(dest_root, exist_ok=True)
        if policy.uid is not None:
            os.chown(dest_root, policy.uid, policy.gid)
        for f in files:
            src = os.path.join(root, f)
            if os.path.islink(src) or not os.path.isfile(src):
                continue
            dst = os.path.join(dest_root, f)
            shutil.copyfile(src, dst)
            if policy.uid is not None:
                os.chown(dst, policy.uid, policy.gid)


def kill_sandbox_processes(uid: int | None) -> None:
    """Kill every process left running by the sandbox user ``uid`` (a forked child that becomes ``uid``
    sends SIGKILL to all processes it may signal, i.e. exactly that user's processes)."""
    if uid is None or os.geteuid() != 0:
        return
    for _ in range(3):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            try:
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
                os.kill(-1, signal.SIGKILL)
            except BaseException:
                pass
            os._exit(0)
        os.waitpid(pid, 0)
        time.sleep(0.05)


# --------------------------------------------------------------------------------------------------------------
# nbgrader integration: a kernel manager that starts kernels through the launcher, and an Execute preprocessor
# that runs the notebook in the sandbox's working folder and caps the output of each cell.

_ACTIVE: SandboxPolicy | None = None
_SPEC_PATH: str | None = None
_SESSION = None  # mem_tutorial.grading.session.GradingSession of the submission being graded


def activate(policy: SandboxPolicy | None, session=None) -> None:
    """Make ``policy`` the sandbox of every kernel this process starts (one submission per process), and
    ``session`` (a :class:`mem_tutorial.grading.session.GradingSession`) the grader of its test cells."""
    global _ACTIVE, _SPEC_PATH, _SESSION
    _ACTIVE = policy
    _SPEC_PATH = policy.write_spec() if policy is not None else None
    _SESSION = session


def active_session():
    return _SESSION


class SandboxKernelManager(AsyncKernelManager):
    """Starts the kernel through :mod:`mem_tutorial.grading._launch` with the active sandbox policy."""

    def format_kernel_cmd(self, extra_arguments=None):
        cmd = super().format_kernel_cmd(extra_arguments)
        if _SPEC_PATH is None:
            raise RuntimeError("no sandbox policy is active: refusing to run student code unconfined")
        if _SESSION is not None and _SESSION.zygote is not None:  # a kernel forked with everything imported
            return [sys.executable, "-I", str(RELAY), _SESSION.zygote.socket_path, _SPEC_PATH, "--", *cmd]
        return [sys.executable, "-I", str(LAUNCHER), _SPEC_PATH, "--", *cmd]


class SandboxExecute(Execute):
    """nbgrader's Execute, with the kernel sandboxed and each cell's output capped."""

    output_limit_kb = Integer(256, help="Output kept per cell, in KiB.").tag(config=True)

    def __init__(self, *args, **kwargs):
        kwargs["kernel_manager_class"] = SandboxKernelManager
        super().__init__(*args, **kwargs)
        self._out_bytes: dict[int, int] = {}

    def preprocess(self, nb, resources=None, km=None):
        if _ACTIVE is None:
            raise RuntimeError("no sandbox policy is active: refusing to run student code unconfined")
        resources = resources if resources is not None else {}
        src = resources.get("metadata", {}).get("path") or "."
        populate_workdir(_ACTIVE, src)
        resources.setdefault("metadata", {})["path"] = _ACTIVE.workdir
        self._out_bytes = {}
        self._notebook = resources.get("nbgrader", {}).get("notebook", "notebook")
        self._timed_out: set[int] = set()
        if _SESSION is not None:
            _SESSION.prepare(self._notebook, nb)
        return super().preprocess(nb, resources, km=km)

    max_restarts = Integer(3, help="Kernel restarts after a crash, per notebook.").tag(config=True)

    def preprocess_cell(self, cell, resources, index):
        """Run one cell; when the kernel dies in it, record the death on the cell and restart the kernel so that
        the remaining cells still run (and fail honestly: a test cell that never ran would count as passed)."""
        from jupyter_core.utils import run_sync
        from nbclient.exceptions import DeadKernelError

        if _SESSION is not None and cell.cell_type == "code":
            from mem_tutorial.grading.session import is_test_cell

            if is_test_cell(cell):
                return self._grade_test_cell(cell, resources, index)
        try:
            cell, resources = super().preprocess_cell(cell, resources, index)
            if any(o.get("output_type") == "error" and o.get("ename") in ("CellTimeoutError", "KeyboardInterrupt")
                   for o in cell.get("outputs", [])):
                self._timed_out.add(index)
            return cell, resources
        except DeadKernelError:
            self._restarts = getattr(self, "_restarts", 0) + 1
            cell.setdefault("outputs", []).append(NotebookNode(
                output_type="error", ename="DeadKernelError", evalue=DEAD_KERNEL_NOTE,
                traceback=[f"DeadKernelError: {DEAD_KERNEL_NOTE}"]))
            if self._restarts > self.max_restarts:
                raise
            run_sync(self._restart_dead_kernel)()
            return cell, resources

    def _grade_test_cell(self, cell, resources, index):
        """Run a graded test cell in the trusted runner against an answer process (not in the kernel)."""
        from mem_tutorial.grading.session import is_test_cell

        prefix = []
        for i, other in enumerate(self.nb.cells[:index]):
            if other.cell_type == "code" and other.source.strip() and not is_test_cell(other):
                timeout = (TIMED_OUT_CELL_SECONDS if i in self._timed_out else self.timeout) or 60
                prefix.append({"source": other.source, "timeout": timeout})
        gid = cell.metadata["nbgrader"].get("grade_id", f"cell-{index}")
        outcome = _SESSION.run_test(self._notebook, gid, cell.source, prefix, float(self.timeout or 60))
        cell.outputs = test_outputs(outcome)
        cell.execution_count = index + 1
        return cell, resources

    async def _restart_dead_kernel(self):
        try:
            self.kc.stop_channels()
        except Exception:
            pass
        await self.km.restart_kernel(now=True)
        await self.async_start_new_kernel_client()

    def output(self, outs, msg, display_id, cell_index):
        content = msg.get("content", {})
        size = len(json.dumps(content.get("data", content.get("text", "")), default=str))
        used = self._out_bytes.get(cell_index, 0)
        limit = self.output_limit_kb * 1024
        self._out_bytes[cell_index] = used + size
        if msg.get("msg_type") in ("stream", "display_data", "execute_result", "update_display_data"):
            if used > limit:
                return None
            if used + size > limit:
                outs.append(NotebookNode(output_type="stream", name="stderr",
                                         text=TRUNCATION_NOTE.format(limit=self.output_limit_kb)))
                return None
        return super().output(outs, msg, display_id, cell_index)


def test_outputs(outcome: dict) -> list:
    """The outputs a graded test cell shows: what the checks printed, and the failure (an ``error`` output,
    which nbgrader scores 0). Never the source of hidden tests: only the failing check's message."""
    outs = []
    text = outcome.get("stdout") or ""
    if outcome.get("student_output"):
        text += "[printed by your code]\n" + outcome["student_output"]
    if text:
        outs.append(NotebookNode(output_type="stream", name="stdout", text=text))
    if not outcome.get("passed"):
        f = outcome.get("failure") or {}
        ename = "NoCredit" if outcome.get("no_credit") else ("HiddenTestFailed" if f.get("hidden") else
                                                               "TestFailed")
        message = f.get("message") or "the test failed"
        outs.append(NotebookNode(output_type="error", ename=ename, evalue=message,
                                 traceback=[f"{ename}: {message}"]))
    return outs


def probe(policy: SandboxPolicy, timeout: float = 60) -> tuple[bool, str]:
    """Start the launcher with a tiny Python program; check it runs confined as the policy says."""
    spec = policy.write_spec()
    code = ("import os,sys;print(os.getuid());print(os.getcwd());"
            "sys.stdout.flush()")
    proc = subprocess.run([sys.executable, "-I", str(LAUNCHER), spec, "--", sys.executable, "-c", code],
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        return False, (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
    lines = proc.stdout.split()
    want_uid = policy.uid if policy.uid is not None else os.getuid()
    if len(lines) < 2 or int(lines[0]) != want_uid or os.path.realpath(lines[1]) != os.path.realpath(policy.workdir):
        return False, f"sandbox probe printed {proc.stdout!r}"
    return True, policy.mode


__all__ = ["Limits", "SandboxPolicy", "SandboxExecute", "SandboxKernelManager", "activate", "can_isolate",
           "prepare_box", "populate_workdir", "kill_sandbox_processes", "probe", "SlotLease"]
