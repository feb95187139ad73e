"""A synthetic, hostile class of Chapter 1 submissions, generated from the chapter's own notebooks.

``write_class(folder, course_root)`` writes ``<student>/01_memory_as_attention/<file>`` for every case in
:data:`CASES` (17 students), as an instructor would receive them, and returns the cases with what the autograder
must report for each: the automatic score read back from the gradebook, whether the submission is flagged for
the instructor, and words the one-line reason must contain.

Scores: Chapter 1 has 7 automatic points (test_cosine_similarity 2, test_content_weighting 2, test_read 1,
test_write 2) and 3 manual points (written answers, left to formgrader). Most cases drop the chapter's demo and
training cells (ordinary cells a student may delete) so that the class grades quickly.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = "01_memory_as_attention"
NOTEBOOK = "memory_as_attention"
OTHER_CHAPTER = "02_ntm"
AUTO_POINTS = 7.0
POINTS = {"test_cosine_similarity": 2.0, "test_content_weighting": 2.0, "test_read": 1.0, "test_write": 2.0}


def source_path(root: Path = ROOT) -> Path:
    return root / "solutions" / CHAPTER / f"{NOTEBOOK}.ipynb"


def release_path(root: Path = ROOT) -> Path:
    return root / "notebooks" / CHAPTER / f"{NOTEBOOK}.ipynb"


def make_course(dest: Path, root: Path = ROOT) -> Path:
    """A fresh course folder holding Chapter 1 (source and release notebooks) and the course's nbgrader config."""
    dest = Path(dest)
    (dest / "solutions" / CHAPTER).mkdir(parents=True)
    (dest / "notebooks" / CHAPTER).mkdir(parents=True)
    shutil.copy(root / "nbgrader_config.py", dest / "nbgrader_config.py")
    shutil.copy(source_path(root), dest / "solutions" / CHAPTER)
    shutil.copy(release_path(root), dest / "notebooks" / CHAPTER)
    other = root / "solutions" / OTHER_CHAPTER  # only so that a notebook of the wrong chapter can be named
    if other.is_dir():
        (dest / "solutions" / OTHER_CHAPTER).mkdir(parents=True)
        for nb in other.glob("*.ipynb"):
            shutil.copy(nb, dest / "solutions" / OTHER_CHAPTER)
    return dest


