"""A fork server for grading one submission: kernels, answer processes and the trusted test runner.

Starting Python with PyTorch, IPython and the library costs about 5 s of CPU. The grader starts this process once
per submission (:class:`Zygote`); it imports everything, never runs student code, and forks:

* the notebook **kernel** (asked for by :mod:`mem_tutorial.grading._relay`, the command jupyter_client starts):
  the child enters the kernel's sandbox (:mod:`mem_tutorial.grading._launch`: limits, private mount and IPC
  namespaces, its own user) and becomes an ipykernel; when the relay goes away the kernel is killed;
* one **answer process** per graded test cell (:mod:`mem_tutorial.grading.answers`): its own sandbox (another user,
  no network, its own folder), the library's implementation of the exercise removed and the guard armed
  (:mod:`mem_tutorial.grading.guard`) before any student code runs;
* the **trusted runner** (:mod:`mem_tutorial.grading.verdict`), which runs the instructor's test cells and never
  runs student code.

Requests come over a SEQPACKET socket (JSON, with file descriptors attached); the zygote answers each with the new
process's pid. It exits when the grader closes that socket, killing whatever it forked.
"""

from __future__ import annotations

import array
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
CLONE_NEWNET = 0x40000000
CLONE_NEWIPC = 0x08000000


# -- the child side ------------------------------------------------------------------------------------------------
def _prctl(option: int, value: int) -> None:
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(option, value, 0, 0, 0)


_ERR_FD = 1023  # the fork server's log, kept by a child until its sandbox is set up (then closed)


def _setup_done() -> None:
    try:
        os.close(_ERR_FD)
    except OSError:
        pass


def enter_box(box: dict, keep_fds: tuple[int, ...]) -> None:
    """In a freshly forked child: close every other descriptor, enter the sandbox ``box`` (a spec of
    :class:`mem_tutorial.grading.sandbox.SandboxPolicy` plus ``newnet``), drop privileges, set the environment."""
    from mem_tutorial.grading import _launch

    os.setsid()
    keep = set(keep_fds) | {_ERR_FD}
    for fd in range(3, 4096):
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass
    devnull = os.open(os.devnull, os.O_RDWR)
    for std in (0, 1, 2):
        os.dup2(devnull, std)
    if devnull > 2:
        os.close(devnull)
    uid, gid = box.get("uid"), box.get("gid")
    if box.get("isolate"):
        _launch.isolate(box)
        if box.get("newnet"):
            _launch.unshare(CLONE_NEWNET)
    _launch.set_limits(box.get("limits", {}))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a file past the size limit raises OSError, not a silent kill
    if uid is not None:
        _launch.drop_privileges(uid, gid)
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    _prctl(PR_SET_DUMPABLE, 0)
    os.umask(0o077)
    os.chdir(box["workdir"])
    os.environ.clear()
    os.environ.update(box.get("env", {}))


def _answer_child(req: dict, fd: int) -> None:
    from mem_tutorial.grading import answers, guard

    enter_box(req["box"], (fd,))
    sys.argv = ["answer"]
    guard.poison(req.get("specs", []))
    guard.arm(_PROTECTED, _NATIVE_OK)
    _setup_done()
    server = answers.AnswerServer(fd, _SHELL)
    sys.stdout = sys.stderr = server.out
    server.serve()


def _trusted_child(req: dict, fd: int) -> None:
    from mem_tutorial.grading import verdict

    os.setsid()
    for other in range(3, 1024):
        if other != fd:
            try:
                os.close(other)
            except OSError:
                pass
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    _prctl(PR_SET_DUMPABLE, 0)
    verdict.TrustedRunner(fd).serve()


def _kernel_child(req: dict, fd: int) -> None:
    from mem_tutorial.grading import _launch

    box = req["box"]
    argv = list(req["argv"])
    argv = _launch.copy_connection_file(argv, box["home"], box.get("uid"), box.get("gid"))
    enter_box(box, ())
    if box.get("shell_cwd"):
        os.chdir(box["shell_cwd"])
    sys.argv = ["ipykernel_launcher", *argv]
    from IPython.core.interactiveshell import InteractiveShell
    from ipykernel.kernelapp import IPKernelApp

    InteractiveShell.clear_instance()  # the answer processes' shell: the kernel makes its own
    _setup_done()
    IPKernelApp.launch_instance(argv=argv)


# -- the server ----------------------------------------------------------------------------------------------------
_PROTECTED: frozenset = frozenset()
_NATIVE_OK: tuple = ()
_SHELL = None


