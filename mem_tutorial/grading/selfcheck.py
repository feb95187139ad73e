"""Visible self-checks that report instead of stopping Run All, and messages that teach.

A graded test cell of a notebook wraps its *visible* checks in :func:`exercise`::

    from mem_tutorial.grading.selfcheck import exercise, expect_close

    with exercise("1.2", "content_weighting"):
        w = content_weighting(M, k, beta)
        expect_close(w, expected, "content_weighting(M, k, beta)",
                     mistakes=[(softmax_over_batch, "you normalised over the batch, not over the slots")])

What happens when a check fails depends on ``MEM_TUTORIAL_SELFCHECK``:

* ``report`` (the default, what a learner gets in JupyterLab, Notebook 7 or Colab): the cell prints
  ``✗ Exercise 1.2 content_weighting not passed yet: <why>`` and does not raise, so *Run All* goes on to the end
  of the notebook (Colab stops Run All at the first exception and ignores cell tags);
* ``raise`` (the grader's trusted runner sets it, see :mod:`mem_tutorial.grading.verdict`; CI and nbval set it
  in the root ``conftest.py``): the exception propagates, so the test fails and the exercise gets 0.

Hidden tests stay outside the ``with`` block: they always raise. They are absent from a learner's copy.

The ``expect_*`` helpers compare with a small fixed example and, on failure, show the expected and the received
values (compact, rounded) and, when the received value equals the result of a known common mistake, a one-line
diagnosis. They take and return plain data only (tensors, numbers, lists), so they work in the grader's trusted
process too. They never print a formula, only values of the visible example.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Sequence

import torch

MODE_VARIABLE = "MEM_TUTORIAL_SELFCHECK"
MODES = ("report", "raise")
DEFAULT_MODE = "report"
REPORT_ATOL = 1e-4
"""Default absolute tolerance of :func:`expect_close` (visible examples are float32, given to 4 decimals)."""
REPORT_RTOL = 1e-4
"""Default relative tolerance of :func:`expect_close`."""
SHOW_DECIMALS = 4
SHOW_CHARS = 240
"""Longest rendering of one tensor in a message."""


def mode() -> str:
    """``"raise"`` or ``"report"``, from ``MEM_TUTORIAL_SELFCHECK`` (unset or unknown: ``"report"``)."""
    value = os.environ.get(MODE_VARIABLE, DEFAULT_MODE).strip().lower()
    return value if value in MODES else DEFAULT_MODE


def stub_message(label: str, name: str) -> str:
    """The text of the ``NotImplementedError`` an unanswered exercise raises (nbgrader's stub, see
    :mod:`mem_tutorial.grading.stubs`)."""
    return f"Exercise {label}: write {name}(...) — see the instructions above"


class exercise:  # noqa: N801 (used as a context manager, reads like a statement)
    """Context manager around the visible checks of exercise ``label`` (e.g. ``"1.2"``) about ``name``.

    On success prints ``✓ Exercise 1.2 content_weighting: visible checks passed``. On an ``Exception`` inside the
    block: in ``report`` mode prints ``✗ Exercise 1.2 content_weighting not passed yet: <message>`` and swallows
    it; in ``raise`` mode lets it propagate. ``KeyboardInterrupt`` and ``SystemExit`` always propagate.
    """

    def __init__(self, label: str, name: str = ""):
        self.label, self.name = str(label), str(name)
        self.passed: bool | None = None

    @property
    def title(self) -> str:
        return f"Exercise {self.label} {self.name}".rstrip()

    def __enter__(self) -> "exercise":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.passed = True
            print(f"✓ {self.title}: visible checks passed")
            return False
        self.passed = False
        if mode() == "raise" or not issubclass(exc_type, Exception):
            return False
        print(f"✗ {self.title} not passed yet: {describe(exc)}")
        print("  (The notebook goes on with the library's version; fix your answer, then run the exercise cell "
              "and this cell again.)")
        return True


def describe(exc: BaseException) -> str:
    """A one-paragraph account of why a visible check failed."""
    text = str(exc).strip()
    if isinstance(exc, NotImplementedError):
        return f"not answered yet — {text}" if text else "not answered yet (NotImplementedError)"
    if isinstance(exc, AssertionError):
        return text or "a check failed"
    name = type(exc).__name__
    return f"your code raised {name}: {text}" if text else f"your code raised {name}"


# -- comparing with messages that teach --------------------------------------------------------------------------
def show(value: Any, decimals: int = SHOW_DECIMALS, limit: int = SHOW_CHARS) -> str:
    """A compact, rounded rendering of a tensor (or anything else) for a message."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu()
        if t.is_floating_point():
            t = t.to(torch.float64).round(decimals=decimals)
            t = t + 0.0  # no "-0.0"
            data = t.tolist()
        else:
            data = t.tolist()
        text = str(data)
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + " ...]"


