"""The trusted side of grading: run the instructor's test cells against a student's answers in another process.

A graded test cell (its visible checks and its hidden tests) runs here, in a process forked from the fork server
(:mod:`mem_tutorial.grading.zygote`) that has never run student code. Its namespace holds the notebook's own
imports (executed here, from the released notebook) and the test cells run before it; every other name it uses is
looked up in the student's *answer process* (:mod:`mem_tutorial.grading.answers`):

* a plain value (tensor, number, list, ...) is copied here;
* a function, class or other object becomes a proxy: calling it sends the arguments to the answer process and
  brings back the result; tensors the call changed in place are changed here too; when an argument requires
  gradients, the proxy is an autograd Function whose backward asks the answer process for the vector-Jacobian
  product, so ``.backward()``, ``torch.autograd.grad`` and ``gradcheck`` work as in a notebook.

Comparisons, assertion helpers and exception classes are this process's own, so nothing the submission executes
can change how a result is judged; a student's process can only send values. Before the answer process is created,
:func:`implementation_specs` lists the library's implementations of the exercise's mechanism (the functions named
in the test's ``assert_own_work`` calls and the private helpers behind them): the answer process removes them
before any student code runs (:mod:`mem_tutorial.grading.guard`), so an answer that reaches them fails with a
message naming what it called.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import inspect
import io
import json
import os
import select
import signal
import socket
import sys
import textwrap
import time
import traceback
import types

from mem_tutorial.grading import wire
from mem_tutorial.grading.guard import NO_CREDIT_MARK

OUTPUT_LIMIT = 16 * 1024
REPLY_LIMIT = 128 * 2**20
"""Largest reply an answer process may send (bytes): a test's values are small; this bounds the trusted side."""
TRUSTED_MEMORY = 6 * 2**30
"""Address-space limit of the trusted runner."""
TRUSTED_MODULE_ROOTS = ("mem_tutorial", "torch", "numpy", "math", "random", "collections", "itertools",
                        "functools", "string", "re", "json", "statistics", "matplotlib", "tqdm", "operator")


# -- talking to an answer process --------------------------------------------------------------------------------
class RemoteError(Exception):
    """The student's code raised while the grader called it."""

    def __init__(self, info: dict):
        self.type = str(info.get("type", "Exception"))
        self.remote_message = str(info.get("message", ""))
        self.where = str(info.get("where", ""))
        self.no_credit = self.type == "NoCredit" or NO_CREDIT_MARK in self.remote_message
        text = f"{self.type}: {self.remote_message}" if self.remote_message else self.type
        if self.where and not self.no_credit:
            text += f" ({self.where})"
        super().__init__(text)


class AnswerProcessGone(Exception):
    """The answer process died, was killed, or stopped answering in time."""


class AnswerClient:
    """Requests to one answer process over socket ``fd`` (see :mod:`mem_tutorial.grading.answers`)."""

    def __init__(self, fd: int, pid: int = 0, timeout: float = 60.0):
        self.fd, self.pid, self.timeout = fd, pid, float(timeout)
        self.dead: str | None = None
        self.no_credit: list[str] = []
        self.output: list[str] = []
        self.proxies: dict[int, object] = {}

    def request(self, msg: dict, timeout: float | None = None) -> dict:
        if self.dead:
            raise AnswerProcessGone(self.dead)
        wait = self.timeout if timeout is None else timeout
        try:
            wire.send(self.fd, wire.encode(msg))
            ready, _, _ = select.select([self.fd], [], [], wait)
            if not ready:
                self.kill()
                self.dead = f"timed out: your code did not finish within {wait:g} s (stopped)"
                raise AnswerProcessGone(self.dead)
            reply = wire.decode(wire.recv(self.fd, limit=REPLY_LIMIT), from_handle=self.proxy_for)
        except (EOFError, BrokenPipeError, ConnectionResetError, OSError) as exc:
            self.dead = self.dead or "your code ended its process (a crash, os._exit, or a memory or CPU limit)"
            raise AnswerProcessGone(self.dead) from None
        except wire.WireError as exc:
            self.kill()
            self.dead = f"your code sent back something that cannot be read ({exc})"
            raise AnswerProcessGone(self.dead) from None
        if not isinstance(reply, dict):
            raise AnswerProcessGone("malformed reply")
        out = reply.get("output")
        if isinstance(out, str) and out:
            self.output.append(out)
        if "error" in reply:
            err = RemoteError(reply["error"] if isinstance(reply["error"], dict) else {})
            if err.no_credit:
                self.no_credit.append(err.remote_message)
            raise err
        return reply

    def kill(self) -> None:
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except OSError:
                pass

    def proxy_for(self, h: wire.Handle):
        p = self.proxies.get(h.id)
        if p is None:
            p = RemoteObject(self, h)
            self.proxies[h.id] = p
        return p

    def close(self) -> None:
        try:
            wire.send(self.fd, wire.encode({"op": "exit"}))
        except Exception:
            pass
        try:
            os.close(self.fd)
        except OSError:
            pass


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


