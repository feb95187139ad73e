"""The answer process: runs a student's notebook code, then answers the grader's calls of the student's functions.

One answer process serves one graded test cell. It is forked (by :mod:`mem_tutorial.grading.zygote`) from a process
that imported the library and never ran student code; :mod:`mem_tutorial.grading.guard` removes the library's
implementation of the exercise's mechanism before any student code runs. The grader then sends requests, one
:mod:`wire` frame each, over one socket:

``run``       execute notebook cells (the student's code before the test cell), each with a time limit;
``lookup``    what a name of the notebook is: missing, a plain value (sent), a callable, a module, another object;
``call``      call a function (or a method of an object kept here) on arguments sent by the grader; the reply
              holds the result, the tensor arguments the call changed in place, and, when the grader's inputs
              require gradients, an id under which the graph is kept for ``backward``;
``backward``  vector-Jacobian product of a kept call (gradients flow from the grader's test through the proxy);
``getattr``   an attribute of a kept object; ``release`` forget kept graphs; ``exit``.

Nothing here decides whether a test passed: the grader compares the results in its own process. Student code can
rewrite everything in this process; all it can change is the values sent back.
"""

from __future__ import annotations

import io
import os
import signal
import sys
import traceback

from mem_tutorial.grading import wire

MAX_GRAPHS = 512
OUTPUT_LIMIT = 64 * 1024


class CellTimeout(BaseException):
    """A notebook cell ran past its time limit in the answer process."""


class _Capped(io.TextIOBase):
    """A text stream that keeps the first ``limit`` characters written to it."""

    def __init__(self, limit: int = OUTPUT_LIMIT):
        self.limit, self.parts, self.size = limit, [], 0

    def writable(self) -> bool:
        return True

    def write(self, s) -> int:
        s = str(s)
        if self.size < self.limit:
            self.parts.append(s[: self.limit - self.size])
        self.size += len(s)
        return len(s)

    def take(self) -> str:
        out = "".join(self.parts)
        if self.size > self.limit:
            out += f"\n[... {self.size - self.limit} more characters]"
        self.parts, self.size = [], 0
        return out


def _is_data(x) -> bool:
    try:
        wire.encode(x)
        return True
    except Exception:
        return False


def _describe(obj) -> dict:
    """How a notebook name looks from the grader's side."""
    import types

    if isinstance(obj, types.ModuleType):
        return {"kind": "module", "name": getattr(obj, "__name__", "?")}
    if isinstance(obj, type) or (callable(obj) and not _is_data(obj)):
        return {"kind": "callable", "type": type(obj).__name__, "name": str(getattr(obj, "__name__", "")) [:100]}
    if _is_data(obj):
        return {"kind": "value", "value": obj}
    return {"kind": "object", "type": type(obj).__name__}


def _flat_tensors(x, out: list) -> None:
    import torch

    if isinstance(x, torch.Tensor):
        out.append(x)
    elif isinstance(x, (list, tuple)):
        for v in x:
            _flat_tensors(v, out)
    elif isinstance(x, dict):
        for v in x.values():
            _flat_tensors(v, out)


