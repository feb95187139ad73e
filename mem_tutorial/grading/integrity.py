"""Instructor-side integrity checks of a submitted notebook, against the released student copy.

Two families of findings, each with a one-line message:

* **tampering** (flag for the instructor; nbgrader restores the cells from the gradebook and runs them, with
  ``OverwriteCells.add_missing_cells``): a deleted test cell, an edited locked cell, changed nbgrader metadata
  (e.g. a test cell turned into an answer cell), duplicated cell ids or grade ids;
* **no own work** (no credit for the exercise): an exercise function whose code calls the library's reference
  implementation of the same mechanism (``mem.content_weighting`` inside ``def content_weighting``), or that
  rebinds the exercise's name to it. Found statically with :mod:`ast`, following aliases
  (``import mem_tutorial.memory as mem``, ``from mem_tutorial.memory.addressing import content_weighting as cw``,
  star imports, imports inside the function). Dynamic look-ups (``importlib``, ``__import__``, ``getattr`` with a
  computed name, ``exec``/``eval``) inside an exercise function are flagged as suspicious, without taking points.

The notebooks' hidden tests do the matching run-time check (``mem_tutorial.grading.checks.assert_own_work``);
this module is the instructor's report of it, and works on notebooks that were never run.
"""

from __future__ import annotations

import ast
import re
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

LIBRARY = "mem_tutorial"
DYNAMIC = {"__import__", "import_module", "exec", "eval", "globals", "getattr", "vars", "locals"}


@dataclass
class Finding:
    kind: str
    """deleted_test | edited_locked | metadata_changed | duplicate_id | library_call | suspicious"""
    cell: str
    message: str
    zero: list[str] = field(default_factory=list)
    """Grade ids of the tests that earn no points because of this finding."""

    def as_dict(self) -> dict:
        return asdict(self)


def _nbg(cell) -> dict:
    return (cell.get("metadata") or {}).get("nbgrader") or {}


def _norm(src) -> str:
    if isinstance(src, list):
        src = "".join(src)
    return "\n".join(line.rstrip() for line in str(src or "").strip().splitlines())


_HIDDEN = re.compile(r"### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS\n?", re.S)


def check_tampering(student_nb: dict, release_nb: dict) -> list[Finding]:
    """Deleted, edited or re-labelled graded/locked cells, and duplicated ids."""
    findings: list[Finding] = []
    cells = student_nb.get("cells") or []
    by_gid: dict[str, list] = {}
    ids: dict[str, int] = {}
    for cell in cells:
        if not isinstance(cell, dict):
            continue
        gid = _nbg(cell).get("grade_id")
        if gid:
            by_gid.setdefault(gid, []).append(cell)
        cid = cell.get("id")
        if cid:
            ids[cid] = ids.get(cid, 0) + 1
    for cid, n in sorted(ids.items()):
        if n > 1:
            findings.append(Finding("duplicate_id", cid, f"cell id `{cid}` appears {n} times (repaired)"))
    for gid, group in sorted(by_gid.items()):
        if len(group) > 1:
            findings.append(Finding("duplicate_id", gid, f"nbgrader cell `{gid}` appears {len(group)} times"))
    for ref in release_nb.get("cells", []):
        meta = _nbg(ref)
        gid = meta.get("grade_id")
        if not gid:
            continue
        is_test = meta.get("grade") and not meta.get("solution")
        got = by_gid.get(gid)
        if not got:
            if is_test:
                findings.append(Finding("deleted_test", gid, f"test cell `{gid}` was deleted (restored and run)"))
            elif meta.get("locked"):
                findings.append(Finding("edited_locked", gid, f"locked cell `{gid}` was deleted (restored)"))
            continue
        cell = got[0]
        sm = _nbg(cell)
        changed = [k for k in ("grade", "solution", "locked", "points") if sm.get(k) != meta.get(k)]
        if changed:
            findings.append(Finding("metadata_changed", gid,
                                    f"nbgrader metadata of `{gid}` changed ({', '.join(changed)}); original restored"))
        if meta.get("locked") and _norm(_HIDDEN.sub("", _norm(cell.get("source")) + "\n")) != \
                _norm(_HIDDEN.sub("", _norm(ref.get("source")) + "\n")):
            what = "test cell" if is_test else "locked cell"
            findings.append(Finding("edited_locked", gid, f"{what} `{gid}` was edited (original restored and run)"))
    return findings


