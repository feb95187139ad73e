"""The course's training loop, loss history and checkpoints.

The loop is deliberately small: a chapter writes a ``step(i) -> loss`` function that does one optimisation
step (forward, backward, clip, update) and :func:`train` runs it with a ``tqdm.auto`` progress bar, records
the history and, in Jupyter, redraws a loss plot as it goes (silent when headless).
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from tqdm.auto import tqdm

import mem_tutorial


@dataclass
class History:
    """Metrics recorded during training: ``steps[i]`` is the step at which ``metrics[name][i]`` was logged."""

    steps: list[int] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=dict)

    def log(self, step: int, **values: float) -> None:
        self.steps.append(step)
        for name, value in values.items():
            self.metrics.setdefault(name, []).append(float(value))

    def __getitem__(self, name: str) -> list[float]:
        return self.metrics[name]

    def last(self, name: str = "loss") -> float:
        return self.metrics[name][-1]

    def smoothed(self, name: str = "loss", window: int = 50) -> list[float]:
        """Running mean over the last ``window`` logged values."""
        values, out, total = self.metrics[name], [], 0.0
        for i, v in enumerate(values):
            total += v
            if i >= window:
                total -= values[i - window]
            out.append(total / min(i + 1, window))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"steps": list(self.steps), "metrics": {k: list(v) for k, v in self.metrics.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "History":
        return cls(steps=list(data["steps"]), metrics={k: list(v) for k, v in data["metrics"].items()})


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where live plots can be shown), False in a terminal or under pytest."""
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    ip = shell.get_ipython()
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


class LivePlot:
    """A loss plot redrawn in place in Jupyter; does nothing headless."""

    def __init__(self, names: tuple[str, ...] = ("loss",), title: str = "training", enabled: bool | None = None):
        self.enabled = in_notebook() if enabled is None else enabled
        self.names, self.title = names, title
        self._handle = None
        self._fig = None

    def update(self, history: History, final: bool = False) -> None:
        if not self.enabled:
            return
        import matplotlib.pyplot as plt
        from IPython.display import display

        from mem_tutorial.viz.plots import plot_history

        if self._fig is None:
            self._fig, self._ax = plt.subplots(figsize=(6, 3))
            plt.close(self._fig)  # shown through the display handle only
        self._ax.clear()
        plot_history(history, names=self.names, ax=self._ax, title=self.title)
        if self._handle is None:
            self._handle = display(self._fig, display_id=True)
        else:
            self._handle.update(self._fig)