class AnswerServer:
    """Serves the grader's requests on socket file descriptor ``fd`` (see the module docstring)."""

    def __init__(self, fd: int, shell=None):
        self.fd = fd
        self.shell = shell
        self.objects: dict[int, object] = {}
        self.ids: dict[int, int] = {}  # id(obj) -> handle
        self.graphs: dict[int, tuple] = {}
        self.next_id = 1
        self.out = _Capped()

    # -- handles ----------------------------------------------------------------------------------------------
    def to_handle(self, obj) -> wire.Handle:
        h = self.ids.get(id(obj))
        if h is None or self.objects.get(h) is not obj:
            h = self.next_id
            self.next_id += 1
            self.objects[h] = obj
            self.ids[id(obj)] = h
        return wire.Handle(h, type(obj).__name__)

    def from_handle(self, h: wire.Handle):
        if h.id not in self.objects:
            raise KeyError(f"unknown object #{h.id}")
        return self.objects[h.id]

    # -- the loop ---------------------------------------------------------------------------------------------
    def serve(self) -> None:
        while True:
            try:
                msg = wire.decode(wire.recv(self.fd), from_handle=self.from_handle)
            except EOFError:
                return
            op = msg.get("op") if isinstance(msg, dict) else None
            if op == "exit":
                self._reply({"ok": True})
                return
            try:
                handler = getattr(self, f"op_{op}", None)
                if handler is None:
                    raise ValueError(f"unknown request {op!r}")
                reply = handler(msg)
            except BaseException as exc:  # a student exception (or our own): reported, never fatal
                reply = {"error": self._error(exc)}
            reply["output"] = self.out.take()
            self._reply(reply)

    def _reply(self, reply: dict) -> None:
        try:
            data = wire.encode(reply, to_handle=self.to_handle)
        except BaseException as exc:
            data = wire.encode({"error": {"type": "WireError", "message": f"the result could not be sent: {exc}"},
                                "output": ""})
        wire.send(self.fd, data)

    @staticmethod
    def _error(exc: BaseException) -> dict:
        try:
            message = str(exc)
        except BaseException:
            message = "(the exception's message could not be shown)"
        where = ""
        try:
            frames = [f for f in traceback.extract_tb(exc.__traceback__)
                      if not f.filename.startswith(os.path.dirname(__file__))]
            if frames:
                f = frames[-1]
                place = "your notebook" if f.filename.startswith("<ipython-input") else f.filename
                where = f"line {f.lineno} of {place}: {(f.line or '').strip()}"[:300]
        except BaseException:
            pass
        return {"type": type(exc).__name__[:100], "message": message[:4000], "where": where}

    # -- requests ---------------------------------------------------------------------------------------------
    def op_run(self, msg) -> dict:
        results = []
        for cell in msg.get("cells", []):
            results.append(self._run_cell(str(cell.get("source", "")), float(cell.get("timeout", 60))))
        return {"ok": results}

    def _run_cell(self, source: str, timeout: float) -> dict:
        def on_alarm(signum, frame):
            raise CellTimeout(f"cell interrupted after {timeout:g} s")

        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, max(timeout, 0.01), 1.0)
        try:
            if self.shell is not None:
                res = self.shell.run_cell(source, store_history=False, silent=True)
                err = res.error_before_exec or res.error_in_exec
            else:
                err = None
                try:
                    exec(compile(source, "<cell>", "exec"), sys.modules["__main__"].__dict__)
                except BaseException as exc:
                    err = exc
        except CellTimeout as exc:
            err = exc
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        if err is None:
            return {"status": "ok"}
        return {"status": "timeout" if isinstance(err, CellTimeout) else "error", "error": self._error(err)}

    def _namespace(self) -> dict:
        if self.shell is not None:
            return self.shell.user_ns
        return sys.modules["__main__"].__dict__

    def op_lookup(self, msg) -> dict:
        ns = self._namespace()
        out = {}
        for name in msg.get("names", []):
            name = str(name)
            if name not in ns:
                out[name] = {"kind": "missing"}
                continue
            try:
                d = _describe(ns[name])
            except BaseException:
                d = {"kind": "object", "type": "?"}
            if d["kind"] in ("callable", "object"):
                d["handle"] = self.to_handle(ns[name])
            out[name] = d
        return {"ok": out}

    def op_getattr(self, msg) -> dict:
        obj = getattr(msg["handle"], str(msg["attr"]))
        d = _describe(obj)
        if d["kind"] in ("callable", "object"):
            d["handle"] = self.to_handle(obj)
        return {"ok": d}

    def op_call(self, msg) -> dict:
        import torch

        target = msg["target"]  # a notebook name, or an object kept here (its handle was decoded into it)
        fn = self._namespace()[target] if isinstance(target, str) else target
        if msg.get("attr"):
            fn = getattr(fn, str(msg["attr"]))
        args, kwargs = list(msg.get("args", [])), dict(msg.get("kwargs", {}))
        want_grad = [int(i) for i in msg.get("grad_inputs", [])]
        inputs: list = []
        _flat_tensors((args, kwargs), inputs)
        grad_leaves = []
        for i in want_grad:
            if 0 <= i < len(inputs) and inputs[i].is_floating_point():
                inputs[i].requires_grad_(True)
                grad_leaves.append(inputs[i])
        before = [t.detach().clone() for t in inputs]
        with torch.set_grad_enabled(bool(msg.get("grad_enabled", True))):
            result = fn(*args, **kwargs)
        changed = []
        for i, (t, b) in enumerate(zip(inputs, before)):
            try:
                same = t.shape == b.shape and t.dtype == b.dtype and torch.equal(t.detach(), b)
            except BaseException:
                same = False
            if not same:
                changed.append([i, t.detach().clone()])
        reply = {"ok": result, "changed": changed}
        if grad_leaves:
            outs: list = []
            _flat_tensors(result, outs)
            reply["requires_grad"] = [bool(o.requires_grad) for o in outs]
            if any(o.requires_grad for o in outs):
                gid = self.next_id
                self.next_id += 1
                self.graphs[gid] = (want_grad, inputs, outs)
                while len(self.graphs) > MAX_GRAPHS:
                    self.graphs.pop(next(iter(self.graphs)))
                reply["graph"] = gid
        return reply

    def op_backward(self, msg) -> dict:
        import torch

        want, inputs, outs = self.graphs[int(msg["graph"])]
        grads_out = list(msg.get("grad_outputs", []))
        pairs = [(o, g) for o, g in zip(outs, grads_out) if g is not None and o.requires_grad]
        leaves = [inputs[i] for i in want if inputs[i].requires_grad]
        if not pairs or not leaves:
            return {"ok": [None] * len(want)}
        grads = torch.autograd.grad([o for o, _ in pairs], leaves, [g.to(o.dtype) for o, g in pairs],
                                    allow_unused=True, retain_graph=True)
        by_leaf = {id(t): g for t, g in zip(leaves, grads)}
        return {"ok": [by_leaf.get(id(inputs[i])) for i in want]}

    def op_release(self, msg) -> dict:
        for g in msg.get("graphs", []):
            self.graphs.pop(int(g), None)
        return {"ok": True}


def make_shell():
    """An IPython shell for notebook cells (magics and ``display`` work; nothing is shown anywhere)."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance(colors="nocolor")
    shell.display_pub.publish = lambda *a, **k: None
    shell.displayhook.write_output_prompt = lambda *a, **k: None
    shell.showtraceback = lambda *a, **k: None  # errors are reported from the ExecutionResult, briefly
    shell.showsyntaxerror = lambda *a, **k: None
    return shell
