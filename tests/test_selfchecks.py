"""Do the *visible* self-checks catch the common wrong answers that the hidden tests catch? (issue #14)

For every graded test cell of every chapter, the catalogue ``tests/wrong_answers.py`` holds common wrong answers
(code that redefines the exercise's function(s)). Each one runs against the test cell taken from the chapter's
jupytext source ``solutions/<chapter>/<name>.py``, without executing the notebook:

* *visible*: the cell's visible part, with ``MEM_TUTORIAL_SELFCHECK=raise`` (the grader's mode); caught when it
  raises;
* *hidden*: the visible part in ``report`` mode (output discarded), then the hidden tests; caught when they raise.

The namespace holds the notebook's imports and its correct solutions, then the wrong answer. The correct
solutions must pass both parts (a control). Goal: the visible checks catch at least 90 % of what the hidden tests
catch, in every chapter. Run with ``-s`` to see the table.
"""

from __future__ import annotations

import ast
import contextlib
import io
import os
from pathlib import Path

import pytest
import torch

from wrong_answers import WRONG_ANSWERS

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted(WRONG_ANSWERS)
HIDDEN = "### BEGIN HIDDEN TESTS"
TARGET = 0.9
"""Fraction of the wrong answers caught by the hidden tests that the visible checks must catch too."""
MIN_PER_EXERCISE = 3