def _replace_tensors(x, it):
    import torch

    if isinstance(x, torch.Tensor):
        return next(it)
    if isinstance(x, list):
        return [_replace_tensors(v, it) for v in x]
    if isinstance(x, tuple):
        vals = [_replace_tensors(v, it) for v in x]
        return type(x)(*vals) if hasattr(type(x), "_fields") else tuple(vals)
    if isinstance(x, dict):
        return {k: _replace_tensors(v, it) for k, v in x.items()}
    return x


def _apply_changes(flat: list, changed) -> None:
    import torch

    for i, new in changed or []:
        if isinstance(i, int) and 0 <= i < len(flat) and isinstance(new, torch.Tensor):
            with torch.no_grad():
                if flat[i].shape == new.shape:
                    flat[i].copy_(new.to(flat[i].dtype))
                else:
                    flat[i].data = new


def _make_remote_function():
    import torch

    class RemoteFunction(torch.autograd.Function):
        """A call in the answer process as one autograd node (backward asks it for the vector-Jacobian product)."""

        @staticmethod
        def forward(ctx, client, msg, flat, holder, *grad_inputs):
            reply = client.request(msg)
            _apply_changes(flat, reply.get("changed"))
            result = reply.get("ok")
            outs: list = []
            _flat_tensors(result, outs)
            rg = list(reply.get("requires_grad") or [])
            holder["result"], holder["n"] = result, len(outs)
            ctx.client, ctx.graph = client, reply.get("graph")
            ctx.inputs = [(t.dtype, t.device) for t in grad_inputs]
            ctx.out_meta = [(o.dtype, o.shape) for o in outs]
            if not outs:
                dummy = torch.zeros(())
                ctx.mark_non_differentiable(dummy)
                return dummy
            for i, o in enumerate(outs):
                if not (i < len(rg) and rg[i]) or not o.is_floating_point():
                    ctx.mark_non_differentiable(o)
            return tuple(outs)

        @staticmethod
        def backward(ctx, *grads):
            n_in = len(ctx.inputs)
            if ctx.graph is None:
                return (None, None, None, None) + (None,) * n_in
            gout = [g if g is not None else None for g in grads[: len(ctx.out_meta)]]
            reply = ctx.client.request({"op": "backward", "graph": ctx.graph, "grad_outputs": gout})
            got = list(reply.get("ok") or [])
            out = []
            for i, (dtype, device) in enumerate(ctx.inputs):
                g = got[i] if i < len(got) else None
                out.append(None if g is None else g.to(dtype=dtype, device=device))
            return (None, None, None, None) + tuple(out)

    return RemoteFunction


_REMOTE_FN = None


def remote_call(client: AnswerClient, target, attr: str | None, args: tuple, kwargs: dict):
    """Call ``target`` (a notebook name or a handle) in the answer process; see the module docstring."""
    global _REMOTE_FN
    import torch

    args, kwargs = list(args), dict(kwargs)
    flat: list = []
    _flat_tensors((args, kwargs), flat)
    grad_idx = [i for i, t in enumerate(flat) if t.requires_grad and t.is_floating_point()] \
        if torch.is_grad_enabled() else []
    msg = {"op": "call", "target": target, "attr": attr, "args": args, "kwargs": kwargs,
           "grad_enabled": torch.is_grad_enabled(), "grad_inputs": grad_idx}
    if not grad_idx:
        reply = client.request(msg)
        _apply_changes(flat, reply.get("changed"))
        return reply.get("ok")
    if _REMOTE_FN is None:
        _REMOTE_FN = _make_remote_function()
    holder: dict = {}
    outs = _REMOTE_FN.apply(client, msg, flat, holder, *[flat[i] for i in grad_idx])
    if holder["n"] == 0:
        return holder["result"]
    outs = outs if isinstance(outs, tuple) else (outs,)
    return _replace_tensors(holder["result"], iter(outs))