# -- "only calls the library" --------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def library_functions() -> dict[str, list[str]]:
    """Public function names defined anywhere in the library -> their modules (read from the source, no import)."""
    root = Path(__file__).resolve().parent.parent
    out: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*.py")):
        if "grading" in path.parts:
            continue
        mod = ".".join(path.relative_to(root.parent).with_suffix("").parts)
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (OSError, SyntaxError, UnicodeDecodeError):
            continue
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
                out.setdefault(node.name, []).append(mod.removesuffix(".__init__"))
    return out


def _parse(src) -> ast.Module | None:
    if isinstance(src, list):
        src = "".join(src)
    lines = [("pass" if ln.lstrip().startswith(("%", "!")) else ln) for ln in str(src or "").splitlines()]
    try:
        return ast.parse("\n".join(lines))
    except SyntaxError:
        return None


def _bind_imports(node, aliases: dict[str, str]) -> None:
    if isinstance(node, ast.Import):
        for a in node.names:
            if a.name.split(".")[0] == LIBRARY:
                if a.asname:
                    aliases[a.asname] = a.name
                else:
                    aliases[a.name.split(".")[0]] = a.name.split(".")[0]
    elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == LIBRARY:
        for a in node.names:
            if a.name == "*":
                for fn, mods in library_functions().items():
                    if any(m == node.module or m.startswith(node.module + ".") for m in mods):
                        aliases[fn] = f"{node.module}.{fn}"
            else:
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"


def _qualified(node, aliases: dict[str, str]) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name) and node.id in aliases:
        return ".".join([aliases[node.id], *reversed(parts)])
    return None


def _library_refs(tree, aliases: dict[str, str]) -> list[str]:
    local = dict(aliases)
    for node in ast.walk(tree):
        _bind_imports(node, local)
    refs = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Name, ast.Attribute)):
            q = _qualified(node, local)
            if q and q.startswith(LIBRARY):
                refs.append(q)
    return refs


def _dynamic(tree) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
            if name in DYNAMIC:
                found.append(name)
    return found


def exercise_functions(release_nb: dict) -> dict[str, str]:
    """Exercise function name -> grade id of its answer cell (functions defined in the release's answer cells)."""
    out = {}
    for cell in release_nb.get("cells", []):
        meta = _nbg(cell)
        if cell.get("cell_type") == "code" and meta.get("solution"):
            tree = _parse(cell.get("source"))
            for node in (tree.body if tree else []):
                if isinstance(node, ast.FunctionDef):
                    out[node.name] = meta.get("grade_id", "")
    return out


def tests_of(release_nb: dict, name: str) -> list[str]:
    """Grade ids of the autograded test cells that call or mention ``name``."""
    out = []
    for cell in release_nb.get("cells", []):
        meta = _nbg(cell)
        if cell.get("cell_type") == "code" and meta.get("grade") and not meta.get("solution"):
            tree = _parse(cell.get("source"))
            if tree and any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(tree)):
                out.append(meta["grade_id"])
    return out


def check_own_work(student_nb: dict, release_nb: dict) -> list[Finding]:
    """Exercise answers that only delegate to the library's implementation of the same mechanism (findings that
    the released notebook itself would produce, e.g. a later ``from mem_tutorial.memory import ...``, are not
    the student's)."""
    baseline = {f.message for f in _own_work(release_nb, release_nb)}
    return [f for f in _own_work(student_nb, release_nb) if f.message not in baseline]


