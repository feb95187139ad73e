"""Suite-wide settings: one intra-op thread per test process (pytest-xdist runs two processes on the 2-core CI
machine; more threads only spin-wait), and the bAbI copy beside the repository when present."""

import os
from pathlib import Path

import torch

torch.set_num_threads(1)

_SHARED_BABI = Path(__file__).resolve().parents[2] / "shared" / "data" / "babi"
if not os.environ.get("MEM_TUTORIAL_BABI_DIR") and _SHARED_BABI.is_dir():
    os.environ["MEM_TUTORIAL_BABI_DIR"] = str(_SHARED_BABI)
