"""From one source of truth to the notebooks learners and graders see.

``solutions/<chapter>/<name>.py``  (jupytext percent file: reviewable in a diff, the only file edited by hand)
        │ build: convert, give cells stable ids, execute with MEM_TUTORIAL_FAST=1
        ▼
``solutions/<chapter>/<name>.ipynb``  (nbgrader *source* notebook with executed outputs, checked by nbval)
        │ release: nbgrader generate_assignment in a scratch course (solutions and hidden tests removed)
        ▼
``notebooks/<chapter>/<name>.ipynb``  (nbgrader *release*: the student copy)

There is no jupytext pairing: nothing ever writes back into a student copy.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Iterable

CHAPTERS = (
    "01_memory_as_attention",
    "02_ntm",
    "03_dnc",
    "04_memn2n",
    "05_kv_memnn",
    "06_memory_at_scale",
    "07_memory_for_language_models",
)

#: Per-cell execution timeout (seconds) when building solution notebooks in FAST mode.
BUILD_CELL_TIMEOUT = 600
_ID_OK = re.compile(r"[^a-zA-Z0-9_-]")


def repo_root(start: str | os.PathLike | None = None) -> Path:
    """The course root: the nearest folder above ``start`` (default: cwd) holding ``nbgrader_config.py``."""
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "nbgrader_config.py").is_file() and (folder / "solutions").is_dir():
            return folder
    raise FileNotFoundError(
        f"no course root (a folder with nbgrader_config.py and solutions/) at or above {here}; "
        "run this command inside the mem-tutorial repository"
    )


def available_chapters(root: Path) -> list[str]:
    """Chapters that have at least one jupytext source in ``solutions/<chapter>/``."""
    return [c for c in CHAPTERS if (root / "solutions" / c).is_dir() and sources(root, c)]


def resolve_chapters(root: Path, names: Iterable[str] | None) -> list[str]:
    """Map user input (``01``, ``ntm``, ``02_ntm``) to chapter folder names; all available ones when empty."""
    names = list(names or [])
    if not names:
        return available_chapters(root)
    out = []
    for name in names:
        matches = [c for c in CHAPTERS if c == name or c.split("_", 1)[0] == name or c.split("_", 1)[1] == name]
        if not matches:
            raise ValueError(f"unknown chapter {name!r}; chapters are: {', '.join(CHAPTERS)}")
        if matches[0] not in available_chapters(root):
            raise ValueError(f"chapter {matches[0]} has no notebook source in solutions/{matches[0]}/ yet")
        out.append(matches[0])
    return out


def sources(root: Path, chapter: str) -> list[Path]:
    """The jupytext sources of a chapter: ``solutions/<chapter>/*.py`` files that start with a jupytext header."""
    folder = root / "solutions" / chapter
    return sorted(p for p in folder.glob("*.py") if p.read_text(encoding="utf-8").startswith("# ---"))


def source_to_notebook(path: Path):
    """Read a jupytext percent file into a notebook with stable cell ids and no jupytext pairing metadata."""
    import jupytext
    import nbformat

    from mem_tutorial.publishing import expand_notebook

    path = Path(path)
    nb = jupytext.read(path)
    nb.metadata.pop("jupytext", None)
    # badges and the setup cell's install block come from [tool.mem-tutorial] in pyproject.toml
    expand_notebook(nb, path.parents[2], path.parent.name, path.stem)
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    seen: set[str] = set()
    for i, cell in enumerate(nb.cells):
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        cid = _ID_OK.sub("-", grade_id)[:64] if grade_id else f"cell-{i:03d}"
        while cid in seen:
            cid = f"{cid[:58]}-{i:03d}"
        seen.add(cid)
        cell["id"] = cid
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    nbformat.validate(nb)
    return nb


def execute_notebook(nb, cwd: Path, timeout: int = BUILD_CELL_TIMEOUT, env: dict | None = None):
    """Execute ``nb`` in ``cwd`` with MEM_TUTORIAL_FAST=1, without timing or widget-state metadata."""
    from nbclient import NotebookClient

    env_vars = {"MEM_TUTORIAL_FAST": "1", "MEM_TUTORIAL_DEVICE": "cpu", **(env or {})}
    saved = {k: os.environ.get(k) for k in env_vars}
    os.environ.update(env_vars)
    try:
        client = NotebookClient(
            nb,
            timeout=timeout,
            kernel_name="python3",
            resources={"metadata": {"path": str(cwd)}},
            record_timing=False,
            store_widget_state=True,  # needed by Output widgets; the (random-id) state is dropped below
        )
        client.execute()
        nb.metadata.pop("widgets", None)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb


def _write(nb, path: Path) -> None:
    import nbformat

    text = nbformat.writes(nb) + "\n"
    path.write_text(text, encoding="utf-8")


def build(root: Path, chapter: str, execute: bool = True, log=print) -> list[Path]:
    """Convert and (by default) execute every source of ``chapter`` into ``solutions/<chapter>/<name>.ipynb``."""
    out = []
    for src in sources(root, chapter):
        nb = source_to_notebook(src)
        if execute:
            log(f"executing {src.relative_to(root)} (MEM_TUTORIAL_FAST=1) ...")
            execute_notebook(nb, src.parent)
        dest = src.with_suffix(".ipynb")
        _write(nb, dest)
        log(f"wrote {dest.relative_to(root)}")
        out.append(dest)
    return out


def stale_solutions(root: Path, chapter: str) -> list[str]:
    """Solution notebooks whose cells (sources and metadata) no longer match their jupytext source."""
    import nbformat

    problems = []
    for src in sources(root, chapter):
        dest = src.with_suffix(".ipynb")
        if not dest.is_file():
            problems.append(f"{dest.relative_to(root)} is missing: run `mem-tutorial build {chapter}`")
            continue
        want = source_to_notebook(src)
        have = nbformat.read(dest, as_version=4)
        if _cell_signature(want) != _cell_signature(have):
            problems.append(f"{dest.relative_to(root)} does not match {src.name}: run `mem-tutorial build {chapter}`")
    return problems


def _cell_signature(nb) -> list:
    return [(c.get("id"), c.cell_type, c.source, json.dumps(c.get("metadata", {}), sort_keys=True)) for c in nb.cells]


def unexecuted_cells(nb) -> list[str]:
    """Ids of code cells without an execution count (nbval silently skips cells with no stored outputs)."""
    return [c.get("id", "?") for c in nb.cells if c.cell_type == "code" and c.source.strip() and c.execution_count is None]


def generate_release(root: Path, chapter: str, dest_root: Path, log=print) -> list[Path]:
    """Run nbgrader ``generate_assignment`` on ``solutions/<chapter>`` in a scratch course and copy the student
    notebooks (and any other released files) to ``dest_root/<chapter>/``.
    """
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Config

    with tempfile.TemporaryDirectory(prefix="mem-tutorial-release-") as tmp:
        scratch = Path(tmp)
        shutil.copytree(root / "solutions" / chapter, scratch / "source" / chapter,
                        ignore=shutil.ignore_patterns("*.py", "__pycache__", ".ipynb_checkpoints", "*.db"))
        cfg = Config()
        cfg.CourseDirectory.root = str(scratch)
        cfg.CourseDirectory.source_directory = "source"
        cfg.CourseDirectory.release_directory = "release"
        cfg.CourseDirectory.course_id = "mem-tutorial"
        cfg.CourseDirectory.db_url = f"sqlite:///{scratch / 'gradebook.db'}"
        from mem_tutorial.grading import stubs

        stubs.configure(cfg)  # stubs that name their exercise
        _ensure_alembic_on_path()
        api = NbGraderAPI(coursedir=CourseDirectory(config=cfg), config=cfg)
        result = api.generate_assignment(chapter, force=True)
        if not result.get("success"):
            raise RuntimeError(f"nbgrader generate_assignment failed for {chapter}:\n{result.get('error') or result.get('log')}")
        released = scratch / "release" / chapter
        target = dest_root / chapter
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(released, target)
        out = sorted(target.glob("*.ipynb"))
        for path in out:
            _normalise_release(path)
            log(f"wrote {path.relative_to(dest_root.parent) if dest_root.parent in path.parents else path}")
        return out


def _normalise_release(path: Path) -> None:
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    _write(nb, path)


def release(root: Path, chapter: str, log=print) -> list[Path]:
    """Rebuild ``notebooks/<chapter>/`` from the solution notebooks."""
    return generate_release(root, chapter, root / "notebooks", log=log)


def stale_release(root: Path, chapter: str) -> list[str]:
    """Differences between the committed ``notebooks/<chapter>`` and a fresh release."""
    import filecmp

    with tempfile.TemporaryDirectory(prefix="mem-tutorial-check-") as tmp:
        fresh = generate_release(root, chapter, Path(tmp), log=lambda *_: None)
        problems = []
        for path in fresh:
            committed = root / "notebooks" / chapter / path.name
            if not committed.is_file():
                problems.append(f"notebooks/{chapter}/{path.name} is missing: run `mem-tutorial release {chapter}`")
            elif not filecmp.cmp(path, committed, shallow=False):
                problems.append(f"notebooks/{chapter}/{path.name} is stale: run `mem-tutorial release {chapter}`")
        return problems


def _ensure_alembic_on_path() -> None:
    """nbgrader runs the ``alembic`` executable from PATH: put this interpreter's bin folder first."""
    bindir = str(Path(sys.executable).parent)
    parts = os.environ.get("PATH", "").split(os.pathsep)
    if bindir not in parts:
        os.environ["PATH"] = os.pathsep.join([bindir, *parts])


def strip_for_diff(nb):
    """A copy of ``nb`` without outputs (for comparisons)."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nb
