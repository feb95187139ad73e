"""Grading and course tooling. Knows nothing of models: it builds notebooks, runs them and reads nbgrader's
gradebook. ``checks`` is imported inside notebooks' test cells; the rest needs the ``course`` extra (nbgrader,
jupytext, nbclient)."""
