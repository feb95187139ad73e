"""The guard of an answer process: the library's own answer to the exercise is not in the process at all.

An *answer process* (see :mod:`mem_tutorial.grading.answers`) runs a student's notebook code so that the grader can
call the student's functions on the hidden tests' inputs. It is forked from a process that imported the library
but never ran student code, and before any student code runs it is changed in two ways:

* :func:`poison` replaces the code of every library implementation of the exercise's mechanism (the functions the
  test names, the private helpers behind them, the methods of classes it names) by code that raises
  :class:`NoCredit`. Every route to them -- any import path, an alias, ``__wrapped__``, a copy of the function or
  of its code object made later -- ends in that code: the original code objects are gone from the process.
* :func:`arm` installs an audit hook (PEP 578; it cannot be removed once installed) that refuses what could bring
  the originals back or compute them elsewhere: reading the library's source or bytecode files (checked by inode,
  so links and other paths are covered), building code objects (``types.CodeType``, ``code.replace``) or loading
  them with ``marshal`` outside the import system, ``ctypes``, starting processes, sockets, loading native
  extension modules from writable folders, and new audit hooks.

An audit hook is not a general sandbox (PEP 578 says so); the process also runs in the OS sandbox of
:mod:`mem_tutorial.grading.sandbox` (own user, own mount and network namespaces when the grader is root). The guard
only has to keep one thing out of reach -- code the process no longer contains -- and it never calls student
code: it looks only at ``str``/``bytes``/``int`` arguments and uses functions captured before any student code ran.
"""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

NO_CREDIT_MARK = "mem-tutorial: no credit"


class NoCredit(BaseException):
    """Raised by the library's implementation of an exercise while a student's answer to it is graded."""


def _library_dir() -> str:
    import mem_tutorial

    return os.path.dirname(os.path.realpath(mem_tutorial.__file__))


def protected_inodes(folders: list[str] | None = None) -> set[tuple[int, int]]:
    """(device, inode) of every ``.py``/``.pyc`` file below ``folders`` (default: the ``mem_tutorial`` package)."""
    out = set()
    for folder in folders or [_library_dir()]:
        for root, _dirs, files in os.walk(folder):
            for name in files:
                if name.endswith((".py", ".pyc", ".pyi", ".ipynb")):
                    try:
                        st = os.stat(os.path.join(root, name))
                    except OSError:
                        continue
                    out.add((st.st_dev, st.st_ino))
    return out


# -- poisoning -----------------------------------------------------------------------------------------------------
def _poisoned_code(orig: types.CodeType, message: str) -> types.CodeType:
    """A code object with ``orig``'s number of free variables whose body raises ``NoCredit(message)``."""
    free = orig.co_freevars
    body = f"raise __mt_no_credit__({message!r})"
    if free:
        src = (f"def _outer():\n    {' = '.join(free)} = None\n    def _f(*args, **kwargs):\n"
               f"        {', '.join(free)}\n        {body}\n    return _f\n")
        ns: dict = {}
        exec(compile(src, "<no credit>", "exec"), {}, ns)
        code = ns["_outer"]().__code__
    else:
        ns = {}
        exec(compile(f"def _f(*args, **kwargs):\n    {body}\n", "<no credit>", "exec"), {}, ns)
        code = ns["_f"].__code__
    return code.replace(co_name=orig.co_name, co_qualname=getattr(orig, "co_qualname", orig.co_name),
                        co_filename="<removed while this exercise is graded>")


def _functions_of(obj) -> list[types.FunctionType]:
    """The Python functions behind ``obj``: itself, what it wraps, or every method of a class."""
    out: list[types.FunctionType] = []
    seen: set[int] = set()

    def add(f):
        for _ in range(10):
            if isinstance(f, (staticmethod, classmethod)):
                f = f.__func__
            elif isinstance(f, types.MethodType):
                f = f.__func__
            elif isinstance(f, property):
                for g in (f.fget, f.fset, f.fdel):
                    if g is not None:
                        add(g)
                return
            else:
                break
        if isinstance(f, types.FunctionType) and id(f) not in seen:
            seen.add(id(f))
            out.append(f)
            wrapped = f.__dict__.get("__wrapped__")
            if wrapped is not None:
                add(wrapped)

    if isinstance(obj, type):
        for klass in obj.__mro__:
            if klass.__module__.split(".")[0] != "mem_tutorial":
                continue
            for value in list(vars(klass).values()):
                add(value)
    else:
        add(obj)
        wrapped = getattr(obj, "__wrapped__", None)
        if wrapped is not None:
            add(wrapped)
        func = getattr(obj, "func", None)  # functools.partial
        if func is not None:
            add(func)
    return out