def _as_float(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().to(torch.float64)
    return None


def _matches(actual: torch.Tensor, candidate: Any, rtol: float, atol: float) -> bool:
    cand = candidate if isinstance(candidate, torch.Tensor) else torch.as_tensor(candidate)
    cand = cand.detach().cpu().to(torch.float64)
    if tuple(cand.shape) != tuple(actual.shape):
        return False
    finite = torch.isfinite(actual) & torch.isfinite(cand)
    same_nonfinite = (actual.isnan() & cand.isnan()) | (actual == cand)
    ok = torch.where(finite, torch.isclose(actual, cand, rtol=rtol, atol=atol), same_nonfinite)
    return bool(ok.all())


def diagnose(actual: Any, mistakes: Iterable[tuple[Any, str]] | None, rtol: float = REPORT_RTOL,
             atol: float = REPORT_ATOL) -> str | None:
    """The diagnosis of the first known mistake whose result ``actual`` equals, if any."""
    a = _as_float(actual)
    if a is None:
        return None
    for candidate, why in mistakes or ():
        try:
            if _matches(a, candidate, rtol, atol):
                return why
        except (TypeError, ValueError, RuntimeError):
            continue
    return None


def expect_close(actual: Any, expected: Any, what: str, *, rtol: float = REPORT_RTOL, atol: float = REPORT_ATOL,
                 mistakes: Sequence[tuple[Any, str]] | None = None, hint: str = "") -> None:
    """Assert that ``actual`` is a tensor equal to ``expected`` (shape and values, to tolerance).

    On failure the ``AssertionError`` shows expected and received (rounded), the shape if it differs, NaNs, and
    the diagnosis of the first entry of ``mistakes`` — ``(value a known mistake gives, one-line diagnosis)`` —
    that ``actual`` matches; else ``hint`` if given.
    """
    exp = torch.as_tensor(expected).detach().cpu().to(torch.float64)
    if actual is None:
        raise AssertionError(f"{what}: got None — did you forget to return the result?")
    if isinstance(actual, (tuple, list)) and not isinstance(expected, (tuple, list)):
        raise AssertionError(f"{what}: expected one tensor, got a {type(actual).__name__} of {len(actual)} items")
    if not isinstance(actual, torch.Tensor):
        raise AssertionError(f"{what}: expected a torch.Tensor, got {type(actual).__name__}")
    a = actual.detach().cpu().to(torch.float64)
    lines = []
    why = diagnose(actual, mistakes, rtol, atol)
    if tuple(a.shape) != tuple(exp.shape):
        lines.append(f"{what}: expected shape {list(exp.shape)}, got {list(a.shape)}")
    elif torch.isnan(a).any() and not torch.isnan(exp).any():
        lines.append(f"{what}: the result contains NaN")
    elif _matches(a, exp, rtol, atol):
        return
    else:
        lines.append(f"{what}: wrong values")
    lines.append(f"    expected: {show(exp)}")
    lines.append(f"    received: {show(a)}")
    if why:
        lines.append(f"    likely cause: {why}")
    elif hint:
        lines.append(f"    hint: {hint}")
    raise AssertionError("\n".join(lines))


def expect_equal(actual: Any, expected: Any, what: str, *,
                 mistakes: Sequence[tuple[Any, str]] | None = None, hint: str = "") -> None:
    """Assert ``actual == expected`` for plain values (lists, dicts, ints; tensors compared exactly, as lists).

    On failure shows expected and received and the diagnosis of the first matching known mistake (else ``hint``).
    """
    def plain(v: Any) -> Any:
        if isinstance(v, torch.Tensor):
            return v.detach().cpu().tolist()
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    got, want = plain(actual), plain(expected)
    if got == want:
        return
    lines = [f"{what}: wrong result" if actual is not None else f"{what}: got None — did you forget to return?",
             f"    expected: {show(want)}", f"    received: {show(got)}"]
    for candidate, why in mistakes or ():
        if plain(candidate) == got:
            lines.append(f"    likely cause: {why}")
            break
    else:
        if hint:
            lines.append(f"    hint: {hint}")
    raise AssertionError("\n".join(lines))


def expect(condition: Any, message: str) -> None:
    """``assert condition, message`` that also works when Python runs with ``-O``."""
    if not bool(condition):
        raise AssertionError(message)


def known_mistakes(test_id: str, variable: str) -> list[tuple[torch.Tensor, str]]:
    """``(value, diagnosis)`` of the common mistakes recorded for the visible example of test cell ``test_id``
    (see :mod:`mem_tutorial.grading.selfcheck_mistakes`), for :func:`expect_close`'s ``mistakes``."""
    from mem_tutorial.grading.selfcheck_mistakes import MISTAKES

    return [(torch.tensor(value, dtype=torch.float64), why) for value, why in MISTAKES.get(f"{test_id}:{variable}", [])]