class RemoteObject:
    """A function, class or object of the student's notebook, used through the answer process."""

    __mt_remote__ = True

    def __init__(self, client: AnswerClient, handle: wire.Handle, name: str | None = None):
        object.__setattr__(self, "_client", client)
        object.__setattr__(self, "_handle", handle)
        object.__setattr__(self, "__name__", name or handle.type_name)

    def __call__(self, *args, **kwargs):
        return remote_call(self._client, self._handle, None, args, kwargs)

    def __getattr__(self, name: str):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        reply = self._client.request({"op": "getattr", "handle": self._handle, "attr": name})
        return _bind(self._client, reply.get("ok") or {}, name)

    def _method(self, name, *args):
        return remote_call(self._client, self._handle, name, args, {})

    def __len__(self):
        return self._method("__len__")

    def __getitem__(self, key):
        return self._method("__getitem__", key)

    def __contains__(self, key):
        return self._method("__contains__", key)

    def __iter__(self):
        n = self.__len__()
        return iter([self.__getitem__(i) for i in range(n)])

    def __repr__(self) -> str:
        return f"<your {self._handle.type_name} {self.__name__!s}>"


def _bind(client: AnswerClient, info: dict, name: str):
    kind = info.get("kind")
    if kind == "value":
        return info.get("value")
    if kind == "module":
        return _trusted_module(str(info.get("name", "")))
    if kind in ("callable", "object"):
        h = info.get("handle")
        if isinstance(h, RemoteObject):
            object.__setattr__(h, "__name__", str(info.get("name") or name))
            return h
    raise NameError(name)


def _trusted_module(name: str):
    if name.split(".")[0] not in TRUSTED_MODULE_ROOTS:
        raise NameError(f"module {name}")
    import importlib

    return importlib.import_module(name)


# -- which names a test cell needs -----------------------------------------------------------------------------
def _parse(source: str) -> ast.Module | None:
    lines = [("pass" if ln.lstrip().startswith(("%", "!")) else ln) for ln in source.splitlines()]
    try:
        return ast.parse("\n".join(lines))
    except SyntaxError:
        return None


def loaded_names(source: str) -> list[str]:
    """Names a cell reads (anywhere, nested functions included), in order of first appearance."""
    tree = _parse(source)
    if tree is None:
        return []
    seen: dict[str, None] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            seen.setdefault(node.id, None)
    return list(seen)


def bound_names(source: str) -> set[str]:
    """Names a cell binds at its top level (assignments, definitions, imports, loop targets)."""
    tree = _parse(source)
    out: set[str] = set()
    if tree is None:
        return out
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            out.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, ast.alias):
            out.add((node.asname or node.name).split(".")[0])
    return out


def import_statements(source: str) -> list[str]:
    """The top-level ``import`` statements of a cell, as source."""
    tree = _parse(source)
    if tree is None:
        return []
    return [ast.unparse(n) for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]


def defined_names(source: str) -> set[str]:
    """Functions, classes and variables an answer cell defines at its top level."""
    tree = _parse(source)
    out: set[str] = set()
    for node in tree.body if tree else []:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            for t in (node.targets if isinstance(node, ast.Assign) else [node.target]):
                for n in ast.walk(t):
                    if isinstance(n, ast.Name):
                        out.add(n.id)
    return out


# -- the library's implementations of a mechanism ----------------------------------------------------------------
def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _library_object(obj) -> bool:
    mod = getattr(obj, "__module__", None) or ""
    return (isinstance(obj, (types.FunctionType, type)) and mod.split(".")[0] == "mem_tutorial"
            and not mod.startswith("mem_tutorial.grading"))


def _owner(func):
    parts = func.__qualname__.split(".")
    if len(parts) < 2 or "<locals>" in parts:
        return None
    obj = sys.modules.get(func.__module__)
    for p in parts[:-1]:
        obj = getattr(obj, p, None)
    return obj if isinstance(obj, type) else None


def _functions(obj) -> list:
    from mem_tutorial.grading.guard import _functions_of

    return _functions_of(obj)


