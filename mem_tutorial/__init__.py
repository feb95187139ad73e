"""mem_tutorial: the library behind the *External memory in neural networks* course.

Layers (each only looks down):

- ``runtime``: device choice, seeding, the FAST switch.
- ``memory``: the memory mechanisms, one pure function per paper equation.
- ``models``: the NTM, DNC, MemN2N and KV-MemNN, composed from ``memory``.
- ``tasks`` / ``data``: algorithmic task generators and data-set loaders (know nothing of models).
- ``train``: the training loop, loss history, checkpoints.
- ``viz``: plots and ipywidgets explorers.
- ``grading``: nbgrader wrappers for instructors (knows nothing of models).
"""

__version__ = "0.1.0"

from mem_tutorial.runtime import fast_mode, get_device, pick, seed_everything  # noqa: E402,F401
