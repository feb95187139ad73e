"""Exercise stubs that say which exercise to write.

nbgrader's ``ClearSolutions`` replaces every ``### BEGIN SOLUTION`` … ``### END SOLUTION`` region with one fixed
stub (``raise NotImplementedError()``). :class:`NamedStubs` does the same, then names the exercise in the stub of
each function::

    raise NotImplementedError("Exercise 1.2: write content_weighting(...) — see the instructions above")

The exercise number comes from the notebook itself: the first graded test cell after the function's cell that
calls the function and opens ``with exercise("1.2", ...)`` (:mod:`mem_tutorial.grading.selfcheck`). Every place
that runs ``generate_assignment`` (release, the grader's gradebook template, the tests' scratch courses, the
``nbgrader`` command through ``nbgrader_config.py``) uses :func:`configure`, so the checksums nbgrader stores for
solution cells match what learners were given.
"""

from __future__ import annotations

import re

from nbgrader import utils
from nbgrader.converters.generate_assignment import GenerateAssignment
from nbgrader.preprocessors import ClearSolutions

from mem_tutorial.grading.selfcheck import stub_message

_DEF = re.compile(r"^\s*(?:async\s+)?(?:def|class)\s+([A-Za-z_]\w*)")
_LABEL = re.compile(r"""exercise\(\s*["']([0-9]+(?:\.[0-9]+)*)["']""")
BARE_STUB = "raise NotImplementedError()"


def exercise_labels(cells) -> dict[str, str]:
    """``{function name: exercise label}`` for the functions defined in the solution cells of ``cells``."""
    labels: dict[str, str] = {}
    for i, cell in enumerate(cells):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.get("cell_type") != "code" or not meta.get("solution"):
            continue
        names = [m.group(1) for line in cell.source.splitlines() if (m := _DEF.match(line))]
        for name in names:
            call = re.compile(rf"\b{re.escape(name)}\s*\(")
            for later in cells[i + 1:]:
                lmeta = later.get("metadata", {}).get("nbgrader", {})
                if later.get("cell_type") != "code" or not lmeta.get("grade") or lmeta.get("solution"):
                    continue
                visible = later.source.split("### BEGIN HIDDEN TESTS")[0]
                label = _LABEL.search(visible)
                if label and call.search(visible):
                    labels[name] = label.group(1)
                    break
    return labels


def name_stubs(source: str, labels: dict[str, str]) -> str:
    """Replace each bare stub line of ``source`` by one that names its function and exercise."""
    out, current = [], None
    for line in source.split("\n"):
        m = _DEF.match(line)
        if m:
            current = m.group(1)
        if line.strip() == BARE_STUB and current:
            indent = line[: len(line) - len(line.lstrip())]
            label = labels.get(current)
            text = stub_message(label, current) if label else f"write {current}(...) — see the instructions above"
            line = f"{indent}raise NotImplementedError({text!r})"
        out.append(line)
    return "\n".join(out)


class NamedStubs(ClearSolutions):
    """``ClearSolutions`` whose code stubs name the exercise (see the module docstring)."""

    def preprocess(self, nb, resources):
        self._labels = exercise_labels(nb.cells)
        return super().preprocess(nb, resources)

    def preprocess_cell(self, cell, resources, cell_index):
        cell, resources = super().preprocess_cell(cell, resources, cell_index)
        if cell.cell_type == "code" and utils.is_solution(cell):
            cell.source = name_stubs(cell.source, getattr(self, "_labels", {}))
        return cell, resources


def preprocessors() -> list:
    """nbgrader's ``GenerateAssignment`` preprocessors with ``ClearSolutions`` replaced by :class:`NamedStubs`."""
    default = GenerateAssignment.class_traits()["preprocessors"].default()
    return [NamedStubs if p is ClearSolutions else p for p in default]


def configure(cfg) -> None:
    """Make ``generate_assignment`` under the traitlets config ``cfg`` write named stubs."""
    cfg.GenerateAssignment.preprocessors = preprocessors()