_REFS_CACHE: dict[int, list] = {}


def _references(func) -> list:
    """Library functions and classes that ``func``'s source names (globals, ``module.attr``, ``self.attr``)."""
    key = id(func)
    if key in _REFS_CACHE:
        return _REFS_CACHE[key]
    out: list = []
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    except (OSError, TypeError, SyntaxError, IndentationError):
        _REFS_CACHE[key] = out
        return out
    g = func.__globals__
    owner = _owner(func)

    def resolve(node):
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            return None
        if node.id in ("self", "cls") and owner is not None:
            obj = owner
        elif node.id in g:
            obj = g[node.id]
        else:
            return None
        for p in reversed(parts):
            obj = getattr(obj, p, None)
            if obj is None:
                return None
        return obj

    for node in ast.walk(tree):
        if isinstance(node, (ast.Name, ast.Attribute)):
            obj = resolve(node)
            if isinstance(obj, (staticmethod, classmethod)):
                obj = obj.__func__
            if isinstance(obj, types.MethodType):
                obj = obj.__func__
            if obj is not None and obj is not func and _library_object(obj):
                out.append(obj)
    _REFS_CACHE[key] = out
    return out


def _private_closure(roots) -> list:
    """``roots`` and the private library functions and classes reachable from them."""
    seen: dict[int, object] = {}
    todo = list(roots)
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen[id(obj)] = obj
        for f in _functions(obj):
            for ref in _references(f):
                if id(ref) not in seen and _is_private(getattr(ref, "__name__", "")):
                    todo.append(ref)
    return list(seen.values())


_PUBLIC: list | None = None


def _public_objects() -> list:
    """Every public function and class of the library (its grading package excluded)."""
    global _PUBLIC
    if _PUBLIC is None:
        import importlib
        import pkgutil

        import mem_tutorial

        _PUBLIC = []
        for info in pkgutil.walk_packages(mem_tutorial.__path__, "mem_tutorial."):
            if info.name.startswith("mem_tutorial.grading"):
                continue
            try:
                mod = importlib.import_module(info.name)
            except Exception:
                continue
            for name, obj in vars(mod).items():
                if not _is_private(name) and _library_object(obj) and obj.__module__ == mod.__name__:
                    _PUBLIC.append(obj)
    return _PUBLIC


