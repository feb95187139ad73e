"""Checks used inside the notebooks' graded test cells (visible asserts and hidden tests).

They raise ``AssertionError`` with a message written for the learner: what was wrong, not just that it was.
Nothing here imports a model: the checks compare tensors and inspect functions.
"""

from __future__ import annotations

import ast
import inspect
import sys
import textwrap
from typing import Any, Callable, Iterable

import torch


def as_float64(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Detached float64 copies (references are computed in float64)."""
    return tuple(t.detach().to(torch.float64) for t in tensors)


def assert_close(actual: Any, expected: torch.Tensor, what: str, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    """Assert that ``actual`` is a tensor with ``expected``'s shape and values (to tolerance).

    The message names ``what`` and says whether the shape, NaNs or values differ, and where the largest
    difference is.
    """
    if not isinstance(actual, torch.Tensor):
        raise AssertionError(f"{what}: expected a torch.Tensor, got {type(actual).__name__}")
    if tuple(actual.shape) != tuple(expected.shape):
        raise AssertionError(f"{what}: expected shape {list(expected.shape)}, got {list(actual.shape)}")
    a = actual.detach().to(torch.float64).cpu()
    e = expected.detach().to(torch.float64).cpu()
    if torch.isnan(a).any():
        raise AssertionError(f"{what}: result contains NaN")
    if not torch.allclose(a, e, rtol=rtol, atol=atol):
        diff = (a - e).abs()
        idx = tuple(int(i) for i in torch.nonzero(diff == diff.max())[0])
        raise AssertionError(
            f"{what}: values differ from the reference (largest difference {diff.max().item():.3g} at index "
            f"{list(idx)}: got {a[idx].item():.6g}, expected {e[idx].item():.6g})"
        )


def assert_distribution(weights: torch.Tensor, what: str, dim: int = -1, atol: float = 1e-5) -> None:
    """Assert non-negative entries that sum to 1 along ``dim``."""
    if (weights < -atol).any():
        raise AssertionError(f"{what}: has negative entries")
    total = weights.sum(dim)
    if not torch.allclose(total, torch.ones_like(total), atol=atol):
        raise AssertionError(f"{what}: does not sum to 1 along dim {dim} (sums: {total.flatten()[:4].tolist()} ...)")


def _code_objects(fn: Callable) -> set:
    code = getattr(fn, "__code__", None)
    return {code} if code is not None else set()


def calls_function(fn: Callable, targets: Iterable[Callable], *args: Any, **kwargs: Any) -> tuple[bool, Any]:
    """Run ``fn(*args, **kwargs)`` and report whether any of ``targets`` was called during it, however it was
    imported or renamed (the check follows code objects, not names). Returns ``(called, result)``.
    """
    codes = set().union(*(_code_objects(t) for t in targets))
    seen = False

    def profiler(frame, event, arg):  # noqa: ARG001
        nonlocal seen
        if event == "call" and frame.f_code in codes:
            seen = True

    previous = sys.getprofile()
    sys.setprofile(profiler)
    try:
        result = fn(*args, **kwargs)
    finally:
        sys.setprofile(previous)
    return seen, result


def _referenced_names(fn: Callable) -> set[str]:
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError):
        return set()
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.alias):
            names.add(node.name.split(".")[-1])
            if node.asname:
                names.add(node.asname)
    return names


def assert_own_work(student_fn: Callable, library_fns: Callable | Iterable[Callable], *args: Any, **kwargs: Any) -> Any:
    """Fail when the learner's function is, or merely calls, the library's implementation of the same mechanism.

    Two checks: at run time (the library function's code must not run while ``student_fn(*args)`` runs, however
    it was imported), and in the source (the body must not mention ``mem_tutorial``). Returns the result of
    ``student_fn(*args, **kwargs)``.
    """
    targets = [library_fns] if callable(library_fns) else list(library_fns)
    name = getattr(student_fn, "__name__", "your function")
    if getattr(student_fn, "__mt_remote__", False):
        # graded: the student's function runs in its answer process, where the library's implementations of this
        # mechanism (``targets`` and the private helpers behind them) were removed before any student code ran
        # (mem_tutorial.grading.guard); reaching them raises there, and the grader reports it as "no credit"
        from mem_tutorial.grading.verdict import RemoteError

        try:
            return student_fn(*args, **kwargs)
        except RemoteError as exc:
            if exc.no_credit:
                raise AssertionError(f"no credit for {name}: {exc.remote_message}") from None
            raise
    for target in targets:
        if student_fn is target or getattr(student_fn, "__code__", None) is getattr(target, "__code__", 0):
            raise AssertionError(
                f"{name} is the library's own {target.__module__}.{target.__name__}: write your own implementation "
                "to earn these points (no credit for calling the reference)."
            )
    if "mem_tutorial" in _referenced_names(student_fn):
        raise AssertionError(
            f"{name} uses mem_tutorial inside its body: write the mechanism yourself from the equations "
            "to earn these points (no credit for calling the library)."
        )
    called, result = calls_function(student_fn, targets, *args, **kwargs)
    if called:
        lib = ", ".join(f"{t.__module__}.{t.__name__}" for t in targets)
        raise AssertionError(
            f"{name} calls the library's reference implementation ({lib}): write your own to earn these points."
        )
    return result