def train(
    step: Callable[[int], Any],
    steps: int,
    *,
    log_every: int = 1,
    plot_every: int | None = None,
    desc: str = "training",
    history: History | None = None,
    live_plot: bool | None = None,
    plot_metrics: tuple[str, ...] = ("loss",),
    stop: Callable[[History], bool] | None = None,
) -> History:
    """Run ``step(i)`` for ``i`` in ``range(steps)`` with a progress bar, recording what it returns.

    ``step`` may return its metrics as tensors on the model's device (and a metric may be a zero-argument
    callable, evaluated only when it is logged): they are read on the host only every ``log_every`` steps, so a
    GPU is not made to wait for the host at every step. Plain floats work as before.

    Args:
        step: does one optimisation step and returns the loss (a float or a 0-dim tensor) or a dict of metrics
            with ``"loss"`` (floats, 0-dim tensors, or callables returning a float).
        steps: number of steps.
        log_every: record metrics every this many steps (also how often the losses are read on the host).
        plot_every: redraw the live plot every this many steps (default: about 20 redraws in all).
        desc: progress-bar label.
        history: continue an existing history (e.g. loaded from a checkpoint).
        live_plot: force the live plot on/off; default on in Jupyter, off elsewhere.
        plot_metrics: which metrics the live plot shows.
        stop: early-stopping predicate called after each logged step.

    Returns:
        The :class:`History`. A non-finite loss stops training with a FloatingPointError naming the first step
        that returned one (detected when the losses are read, at the next logged step).
    """
    history = history or History()
    start = history.steps[-1] + 1 if history.steps else 0
    plot = LivePlot(plot_metrics, desc, enabled=live_plot)
    plot_every = plot_every or max(1, steps // 20)
    bar = tqdm(range(start, start + steps), desc=desc, disable=_progress_disabled(), leave=True)
    pending: list[tuple[int, Any]] = []  # (step, loss) since the last read, checked for finiteness together
    for i in bar:
        out = step(i)
        metrics = dict(out) if isinstance(out, Mapping) else {"loss": out}
        if "loss" in metrics:
            loss = metrics["loss"]
            pending.append((i, loss.detach() if isinstance(loss, torch.Tensor) else loss))
        if (i - start) % log_every == 0 or i == start + steps - 1:
            _check_finite(pending, desc)
            pending.clear()
            values = {k: _host_value(v) for k, v in metrics.items()}
            history.log(i, **values)
            bar.set_postfix_str(f"loss {values.get('loss', float('nan')):.4g}", refresh=False)
            if stop is not None and stop(history):
                break
        if (i - start) % plot_every == 0:
            plot.update(history)
    _check_finite(pending, desc)
    plot.update(history, final=True)
    bar.close()
    return history


def _host_value(value: Any) -> float:
    """A logged metric as a Python float: calls a callable, reads a tensor (one host synchronisation)."""
    if callable(value):
        value = value()
    return float(value)


def _check_finite(pending: list[tuple[int, Any]], desc: str) -> None:
    """Raise FloatingPointError naming the first step whose loss is not finite; the tensors among ``pending``
    are stacked and read in one host synchronisation."""
    if not pending:
        return
    tensors = [(i, v) for i, v in pending if isinstance(v, torch.Tensor)]
    bad = [(i, float(v)) for i, v in pending if not isinstance(v, torch.Tensor) and not math.isfinite(float(v))]
    if tensors:
        stacked = torch.stack([v.reshape(()).to(torch.float64 if v.dtype == torch.float64 else torch.float32)
                               for _, v in tensors])
        if not bool(torch.isfinite(stacked).all()):
            values = stacked.tolist()
            bad += [(i, x) for (i, _), x in zip(tensors, values) if not math.isfinite(x)]
    if bad:
        i, value = min(bad)
        raise FloatingPointError(f"{desc}: loss became {value} at step {i}")


def _progress_disabled() -> bool:
    """Progress bars are off when ``MEM_TUTORIAL_PROGRESS=0`` (benchmarks, logs)."""
    return os.environ.get("MEM_TUTORIAL_PROGRESS", "1").strip().lower() in {"0", "false", "no", "off"}


def save_checkpoint(
    path: str | os.PathLike,
    model: torch.nn.Module,
    config: Mapping[str, Any],
    history: History | None = None,
    **extra: Any,
) -> Path:
    """Save a model's weights with the config that rebuilds it and the library version that trained it.

    The file holds only tensors and plain Python values, so it loads with ``torch.load(weights_only=True)``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": "mem_tutorial.checkpoint/1",
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "config": dict(config),
        "library_version": mem_tutorial.__version__,
        "torch_version": str(torch.__version__),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "history": history.to_dict() if history is not None else None,
        "extra": dict(extra),
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(
    path: str | os.PathLike, model: torch.nn.Module | None = None, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (safely: ``weights_only=True``).

    If ``model`` is given, its weights are loaded (strictly). Returns the payload: ``config``,
    ``library_version``, ``history`` (a :class:`History` or None), ``extra``, ``state_dict``.

    Raises:
        FileNotFoundError: naming the path. ValueError: the file is not a mem_tutorial checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # corrupt or foreign file
        raise ValueError(f"{path} is not a readable mem_tutorial checkpoint: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != "mem_tutorial.checkpoint/1":
        raise ValueError(f"{path} is not a mem_tutorial checkpoint (missing format tag)")
    if model is not None:
        model.load_state_dict(payload["state_dict"])
    if payload.get("history") is not None:
        payload["history"] = History.from_dict(payload["history"])
    return payload