def _squash(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def _core_helpers(closure: list, roots: list) -> list:
    """Private helpers named after an exercise's reference (``_shift`` behind ``shift``, ``_TemporalLink`` behind
    ``temporal_link_update``): the mechanism itself, whoever else calls it."""
    names = [_squash(getattr(r, "__name__", "")) for r in roots]
    out = []
    for obj in closure:
        n = _squash(getattr(obj, "__name__", ""))
        if _is_private(getattr(obj, "__name__", "")) and len(n) >= 4 and any(n in r or r in n for r in names if r):
            out.append(obj)
    return out


def _spec(obj) -> dict | None:
    mod = getattr(obj, "__module__", None)
    qual = getattr(obj, "__qualname__", None)
    if not mod or not qual or "<locals>" in qual:
        return None
    return {"module": mod, "qualname": qual}


def implementation_specs(refs) -> list[dict]:
    """Specs (for :func:`mem_tutorial.grading.guard.poison`) of the library's implementations behind ``refs``.

    They are: the referenced functions, methods and classes themselves; their *core* helpers (private helpers
    named after them, see :func:`_core_helpers`); and every other private helper they use that no *allowed* public
    function uses. A public function is allowed unless it reaches a reference or a core helper (it would embed the
    mechanism). So an honest answer that builds on the library's other public functions keeps working (their
    shape checks and helpers stay), while the private route to the exercise's own mechanism is closed."""
    roots = []
    for r in refs:
        if isinstance(r, (staticmethod, classmethod)):
            r = r.__func__
        if isinstance(r, types.MethodType):
            r = r.__func__
        if _library_object(r):
            roots.append(r)
    if not roots:
        return []
    closure = _private_closure(roots)
    core = _core_helpers(closure, roots)
    embedded = {id(o) for o in roots} | {id(o) for o in core}
    allowed: set[int] = set()
    for pub in _public_objects():
        if id(pub) in embedded:
            continue
        reach = _private_closure([pub])
        if any(id(o) in embedded for o in reach) or any(id(ref) in embedded for f in _functions(pub)
                                                         for ref in _references(f)):
            continue
        allowed |= {id(o) for o in reach}
    out, seen = [], set()
    for obj in closure:
        if id(obj) not in embedded and id(obj) in allowed:
            continue
        s = _spec(obj)
        if s is not None and (s["module"], s["qualname"]) not in seen:
            seen.add((s["module"], s["qualname"]))
            out.append(s)
    return out


def own_work_refs(source: str, ns: dict) -> list:
    """The library objects named in the cell's ``assert_own_work(student_fn, refs, ...)`` calls."""
    tree = _parse(source)
    out = []
    for node in ast.walk(tree) if tree else []:
        if not isinstance(node, ast.Call) or len(node.args) < 2:
            continue
        f = node.func
        name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
        if name != "assert_own_work":
            continue
        arg = node.args[1]
        for el in (arg.elts if isinstance(arg, (ast.List, ast.Tuple)) else [arg]):
            try:
                out.append(eval(compile(ast.Expression(el), "<refs>", "eval"), dict(ns)))  # noqa: S307 (trusted)
            except Exception:
                continue
    return out


# -- running a test cell -------------------------------------------------------------------------------------------
class _Capped(io.StringIO):
    def write(self, s):
        if self.tell() < OUTPUT_LIMIT:
            return super().write(str(s)[: OUTPUT_LIMIT - self.tell()])
        return len(s)


def hidden_lines(source: str) -> tuple[int, int] | None:
    """1-based (first, last) line numbers of the hidden-tests block of a test cell's source, if any."""
    lines = source.splitlines()
    start = next((i for i, ln in enumerate(lines) if "### BEGIN HIDDEN TESTS" in ln), None)
    if start is None:
        return None
    end = next((i for i, ln in enumerate(lines) if "### END HIDDEN TESTS" in ln and i > start), len(lines) - 1)
    return start + 1, end + 1


def _failure(exc: BaseException, source: str, filename: str, hidden) -> dict:
    lineno = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            lineno = tb.tb_lineno
        tb = tb.tb_next
    in_hidden = bool(hidden and lineno and hidden[0] <= lineno <= hidden[1])
    lines = source.splitlines()
    if isinstance(exc, RemoteError):
        if exc.no_credit:
            msg = exc.remote_message.replace(f"{NO_CREDIT_MARK}: ", "")
            message = f"no credit: {msg}"
        elif exc.type == "NotImplementedError" and "exercise" not in exc.remote_message.lower():
            message = f"not answered yet: your code raised {exc}"
        else:
            message = f"your code raised {exc}"
    elif isinstance(exc, AnswerProcessGone):
        message = str(exc)
    else:
        try:
            text = str(exc)
        except Exception:
            text = ""
        if isinstance(exc, AssertionError):
            if not text:
                text = ("a hidden test failed" if in_hidden or lineno is None
                        else f"check failed: {lines[lineno - 1].strip()}" if lineno <= len(lines) else "check failed")
            message = text
        else:
            message = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return {"ename": type(exc).__name__, "message": message[:2000], "line": lineno, "hidden": in_hidden,
            "where": "hidden tests" if in_hidden else (f"line {lineno}" if lineno else "")}


class TrustedRunner:
    """Serves the grader: ``prepare`` a notebook's namespace, then run its test cells one at a time (``test``,
    with the answer process's socket attached)."""

    def __init__(self, fd: int):
        import resource

        self.sock = socket.socket(fileno=fd)
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if soft == resource.RLIM_INFINITY or soft > TRUSTED_MEMORY:
            resource.setrlimit(resource.RLIMIT_AS, (TRUSTED_MEMORY, hard))
        os.environ["MEM_TUTORIAL_SELFCHECK"] = "raise"  # a failed visible check is a failed test, never a report
        self.base: dict = {}
        self.ns: dict = {}
        self.answer_names: set[str] = set()

    def serve(self) -> None:
        while True:
            try:
                msg, fds, _flags, _addr = socket.recv_fds(self.sock, 1 << 22, 4)
            except OSError:
                return
            if not msg:
                return
            req = json.loads(msg.decode("utf-8"))
            try:
                if req.get("op") == "prepare":
                    reply = self.prepare(req)
                elif req.get("op") == "test":
                    reply = self.test(req, fds[0] if fds else -1)
                else:
                    reply = {"error": f"unknown request {req.get('op')!r}"}
            except BaseException as exc:  # a bug here must not hang the grader
                reply = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-3000:]}
            finally:
                for fd in fds[1:] if req.get("op") == "test" else fds:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            data = json.dumps(reply, default=str).encode("utf-8")
            self.sock.sendall(data)

    def prepare(self, req: dict) -> dict:
        """Execute the released notebook's imports; compute each test's implementation specs."""
        ns: dict = {"__builtins__": builtins, "__name__": "__main__"}
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            for stmt in req.get("imports", []):
                try:
                    exec(compile(stmt, "<notebook imports>", "exec"), ns)  # noqa: S102 (the released notebook)
                except Exception:
                    pass
        self.base = ns
        self.ns = dict(ns)
        self.answer_names = set(req.get("answer_names", []))
        cache = req.get("cache")
        if cache and os.path.isfile(cache):
            try:
                with open(cache, encoding="utf-8") as fh:
                    return {"specs": json.load(fh)}
            except (OSError, ValueError):
                pass
        specs = {}
        scratch = dict(ns)
        for gid, source in req.get("tests", {}).items():
            with contextlib.redirect_stdout(io.StringIO()):
                try:
                    from mem_tutorial.grading import checks

                    scratch.setdefault("assert_own_work", checks.assert_own_work)
                    specs[gid] = implementation_specs(own_work_refs(source, scratch))
                except Exception:
                    specs[gid] = []
        if cache:  # the same for every submission of this notebook in this run
            try:
                tmp = f"{cache}.{os.getpid()}.tmp"
                with open(tmp, "w", encoding="utf-8") as fh:
                    json.dump(specs, fh)
                os.replace(tmp, cache)
            except OSError:
                pass
        return {"specs": specs}

    def _bind_names(self, client: AnswerClient, source: str) -> None:
        names = [n for n in loaded_names(source)
                 if n in self.answer_names or (n not in self.ns and not hasattr(builtins, n))]
        names = [n for n in names if n in self.answer_names or n not in bound_names(source)]
        if not names:
            return
        try:
            reply = client.request({"op": "lookup", "names": names})
        except (RemoteError, AnswerProcessGone):
            return
        for name, info in (reply.get("ok") or {}).items():
            if not isinstance(info, dict) or info.get("kind") == "missing":
                if name in self.answer_names:
                    self.ns.pop(name, None)
                continue
            try:
                self.ns[name] = _bind(client, info, name)
            except NameError:
                continue

    def test(self, req: dict, fd: int) -> dict:
        gid = str(req.get("grade_id", "test"))
        source = str(req.get("source", ""))
        timeout = float(req.get("timeout", 60))
        client = AnswerClient(fd, int(req.get("pid", 0)), timeout)
        out = _Capped()
        t0 = time.process_time()
        prefix_errors = []
        try:
            if fd < 0:
                raise AnswerProcessGone("no answer process")
            cells = req.get("prefix", [])
            if cells:
                total = sum(float(c.get("timeout", timeout)) for c in cells) + 30
                reply = client.request({"op": "run", "cells": cells}, timeout=total)
                prefix_errors = [r for r in reply.get("ok", []) if r.get("status") != "ok"]
                client.output.clear()
            self._bind_names(client, source)
            filename = f"<test {gid}>"
            code = compile(source, filename, "exec")
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                exec(code, self.ns)  # noqa: S102 (the instructor's test cell)
            passed, failure = True, None
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # an assertion, the student's exception, a timeout, a dead process ...
            passed, failure = False, _failure(exc, source, f"<test {gid}>", hidden_lines(source))
        if client.no_credit and (passed or not (failure or {}).get("message", "").startswith("no credit")):
            passed = False
            msg = client.no_credit[0].replace(f"{NO_CREDIT_MARK}: ", "")
            failure = {"ename": "NoCredit", "message": f"no credit: {msg}", "line": None, "hidden": True,
                       "where": "hidden tests"}
        student_output = "".join(client.output)
        client.close()
        return {"grade_id": gid, "passed": passed, "failure": failure, "stdout": out.getvalue(),
                "student_output": student_output[:OUTPUT_LIMIT], "no_credit": bool(client.no_credit),
                "prefix_errors": prefix_errors[:20], "cpu": round(time.process_time() - t0, 3)}
