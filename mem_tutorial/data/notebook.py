"""Data sets in notebooks: look once, explain once, skip the sections that need what is missing.

A chapter's setup cell calls :func:`require_babi` (or :func:`require` for another data set). It finds the data —
an explicit folder, the environment variable, the user cache, else one checksummed download where there is a
network — and returns its folder. When it cannot, it prints **one** explanation with notebook-ready instructions
(``%env MEM_TUTORIAL_BABI_DIR=...`` or ``os.environ[...]``, or a download cell) and returns ``None``. From then on,
in an IPython kernel, every cell whose leading comment lines contain the marker ::

    # needs-data: babi | 1. The bAbI tasks

is not run. The first skipped cell of each section (the text after ``|``) prints one line saying so; the others of
that section print nothing; no skipped cell waits on a download. Running the setup cell again once the data is
there (after ``%env ...``) turns the skipping off. Where the data is present, nothing is registered and the marker
is an ordinary comment: nbval, nbgrader and the solution notebooks run every cell as before.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

#: Leading comment line that marks a cell as needing a data set, with an optional section name after ``|``.
MARKER = re.compile(r"^#\s*needs-data:\s*(?P<name>[\w.-]+)\s*(?:\|\s*(?P<section>.*?))?\s*$")
_MISSING: dict[str, str] = {}  # data set -> its display name, for the data sets found missing
# (data set, section) -> the cell that reported it skipped (IPython may transform one cell more than once)
_ANNOUNCED: dict[tuple[str, str], str] = {}


def _marked(lines: list[str]) -> tuple[str, str] | None:
    """``(data set, section)`` when the cell's leading comment lines carry the marker, else None."""
    for line in lines:
        text = line.strip()
        if not text:
            continue
        if not text.startswith("#"):
            return None
        match = MARKER.match(text)
        if match:
            return match.group("name").lower(), (match.group("section") or "").strip()
    return None


def skip_transformer(lines: list[str]) -> list[str]:
    """IPython input transformer: a marked cell whose data set is missing becomes a one-line note (or nothing)."""
    marked = _marked(lines)
    if marked is None or marked[0] not in _MISSING:
        return lines
    name, section = marked
    text = "".join(lines)
    if _ANNOUNCED.setdefault((name, section), text) != text:
        return ["pass\n"]
    what = f"Section {section}" if section else "This cell"
    note = f"\u23ed {what} skipped: it needs the {_MISSING[name]} data (see the setup cell)."
    return [f"print({note!r})\n"]


def _install_skipper() -> bool:
    """Register :func:`skip_transformer` in the running IPython shell (once). False outside IPython."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None:
        return False
    transformers = shell.input_transformers_cleanup
    if not any(getattr(t, "__name__", "") == "skip_transformer" for t in transformers):
        transformers.append(skip_transformer)
    return True


def mark_missing(name: str, display: str) -> None:
    """Record that data set ``name`` is missing: marked cells are skipped from now on (in IPython)."""
    _MISSING[name.lower()] = display
    for key in [k for k in _ANNOUNCED if k[0] == name.lower()]:
        del _ANNOUNCED[key]
    _install_skipper()


def mark_present(name: str) -> None:
    """Record that data set ``name`` is available: its marked cells run again."""
    _MISSING.pop(name.lower(), None)


def require(name: str, display: str, locate: Callable[[], Path], explain: Callable[[Exception], str],
            missing: tuple[type[BaseException], ...]) -> Path | None:
    """Find a data set once for a notebook. Returns its folder, or None after printing one explanation (and the
    marked cells of that data set are then skipped)."""
    from mem_tutorial.data import download

    download.forget_failures()  # running the setup cell again tries again
    try:
        folder = locate()
    except missing as exc:
        mark_missing(name, display)
        print(explain(exc))
        return None
    mark_present(name)
    return folder


def require_babi(data_dir=None, download: bool = True) -> Path | None:
    """The bAbI folder for a notebook (``babi.babi_dir``, downloading once if needed), or None, explained once."""
    from mem_tutorial.data import babi

    def explain(exc: Exception) -> str:
        detail = str(exc).split("To get the bAbI data", 1)[0].strip().split("\n", 1)[0]
        return (
            f"The bAbI data is not available here, so the sections that need it will be skipped (the rest of the "
            f"notebook runs).\nWhy: {detail}\n\n{babi.how_to_get_babi()}\n\n"
            f"Or, where there is a network, download it into the course cache from a cell:\n"
            f"    from mem_tutorial.data import babi; babi.download_babi()\n"
            f"then run the setup cell again."
        )

    found = require("babi", "bAbI", lambda: babi.babi_dir(data_dir, download=download), explain,
                    (babi.BabiDataMissing,))
    if found is not None:
        print("bAbI from:", found)
    return found
