"""Plots (``plots``) and ipywidgets explorers (``widgets``)."""

from mem_tutorial.viz.plots import plot_history, plot_memory, plot_weighting, plot_weightings

__all__ = ["plot_history", "plot_memory", "plot_weighting", "plot_weightings"]