def _gid(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def _cell(nb, gid):
    return next(c for c in nb.cells if _gid(c) == gid)


def release_notebook(root: Path = ROOT):
    return nbformat.read(release_path(root), as_version=4)


def solved_notebook(root: Path = ROOT):
    """The student copy with the instructor's answers typed in (as a good student would)."""
    nb = release_notebook(root)
    src = nbformat.read(source_path(root), as_version=4)
    answers = {_gid(c): c.source for c in src.cells if c.get("metadata", {}).get("nbgrader", {}).get("solution")}
    for cell in nb.cells:
        gid = _gid(cell)
        if gid in answers:
            text = re.sub(r"[ \t]*### (BEGIN|END) SOLUTION[^\n]*\n?", "", answers[gid])
            cell.source = text
    return nb


def lean(nb):
    """Drop the ordinary (demo, training) code cells after the last graded test: students may delete those."""
    nb = copy.deepcopy(nb)
    last = max(i for i, c in enumerate(nb.cells) if c.get("metadata", {}).get("nbgrader", {}).get("grade"))
    nb.cells = [c for i, c in enumerate(nb.cells)
                if i <= last or c.cell_type != "code" or c.get("metadata", {}).get("nbgrader")]
    # the widget explorer cell is slow to import and not needed for grading either
    nb.cells = [c for c in nb.cells if "content_addressing_explorer" not in c.source]
    return nb


def _new_cell(source: str, after_gid: str | None, nb):
    nb = copy.deepcopy(nb)
    cell = nbformat.v4.new_code_cell(source)
    idx = len(nb.cells) if after_gid is None else next(i for i, c in enumerate(nb.cells) if _gid(c) == after_gid) + 1
    nb.cells.insert(idx, cell)
    return nb


def _answer(nb, gid: str, source: str):
    nb = copy.deepcopy(nb)
    _cell(nb, gid).source = source
    return nb


def _bytes(nb) -> bytes:
    return nbformat.writes(nb).encode("utf-8")


@dataclass
class Case:
    student: str
    what: str
    auto: float
    """Automatic points the gradebook must hold."""
    flagged: bool
    reason: tuple[str, ...] = ()
    """Words the one-line reason must contain (lower case)."""
    filename: str = f"{NOTEBOOK}.ipynb"
    status: str = "graded"


ESCAPE = r'''
import glob, os, shutil, sqlite3, pathlib
hits = []
def attempt(what, fn):
    try:
        fn(); hits.append(what)
    except Exception as exc:
        print("blocked:", what, type(exc).__name__)
targets = ["solutions", "notebooks", "gradebook.db", "submitted", "autograded", "nbgrader_config.py", "source",
           "course"]
here = pathlib.Path.cwd()
for up in range(1, 7):
    for t in targets:
        p = here.joinpath(*[".."] * up, t)
        if p.is_dir():
            attempt(f"rmtree {p}", lambda p=p: shutil.rmtree(p))
        elif p.exists():
            attempt(f"remove {p}", lambda p=p: os.remove(p))
for root in (COURSE_ROOT, REPO_ROOT):
    for t in targets + [".git"]:
        p = pathlib.Path(root, t)
        if p.is_dir():
            attempt(f"rmtree {p}", lambda p=p: shutil.rmtree(p))
        elif p.exists():
            attempt(f"remove {p}", lambda p=p: os.remove(p))
for p in glob.glob("/tmp/mt-*/**/*.ipynb", recursive=True) + glob.glob("/tmp/mt-*/**/gradebook.db", recursive=True):
    attempt(f"remove {p}", lambda p=p: os.remove(p))
shutil.rmtree(".", ignore_errors=True)   # its own working folder: allowed
print("deleted:", hits)
'''

CHEAT = r'''
import glob, json, os, pathlib, sqlite3
stolen = None
candidates = [pathlib.Path("../../../solutions"), pathlib.Path(COURSE_ROOT, "solutions"), pathlib.Path(REPO_ROOT, "solutions")]
for base in candidates:
    try:
        for nb in base.glob("*/memory_as_attention.ipynb"):
            stolen = json.loads(nb.read_text()); break
    except Exception as exc:
        print("blocked read:", type(exc).__name__)
if stolen:
    for cell in stolen["cells"]:
        if cell["cell_type"] == "code" and cell["metadata"].get("nbgrader", {}).get("solution"):
            exec("".join(cell["source"]), globals())
    print("STOLE THE SOLUTIONS")
for db in [pathlib.Path("../../../gradebook.db"), pathlib.Path(COURSE_ROOT, "gradebook.db")] + \
        [pathlib.Path(p) for p in glob.glob("/tmp/**/gradebook.db", recursive=True)]:
    try:
        con = sqlite3.connect(db)
        con.execute("UPDATE grade SET auto_score = 100, manual_score = 100")
        con.execute("UPDATE grade_cells SET max_score = 0")
        con.commit()
        print("WROTE THE GRADEBOOK", db)
    except Exception as exc:
        print("blocked write:", type(exc).__name__)
'''


RIG = r'''
# wrong answers, then everything a test could rely on is rigged from the student's own kernel
import builtins, sys, torch
import mem_tutorial.grading.checks as C
torch.allclose = lambda *a, **k: True
torch.equal = lambda *a, **k: True
C.assert_close = lambda *a, **k: None
C.assert_distribution = lambda *a, **k: None
C.assert_own_work = lambda f, refs, *a, **k: f(*a, **k)
builtins.AssertionError = type("AssertionError", (Exception,), {})
AssertionError = Exception
ip = get_ipython()
ip.input_transformers_cleanup.append(lambda lines: [ln for ln in lines if "assert" not in ln])
ip.events.register("post_run_cell", lambda result: setattr(result, "error_in_exec", None))
sys.excepthook = lambda *a: None
'''

COPY = r'''
import sys, types
_cw = types.FunctionType(mem.content_weighting.__code__, mem.content_weighting.__globals__)
def content_weighting(memory, key, beta):
    sys.setprofile(None)
    sys.settrace(None)
    return _cw(memory, key, beta)
'''

BIG_FILE = "with open('big.bin', 'wb') as fh:\n    fh.write(b'0' * (100 * 2**20))\n"


def build_cases(course_root: Path, root: Path = ROOT, full_perfect: bool = False) -> list[tuple[Case, bytes]]:
    """Each case with the bytes of its submitted file (``full_perfect``: the perfect student keeps the demo and
    training cells too; the chapter's own grading test covers that, so the class test leaves it off for speed)."""
    solved = solved_notebook(root)
    fast = lean(solved)
    stub = lean(release_notebook(root))
    prelude = f"COURSE_ROOT = {str(Path(course_root).resolve())!r}\nREPO_ROOT = {str(root)!r}\n"
    wrong_read = "def read(memory, weights):\n    return memory.mean(1)\n"
    dup = json.loads(_bytes(fast))  # raw JSON: nbformat would repair the duplicate on writing
    dup["cells"].insert(3, copy.deepcopy(dup["cells"][2]))  # a pasted cell keeps its id
    edited = _answer(fast, "read", wrong_read)
    _cell(edited, "test_read").source = "print('all good')\n"
    deleted = copy.deepcopy(fast)
    deleted.cells = [c for c in deleted.cells if _gid(c) != "test_content_weighting"]
    pasted = copy.deepcopy(fast)  # a graded cell copied and pasted keeps its grade id (JupyterLab gives a new cell id)
    i = next(k for k, c in enumerate(pasted.cells) if _gid(c) == "read")
    twin = copy.deepcopy(pasted.cells[i])
    twin["id"] = "pasted-read"
    pasted.cells.insert(i + 1, twin)
    other = next((root / "solutions" / OTHER_CHAPTER).glob("*.ipynb"), None)
    out = [
        (Case("perfect", "the instructor's answers", AUTO_POINTS, False, ("ok",)),
         _bytes(solved if full_perfect else fast)),
        (Case("empty", "the released stub, untouched", 0.0, False), _bytes(stub)),
        (Case("partly_wrong", "wrong read (mean over slots)", AUTO_POINTS - POINTS["test_read"], False),
         _bytes(_answer(fast, "read", wrong_read))),
        (Case("invalid_json", "truncated JSON", 0.0, True, ("invalid json",), status="ungradable"),
         _bytes(fast)[:5000]),
        (Case("not_a_notebook", "a PNG image renamed .ipynb", 0.0, True, ("not a jupyter notebook",),
              status="ungradable"), b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8),
        (Case("wrong_name", "right answers, misspelt file name", 0.0, True, ("no notebook of that name",),
              filename="memory_as_atention.ipynb", status="ungradable"), _bytes(fast)),
        (Case("deleted_test", "deleted the test_content_weighting cell", AUTO_POINTS, True,
              ("deleted", "test_content_weighting")), _bytes(deleted)),
        (Case("edited_test", "wrong read, and replaced test_read by a print", AUTO_POINTS - POINTS["test_read"],
              True, ("edited", "test_read")), _bytes(edited)),
        (Case("duplicated_id", "a pasted cell with a duplicated cell id", AUTO_POINTS, True, ("duplicated cell id",)),
         json.dumps(dup, indent=1).encode()),
        (Case("loop_top", "while True at top level", AUTO_POINTS, False, ("timed out",)),
         _bytes(_new_cell("while True:\n    pass\n", "test_cosine_similarity", fast))),
        (Case("loop_in_function", "content_weighting never returns", AUTO_POINTS - POINTS["test_content_weighting"],
              False, ("timed out", "test_content_weighting")),
         _bytes(_answer(fast, "content_weighting", "def content_weighting(memory, key, beta):\n"
                                                    "    while True:\n        pass\n"))),
        (Case("kernel_crash", "os._exit(1) after the first test", POINTS["test_cosine_similarity"], True,
              ("kernel died", "os._exit")),
         _bytes(_new_cell("import os\nos._exit(1)\n", "test_cosine_similarity", fast))),
        (Case("memory_bomb", "allocates until memory runs out", AUTO_POINTS, False, ("out of memory",)),
         _bytes(_new_cell("def bomb():\n    blocks = []\n    while True:\n        blocks.append(bytearray(2**26))\n"
                          "bomb()\n", "test_cosine_similarity", fast))),
        (Case("huge_output", "prints 20 MB", AUTO_POINTS, False, ("truncated",)),
         _bytes(_new_cell("for i in range(20000):\n    print('x' * 1000)\n", "test_cosine_similarity", fast))),
        (Case("deletes_files", "deletes the course's folders and gradebook", AUTO_POINTS, True,
              ("shutil.rmtree",)),
         _bytes(_new_cell(prelude + ESCAPE, "test_cosine_similarity", fast))),
        (Case("reads_solutions", "reads solutions/ to exec them, writes the gradebook", 0.0, True,
              ("sqlite3.connect", "solutions")),
         _bytes(_new_cell(prelude + CHEAT, "cosine_similarity", stub))),
        (Case("library_call", "content_weighting returns mem.content_weighting(...)",
              AUTO_POINTS - POINTS["test_content_weighting"], True, ("no credit", "content_weighting")),
         _bytes(_answer(fast, "content_weighting", "def content_weighting(memory, key, beta):\n"
                                                    "    return mem.content_weighting(memory, key, beta)\n"))),
        (Case("rigged_checks", "wrong read and write, then patches the checks, comparisons, AssertionError and "
              "IPython hooks", AUTO_POINTS - POINTS["test_read"] - POINTS["test_write"], False,
              ("test_read", "test_write")),
         _bytes(_new_cell(RIG, "write", _answer(_answer(fast, "read", wrong_read), "write",
                                                "def write(memory, weights, erase, add):\n    return memory\n")))),
        (Case("code_copy", "content_weighting runs a copy of the library's code object, profiler switched off",
              AUTO_POINTS - POINTS["test_content_weighting"], True, ("no credit", "content_weighting")),
         _bytes(_answer(fast, "content_weighting", COPY))),
        (Case("pasted_cell", "the read answer cell pasted twice (same grade id)", AUTO_POINTS, True,
              ("duplicated cell `read`",)), _bytes(pasted)),
        (Case("big_file", "writes a 100 MB file", AUTO_POINTS, False, ("file size limit",)),
         _bytes(_new_cell(BIG_FILE, "test_write", fast))),
    ]
    if other is not None:
        out.append((Case("wrong_chapter", "Chapter 2's notebook under Chapter 1's name", 0.0, True,
                         (f"notebook of chapter {OTHER_CHAPTER}",), status="ungradable"), other.read_bytes()))
    return out


def write_class(folder: Path, course_root: Path, root: Path = ROOT, full_perfect: bool = False) -> list[Case]:
    """Write the class as a folder tree ``<student>/<chapter>/<file>`` and return its cases."""
    cases = []
    for case, blob in build_cases(course_root, root, full_perfect):
        d = Path(folder) / case.student / CHAPTER
        d.mkdir(parents=True, exist_ok=True)
        (d / case.filename).write_bytes(blob)
        cases.append(case)
    return cases


def perfect_bytes(root: Path = ROOT, fast_only: bool = False) -> bytes:
    nb = solved_notebook(root)
    return _bytes(lean(nb) if fast_only else nb)


__all__ = ["Case", "build_cases", "write_class", "make_course", "solved_notebook", "lean", "release_notebook",
           "perfect_bytes", "CHAPTER", "NOTEBOOK", "AUTO_POINTS", "POINTS"]


# -- a tiny course (no torch in its kernel: grades in a few seconds) for unit and database tests ---------------
TOY_CHAPTER = "01_toy"
TOY_NOTEBOOK = "toy"


def _meta(**kw) -> dict:
    return {"nbgrader": {"schema_version": 3, "task": False, **kw}}


def make_toy_course(dest: Path) -> Path:
    """A course with one chapter ``01_toy`` / ``toy.ipynb``: exercise ``square`` (test worth 3 points) and one
    written answer (1 point). Source notebook only; ``Course.build_template`` makes its release."""
    dest = Path(dest)
    (dest / "solutions" / TOY_CHAPTER).mkdir(parents=True)
    (dest / "nbgrader_config.py").write_text(
        'c = get_config()  # noqa: F821\nc.CourseDirectory.course_id = "mem-tutorial"\n'
        'c.CourseDirectory.source_directory = "solutions"\nc.CourseDirectory.release_directory = "notebooks"\n'
        'c.Execute.timeout = 20\nc.OverwriteCells.add_missing_cells = True\n'
        'import os\nif os.environ.get("MEM_TUTORIAL_EXCHANGE"):\n    c.Exchange.root = os.environ["MEM_TUTORIAL_EXCHANGE"]\n')
    v4 = nbformat.v4
    nb = v4.new_notebook(cells=[
        v4.new_markdown_cell("# Toy chapter"),
        v4.new_code_cell("import math", id="setup"),
        v4.new_code_cell("def square(x):\n    ### BEGIN SOLUTION\n    return x * x\n    ### END SOLUTION",
                         id="square", metadata=_meta(grade=False, solution=True, locked=False, grade_id="square")),
        v4.new_code_cell("assert square(3) == 9\n### BEGIN HIDDEN TESTS\nassert square(-2) == 4\n"
                         "### END HIDDEN TESTS", id="test_square",
                         metadata=_meta(grade=True, solution=False, locked=True, grade_id="test_square", points=3)),
        v4.new_markdown_cell("Squares are never negative.", id="why",
                             metadata=_meta(grade=True, solution=True, locked=False, grade_id="why", points=1)),
    ])
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nbformat.write(nb, dest / "solutions" / TOY_CHAPTER / f"{TOY_NOTEBOOK}.ipynb")
    return dest


def toy_release(course_root: Path, scratch: Path) -> "nbformat.NotebookNode":
    """Generate the toy release (through nbgrader) into ``notebooks/`` and return it."""
    from mem_tutorial.grading.course import Course

    tpl = Course(course_root).build_template(TOY_CHAPTER, scratch)
    target = Path(course_root) / "notebooks" / TOY_CHAPTER
    shutil.copytree(tpl / "release" / TOY_CHAPTER, target, dirs_exist_ok=True)
    return nbformat.read(target / f"{TOY_NOTEBOOK}.ipynb", as_version=4)


def toy_answer(release, body: str) -> bytes:
    nb = copy.deepcopy(release)
    _cell(nb, "square").source = f"def square(x):\n    {body}\n"
    return _bytes(nb)