def _nbg(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def _imports(source: str) -> list[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    return [ast.unparse(n) for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]


def load_chapter(chapter: str):
    """(base namespace with the notebook's imports and correct solutions, {grade_id: (visible, hidden)})."""
    from mem_tutorial.grading.release import source_to_notebook, sources

    (path,) = sources(ROOT, chapter)  # the jupytext source (the committed notebook is checked against it elsewhere)
    nb = source_to_notebook(path)
    ns: dict = {"__name__": "__main__"}
    with contextlib.redirect_stdout(io.StringIO()):
        for cell in nb.cells:
            if cell.cell_type == "code" and not _nbg(cell).get("grade") and not _nbg(cell).get("solution"):
                for stmt in _imports(cell.source):
                    exec(compile(stmt, "<imports>", "exec"), ns)  # noqa: S102
        for cell in nb.cells:
            if cell.cell_type == "code" and _nbg(cell).get("solution"):
                exec(compile(cell.source, f"<solution {_nbg(cell)['grade_id']}>", "exec"), ns)  # noqa: S102
    tests = {}
    for cell in nb.cells:
        meta = _nbg(cell)
        if cell.cell_type == "code" and meta.get("grade") and not meta.get("solution"):
            visible, _, hidden = cell.source.partition(HIDDEN)
            tests[meta["grade_id"]] = (visible, hidden)
    return ns, tests


@contextlib.contextmanager
def _selfcheck(mode: str):
    old = os.environ.get("MEM_TUTORIAL_SELFCHECK")
    os.environ["MEM_TUTORIAL_SELFCHECK"] = mode
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MEM_TUTORIAL_SELFCHECK", None)
        else:
            os.environ["MEM_TUTORIAL_SELFCHECK"] = old


def _raises(code: str, ns: dict, name: str) -> str | None:
    """None when ``code`` runs, else the exception's first line."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(code, name, "exec"), ns)  # noqa: S102
    except Exception as exc:  # noqa: BLE001 (any failure counts as caught)
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


def judge(base: dict, visible: str, hidden: str, answer: str | None) -> tuple[str | None, str | None]:
    """(visible failure, hidden failure) for ``answer`` (None: the correct solution)."""
    torch.manual_seed(0)
    ns = dict(base)
    if answer:
        exec(compile(answer, "<wrong answer>", "exec"), ns)  # noqa: S102
    with _selfcheck("raise"):
        seen = _raises(visible, dict(ns), "<visible>")
    ns2 = dict(ns)
    with _selfcheck("report"):
        _raises(visible, ns2, "<visible, report>")
    with _selfcheck("raise"):
        hid = _raises(hidden, ns2, "<hidden>")
    return seen, hid


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_visible_checks_catch_common_mistakes(chapter, capsys):
    torch.set_num_threads(1)
    base, tests = load_chapter(chapter)
    catalogue = WRONG_ANSWERS[chapter]
    assert set(catalogue) == set(tests), f"{chapter}: catalogue and graded cells differ: {set(catalogue) ^ set(tests)}"
    rows, missed, controls = [], [], []
    for gid, (visible, hidden) in tests.items():
        seen, hid = judge(base, visible, hidden, None)
        if seen or hid:
            controls.append(f"{gid}: the correct solution fails ({seen or hid})")
        assert len(catalogue[gid]) >= MIN_PER_EXERCISE, f"{gid}: fewer than {MIN_PER_EXERCISE} wrong answers"
        for name, code in catalogue[gid]:
            seen, hid = judge(base, visible, hidden, code)
            rows.append((gid, name, seen is not None, hid is not None))
            if hid and not seen:
                missed.append(f"{gid} / {name}: hidden tests fail ({hid}), visible checks pass")
    n = len(rows)
    by_hidden = sum(1 for r in rows if r[3])
    by_visible = sum(1 for r in rows if r[2])
    both = sum(1 for r in rows if r[2] and r[3])
    with capsys.disabled():
        print(f"\n{chapter}: {n} wrong answers, caught by hidden {by_hidden}, caught by visible {by_visible} "
              f"(visible among hidden-caught: {both}/{by_hidden})")
        for line in missed:
            print("   missed by visible:", line)
        for gid, name, v, h in rows:
            if not h:
                print(f"   not caught by the hidden tests: {gid} / {name} (visible: {'caught' if v else 'passed'})")
    assert not controls, "\n".join(controls)
    assert by_hidden and both >= TARGET * by_hidden, "\n".join(missed)


# -- the self-check helpers themselves ---------------------------------------------------------------------------
def test_exercise_reports_or_raises(monkeypatch, capsys):
    from mem_tutorial.grading.selfcheck import exercise

    monkeypatch.delenv("MEM_TUTORIAL_SELFCHECK", raising=False)  # a learner's default: report and carry on
    with exercise("9.1", "f"):
        raise NotImplementedError("Exercise 9.1: write f(...) — see the instructions above")
    out = capsys.readouterr().out
    assert "✗ Exercise 9.1 f not passed yet: not answered yet — Exercise 9.1: write f(...)" in out
    with exercise("9.1", "f"):
        pass
    assert "✓ Exercise 9.1 f: visible checks passed" in capsys.readouterr().out
    with pytest.raises(KeyboardInterrupt), exercise("9.1", "f"):
        raise KeyboardInterrupt  # never swallowed
    monkeypatch.setenv("NBGRADER_EXECUTION", "validate")  # nbgrader's Validate button: raise, not "passes"
    with pytest.raises(AssertionError, match="boom"), exercise("9.1", "f"):
        raise AssertionError("boom")
    monkeypatch.delenv("NBGRADER_EXECUTION")
    monkeypatch.setenv("MEM_TUTORIAL_SELFCHECK", "raise")  # the grader, CI, nbval
    with pytest.raises(AssertionError, match="boom"), exercise("9.1", "f"):
        raise AssertionError("boom")
    assert "not passed yet" not in capsys.readouterr().out


def test_expect_close_shows_expected_received_and_diagnosis():
    from mem_tutorial.grading.selfcheck import expect_close, expect_equal

    expected = torch.tensor([[0.25, 0.75], [0.5, 0.5]])
    swapped = torch.tensor([[0.75, 0.25], [0.5, 0.5]])
    expect_close(expected.to(torch.float64) + 1e-6, expected, "w")  # within tolerance: passes
    with pytest.raises(AssertionError) as info:
        expect_close(swapped, expected, "w", mistakes=[(torch.ones(2, 2), "no"), (swapped, "roles swapped")])
    text = str(info.value)
    assert "expected: [[0.25, 0.75], [0.5, 0.5]]" in text and "received: [[0.75, 0.25], [0.5, 0.5]]" in text
    assert "likely cause: roles swapped" in text and "likely cause: no" not in text
    with pytest.raises(AssertionError, match=r"expected shape \[2, 2\], got \[2\]"):
        expect_close(torch.zeros(2), expected, "w", hint="sum over the slots")
    with pytest.raises(AssertionError, match="did you forget to return"):
        expect_close(None, expected, "w")
    with pytest.raises(AssertionError, match="likely cause: sorted"):
        expect_equal([4, 0], [0, 4], "ids", mistakes=[([4, 0], "sorted")])


def test_generated_checks_are_up_to_date():
    """The visible checks of chapters 1-5 and their table of known mistakes are what the generator writes."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("selfcheck_specs", ROOT / "benchmarks" / "selfcheck_specs.py")
    specs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(specs)
    table = specs._read_table()
    stale = [c for c in specs.SPECS if specs.rewrite(c, table, check=True)]
    assert not stale, f"run `python benchmarks/selfcheck_specs.py`: stale {stale}"
    assert specs.MISTAKES_MODULE.read_text(encoding="utf-8") == specs._write_table(table)