def _own_work(student_nb: dict, release_nb: dict) -> list[Finding]:
    exercises = exercise_functions(release_nb)
    locked = {(_nbg(c).get("grade_id")) for c in release_nb.get("cells", []) if _nbg(c).get("locked")}
    aliases: dict[str, str] = {}
    all_aliases: dict[str, str] = {}  # names bound anywhere: a function body looks them up when it runs
    for cell in student_nb.get("cells") or []:
        tree = _parse(cell.get("source")) if isinstance(cell, dict) and cell.get("cell_type") == "code" else None
        for node in (tree.body if tree else []):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                _bind_imports(node, all_aliases)
    findings: list[Finding] = []
    for cell in student_nb.get("cells") or []:
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        tree = _parse(cell.get("source"))
        if tree is None:
            continue
        gid = _nbg(cell).get("grade_id")
        student_cell = not (gid and gid in locked)
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                before = dict(aliases)
                _bind_imports(node, aliases)
                if student_cell:
                    for name in exercises:
                        q = aliases.get(name)
                        if q and before.get(name) != q and q.split(".")[-1] == name:
                            findings.append(_no_credit(release_nb, name, q, exercises[name],
                                                       f"`{name}` is imported from the library ({q})"))
            elif student_cell and isinstance(node, ast.FunctionDef) and node.name in exercises:
                refs = _library_refs(node, {**all_aliases, **aliases})
                same = [q for q in refs if q.split(".")[-1] == node.name]
                if same:
                    findings.append(_no_credit(release_nb, node.name, same[0], exercises[node.name],
                                               f"`{node.name}` calls the library's reference implementation "
                                               f"`{same[0]}`"))
                elif _dynamic(node):
                    findings.append(Finding("suspicious", gid or "?",
                                            f"`{node.name}` uses {', '.join(sorted(set(_dynamic(node))))} "
                                            "(check by hand)"))
            elif student_cell and isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name) and target.id in exercises:
                        q = _qualified(node.value, aliases)
                        if q and q.startswith(LIBRARY) and q.split(".")[-1] == target.id:
                            findings.append(_no_credit(release_nb, target.id, q, exercises[target.id],
                                                       f"`{target.id}` is set to the library's `{q}`"))
    return findings


def _no_credit(release_nb: dict, name: str, q: str, cell: str, what: str) -> Finding:
    return Finding("library_call", cell,
                   f"no credit for {name}: {what}; write the mechanism yourself from the paper's equations",
                   zero=tests_of(release_nb, name))


def check_submission(student_nb: dict, release_nb: dict) -> list[Finding]:
    """All integrity findings for one submitted notebook."""
    return (check_tampering(student_nb, release_nb) + check_own_work(student_nb, release_nb)
            + check_suspicious(student_nb, release_nb))


# -- code that reaches outside the notebook -----------------------------------------------------------------------
SUSPICIOUS_CALLS = {
    "os.system", "os.remove", "os.unlink", "os.rmdir", "os.removedirs", "os.kill", "os.killpg", "os._exit",
    "os.fork", "os.chmod", "os.chown", "os.setuid", "os.rename", "os.replace", "shutil.rmtree", "shutil.move",
    "sqlite3.connect", "ctypes.CDLL", "socket.socket", "subprocess.run", "subprocess.Popen", "subprocess.call",
    "subprocess.check_output", "subprocess.check_call", "signal.signal", "sys.exit", "exec", "eval", "__import__",
}
SUSPICIOUS_WORDS = ("gradebook", "solutions", "../", "/tmp/", "autograded", "submitted")


def check_suspicious(student_nb: dict, release_nb: dict) -> list[Finding]:
    """Student-written code (cells that differ from every released cell) that deletes files, starts processes,
    exits the kernel, opens databases or names the course's private folders: flagged for the instructor (the
    sandbox stops it from doing harm; this tells the instructor someone tried)."""
    released = {_norm(c.get("source")) for c in release_nb.get("cells", [])}
    found: list[str] = []
    for cell in student_nb.get("cells") or []:
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        if _norm(cell.get("source")) in released:
            continue
        tree = _parse(cell.get("source"))
        if tree is None:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = _dotted(node.func)
                if name in SUSPICIOUS_CALLS:
                    found.append(name)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                found += [f"'{w}'" for w in SUSPICIOUS_WORDS if w in node.value]
    if not found:
        return []
    names = ", ".join(dict.fromkeys(found))
    return [Finding("suspicious", "", f"code reaching outside the notebook ({names[:150]}): check by hand")]


def _dotted(node) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""