def resolve(spec: dict):
    """The object a spec names: ``{"module": "mem_tutorial.memory.addressing", "qualname": "cosine_similarity"}``."""
    obj = sys.modules.get(spec["module"])
    if obj is None:
        import importlib

        obj = importlib.import_module(spec["module"])
    for part in spec["qualname"].split("."):
        obj = getattr(obj, part)
    return obj


def poison(specs: list[dict]) -> list[str]:
    """Replace the code of every function behind ``specs`` (see :func:`resolve`); returns what was poisoned."""
    done = []
    for spec in specs:
        try:
            obj = resolve(spec)
        except Exception:
            continue
        label = spec.get("label") or f"{spec['module']}.{spec['qualname']}"
        for f in _functions_of(obj):
            module = sys.modules.get(f.__module__)
            if module is not None:
                module.__dict__["__mt_no_credit__"] = NoCredit
            f.__globals__["__mt_no_credit__"] = NoCredit
            msg = (f"{NO_CREDIT_MARK}: this calls the library's implementation "
                   f"{f.__module__}.{f.__qualname__} (behind {label}); write the mechanism yourself")
            f.__code__ = _poisoned_code(f.__code__, msg)
            done.append(f"{f.__module__}.{f.__qualname__}")
    import linecache

    linecache.clearcache()
    return done


# -- the audit hook ------------------------------------------------------------------------------------------------
_DENY_PREFIXES = ("ctypes.", "subprocess.", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
                  "os.system", "os.kill", "os.killpg", "pty.", "socket.", "winreg.", "_winapi.", "msvcrt.",
                  "resource.setrlimit", "sys.addaudithook", "code.__new__", "os.startfile", "webbrowser.")
_ARMED = False


class Refused(PermissionError):
    """An operation the answer process may not do while an exercise is graded."""


def arm(protected: set[tuple[int, int]], native_ok: tuple[str, ...] = ()) -> None:
    """Install the audit hook (once per process; it cannot be removed).

    ``protected``: (device, inode) of files that may not be opened. ``native_ok``: folder prefixes from which
    native extension modules may still be imported (the interpreter's and the virtual environment's)."""
    global _ARMED
    if _ARMED:
        return
    _stat = os.stat
    import stat as _stat_mod

    _isdir = _stat_mod.S_ISDIR
    _getframe = sys._getframe
    _str, _bytes, _int = str, bytes, int
    import importlib._bootstrap_external as _ext

    compile_bytecode = _ext._compile_bytecode.__code__
    get_code = frozenset(k.get_code.__code__ for k in (_ext.SourceLoader, _ext.SourcelessFileLoader))
    loader_types = (_ext.SourceFileLoader, _ext.SourcelessFileLoader)
    protected = frozenset(protected)
    native_ok = tuple(native_ok)
    deny = _DENY_PREFIXES
    extension_suffixes = (".so", ".pyd", ".dylib")

    def hook(event, args):
        if type(event) is not _str:
            return
        if event == "open":
            path = args[0] if args else None
            t = type(path)
            if t is _int or path is None:
                return
            if t is not _str and t is not _bytes:
                raise Refused("open() of an unusual path object is refused while grading")
            try:
                st = _stat(path)
            except (OSError, ValueError):
                return
            if (st.st_dev, st.st_ino) in protected:
                raise Refused("the course library's source files cannot be read while your answer is graded")
            if _isdir(st.st_mode):  # a folder's descriptor would let a relative path (dir_fd) escape this check
                raise Refused("opening a folder as a file is not allowed while your answer is graded")
            return
        if event.startswith(deny):
            raise Refused(f"{event} is not allowed while your answer is graded")
        if event in ("marshal.loads", "marshal.load"):
            # only the import system, loading bytecode of a read-only install (not a .pyc written by the student)
            f1 = _getframe(1)
            f2 = f1.f_back if f1 is not None else None
            if f1 is not None and f2 is not None and f1.f_code is compile_bytecode and f2.f_code in get_code:
                local = f2.f_locals
                loader = local.get("self")
                path = local.get("bytecode_path", local.get("path"))
                if type(loader) in loader_types and type(path) is _str and path.startswith(native_ok):
                    return
            raise Refused("marshal.loads is not allowed while your answer is graded")
        if event == "import":
            filename = args[1] if len(args) > 1 else None
            if type(filename) is _str and filename.endswith(extension_suffixes) and not filename.startswith(native_ok):
                raise Refused(f"native extension {filename} cannot be loaded while your answer is graded")
            return

    sys.addaudithook(hook)
    _ARMED = True


def native_prefixes() -> tuple[str, ...]:
    """Folders whose native extension modules an answer process may import (read-only installs)."""
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    for p in sys.path:
        if p and ("site-packages" in p or "dist-packages" in p):
            prefixes.add(p)
    return tuple(sorted({os.path.realpath(p) + os.sep for p in prefixes} | {p + os.sep for p in prefixes}))


def library_dir() -> Path:
    return Path(_library_dir())