def boot(protected_dirs: list[str], warm: list[str] | None = None) -> None:
    """Import what kernels and answer processes need (once, before any fork). ``warm``: import statements of the
    notebooks to be graded (the instructor's released notebooks: trusted), run here so that no child pays for them."""
    global _PROTECTED, _NATIVE_OK, _SHELL
    import gc
    import importlib
    import pkgutil

    os.environ.setdefault("MPLBACKEND", "agg")
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1") or 1))
    import matplotlib

    matplotlib.use("agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(1, 1))
    fig.text(0.5, 0.5, "warm-up")
    fig.canvas.draw()  # builds the font cache now, not (with a subprocess) in a sandboxed child
    plt.close(fig)
    import mem_tutorial
    from mem_tutorial.grading import answers, checks, guard, verdict, wire  # noqa: F401

    for info in pkgutil.walk_packages(mem_tutorial.__path__, "mem_tutorial."):
        if info.name.startswith("mem_tutorial.grading") and info.name.rsplit(".", 1)[-1] not in (
                "checks", "selfcheck"):
            continue
        try:
            importlib.import_module(info.name)
        except Exception:
            pass
    for extra in ("tqdm.auto", "ipywidgets", "ipykernel.kernelapp", "IPython.core.interactiveshell"):
        try:
            importlib.import_module(extra)
        except Exception:
            pass
    for stmt in warm or []:
        try:
            exec(compile(stmt, "<warm-up>", "exec"), {})  # noqa: S102 (import statements of the released notebook)
        except Exception:
            pass
    mem_tutorial.seed_everything(0)  # its first call imports much of torch's lazily loaded machinery
    mem_tutorial.get_device(verbose=False)
    _SHELL = answers.make_shell()
    _SHELL.run_cell("pass", store_history=False, silent=True)
    _PROTECTED = frozenset(guard.protected_inodes([str(guard.library_dir()), *protected_dirs]))
    _NATIVE_OK = guard.native_prefixes()
    gc.collect()
    gc.freeze()


def _recv(sock: socket.socket) -> tuple[dict | None, list[int]]:
    try:
        msg, fds, _flags, _addr = socket.recv_fds(sock, 1 << 20, 4)
    except (ConnectionResetError, OSError):
        return None, []
    if not msg:
        return None, fds
    return json.loads(msg.decode("utf-8")), fds


def _send(sock: socket.socket, obj: dict) -> None:
    try:
        sock.sendall(json.dumps(obj).encode("utf-8"))
    except OSError:
        pass


def serve(control: socket.socket, listener: socket.socket | None) -> None:
    """Fork on request until ``control`` closes; then kill every child and return."""
    sel = selectors.DefaultSelector()
    sel.register(control, selectors.EVENT_READ, "control")
    if listener is not None:
        sel.register(listener, selectors.EVENT_READ, "listener")
    children: dict[int, str] = {}
    relays: dict[int, socket.socket] = {}  # kernel pid -> relay connection
    running = True
    while running:
        for key, _ in sel.select(timeout=0.2):
            what = key.data
            if what == "control":
                req, fds = _recv(control)
                if req is None:
                    running = False
                    break
                pid = _fork(req, fds, control)
                if pid:
                    children[pid] = req.get("op", "?")
                _send(control, {"pid": pid})
            elif what == "listener":
                try:
                    conn, _ = listener.accept()
                except OSError:
                    continue
                req, fds = _recv(conn)
                if req is not None and req.get("op") == "session":  # a grader of this run (shared fork server)
                    for fd in fds:
                        os.close(fd)
                    _send(conn, {"ok": True})
                    sel.register(conn, selectors.EVENT_READ, "session")
                    continue
                for fd in fds:
                    os.close(fd)
                if req is None or req.get("op") != "kernel":
                    conn.close()
                    continue
                pid = _fork(req, [], control, listener, conn)
                children[pid] = "kernel"
                relays[pid] = conn
                _send(conn, {"pid": pid})
                sel.register(conn, selectors.EVENT_READ, ("relay", pid))
            elif what == "session":
                req, fds = _recv(key.fileobj)
                if req is None:  # that grader is done
                    sel.unregister(key.fileobj)
                    key.fileobj.close()
                    continue
                pid = _fork(req, fds, control, listener, key.fileobj)
                if pid:
                    children[pid] = req.get("op", "?")
                _send(key.fileobj, {"pid": pid})
            elif isinstance(what, tuple) and what[0] == "relay":
                pid = what[1]
                try:
                    data = key.fileobj.recv(1024)
                except OSError:
                    data = b""
                if not data:  # the relay died or was killed: so does its kernel
                    _kill(pid)
                    sel.unregister(key.fileobj)
                    key.fileobj.close()
                    relays.pop(pid, None)
        while True:  # reap, and tell a relay when its kernel ended
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            children.pop(pid, None)
            conn = relays.pop(pid, None)
            if conn is not None:
                _send(conn, {"exit": os.waitstatus_to_exitcode(status)})
                try:
                    sel.unregister(conn)
                except (KeyError, ValueError):
                    pass
                conn.close()
    for pid in list(children):
        _kill(pid)
    deadline = time.time() + 5
    while children and time.time() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid:
            children.pop(pid, None)
        else:
            time.sleep(0.05)


def _kill(pid: int) -> None:
    for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        try:
            target()
        except OSError:
            pass


def _fork(req: dict, fds: list[int], *close_in_child) -> int:
    op = req.get("op")
    if op not in ("answer", "trusted", "kernel"):
        for fd in fds:
            os.close(fd)
        return 0
    pid = os.fork()
    if pid:
        for fd in fds:
            os.close(fd)
        return pid
    code = 0
    try:
        os.dup2(2, _ERR_FD)
        for s in close_in_child:
            if s is not None and op != "kernel":
                s.close()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        if op == "answer":
            _answer_child(req, fds[0])
        elif op == "trusted":
            _trusted_child(req, fds[0])
        else:
            for s in close_in_child:
                if s is not None:
                    s.close()
            _kernel_child(req, fds[0] if fds else -1)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        try:
            os.write(_ERR_FD, f"[{op} {os.getpid()}] {traceback.format_exc()}".encode())
        except BaseException:
            pass
        code = 97
    finally:
        os._exit(code)


def main(argv: list[str]) -> None:
    control = socket.socket(fileno=int(argv[0]))
    listener = socket.socket(fileno=int(argv[1])) if len(argv) > 1 and argv[1] != "-" else None
    protected = json.loads(argv[2]) if len(argv) > 2 else []
    warm = json.loads(argv[3]) if len(argv) > 3 else []
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    boot(protected, warm)
    serve(control, listener)


# -- the grader's side -----------------------------------------------------------------------------------------
_BOOT = """\
import sys
sys.path.insert(0, {parent!r})
sys.modules.setdefault("rfc3987_syntax", None)
from mem_tutorial.grading.zygote import main
main(sys.argv[1:])
"""


class Zygote:
    """The grader's handle on a fork server (see the module docstring)."""

    def __init__(self, base: str, protected_dirs: list[str] | None = None, env: dict | None = None,
                 log: str | None = None, warm: list[str] | None = None):
        from pathlib import Path

        parent = str(Path(__file__).resolve().parents[2])
        self.control, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.socket_path = os.path.join(base, "zygote.sock")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.listener.bind(self.socket_path)
        os.chmod(self.socket_path, 0o600)
        self.listener.listen(8)
        self.log = open(log or os.devnull, "ab")
        run_env = {k: v for k, v in os.environ.items() if k not in ("MEM_TUTORIAL_DB",)}
        run_env.update(env or {})
        run_env.setdefault("OMP_NUM_THREADS", "1")
        run_env["MPLBACKEND"] = "agg"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _BOOT.format(parent=parent), str(child.fileno()), str(self.listener.fileno()),
             json.dumps(list(protected_dirs or [])), json.dumps(list(warm or []))],
            pass_fds=(child.fileno(), self.listener.fileno()), stdout=self.log, stderr=self.log, env=run_env)
        child.close()
        self.listener.close()

    @classmethod
    def attach(cls, socket_path: str) -> "Zygote":
        """A handle on a fork server another process started (one per worker of an autograde run): forks go
        through a connection to its socket; :meth:`close` only closes that connection."""
        self = cls.__new__(cls)
        self.socket_path, self.proc, self.log = socket_path, None, None
        self.control = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.control.connect(socket_path)
        self.control.sendall(json.dumps({"op": "session"}).encode("utf-8"))
        if not self.control.recv(1024):
            raise RuntimeError(f"the grading fork server at {socket_path} refused the connection")
        return self

    def fork(self, op: str, payload: dict, fds: tuple[int, ...] = ()) -> int:
        """Ask for a child (``answer`` or ``trusted``) that gets ``fds``; returns its pid (0 if refused)."""
        socket.send_fds(self.control, [json.dumps(dict(payload, op=op)).encode("utf-8")], list(fds))
        reply = self.control.recv(1 << 16)
        if not reply:
            raise RuntimeError("the grading fork server stopped (see its log)")
        return int(json.loads(reply.decode("utf-8")).get("pid") or 0)

    def close(self) -> None:
        try:
            self.control.close()
        except OSError:
            pass
        if self.proc is None:  # attached: the fork server belongs to someone else
            return
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        try:
            os.unlink(self.socket_path)
        except OSError:
            pass
