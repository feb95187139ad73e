"""Static plots: memory and weighting heatmaps, loss curves. Each takes an optional ``ax`` and returns it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes

    from mem_tutorial.train import History


def _np(x):
    return x.detach().cpu().float().numpy() if isinstance(x, torch.Tensor) else x


def _axes(ax, figsize=(6, 3)):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def plot_memory(memory, ax: "Axes | None" = None, title: str = "memory", cmap: str = "viridis") -> "Axes":
    """Heatmap of one memory matrix ``memory: [N, W]`` (slots down, word positions across)."""
    ax = _axes(ax)
    m = _np(memory)
    if m.ndim != 2:
        raise ValueError(f"memory: expected shape [N, W], got {list(m.shape)}")
    im = ax.imshow(m, aspect="auto", cmap=cmap, interpolation="nearest")
    ax.set_xlabel("word position (W)")
    ax.set_ylabel("slot (N)")
    ax.set_title(title)
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return ax


def plot_weightings(
    weights, ax: "Axes | None" = None, title: str = "weighting over time", cmap: str = "Greys"
) -> "Axes":
    """Heatmap of weightings over time ``weights: [T, N]`` (time across, slots down), as in the NTM paper."""
    ax = _axes(ax)
    w = _np(weights)
    if w.ndim != 2:
        raise ValueError(f"weights: expected shape [T, N], got {list(w.shape)}")
    ax.imshow(w.T, aspect="auto", cmap=cmap, interpolation="nearest", vmin=0.0)
    ax.set_xlabel("time (T)")
    ax.set_ylabel("slot (N)")
    ax.set_title(title)
    return ax


def plot_weighting(weights, ax: "Axes | None" = None, title: str = "weighting", ylim: float | None = 1.0) -> "Axes":
    """Bar plot of one weighting over slots ``weights: [N]``."""
    ax = _axes(ax)
    w = _np(weights)
    ax.bar(range(len(w)), w, color="tab:blue")
    ax.set_xlabel("slot (N)")
    ax.set_ylabel("weight")
    if ylim is not None:
        ax.set_ylim(0, ylim)
    ax.set_title(title)
    return ax


def plot_history(
    history: "History", names: Sequence[str] = ("loss",), ax: "Axes | None" = None, title: str = "training",
    smooth: int = 0, logy: bool = False,
) -> "Axes":
    """Loss (or other metric) curves from a :class:`mem_tutorial.train.History`."""
    ax = _axes(ax)
    for name in names:
        if name not in history.metrics:
            continue
        values = history.smoothed(name, smooth) if smooth else history.metrics[name]
        ax.plot(history.steps[: len(values)], values, label=name)
    ax.set_xlabel("step")
    ax.set_title(title)
    if logy:
        ax.set_yscale("log")
    if len(names) > 1:
        ax.legend()
    return ax
