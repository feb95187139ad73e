"""Runtime switches shared by every chapter: device choice, seeding and the FAST switch.

``MEM_TUTORIAL_FAST=1`` (CI, nbval, autograding) selects small training configurations; ``0`` or unset
selects the paper-scale ones. Notebooks call :func:`pick` so that one line says both.
"""

from __future__ import annotations

import os
import random
import warnings
from typing import TypeVar

import numpy as np
import torch

FAST_ENV = "MEM_TUTORIAL_FAST"
DEVICE_ENV = "MEM_TUTORIAL_DEVICE"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

T = TypeVar("T")

_reported_device: str | None = None


def fast_mode() -> bool:
    """Whether ``MEM_TUTORIAL_FAST`` asks for the small configurations.

    Accepts ``1/0``, ``true/false``, ``yes/no``, ``on/off`` (any case); unset means False.

    Raises:
        ValueError: for any other value, naming the variable and the accepted values.
    """
    raw = os.environ.get(FAST_ENV, "")
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(
        f"{FAST_ENV}={raw!r} is not understood: use 1/true/yes/on for the small CI configuration "
        f"or 0/false/no/off (or leave it unset) for the paper-scale one."
    )


def pick(fast: T, full: T) -> T:
    """Return ``fast`` in FAST mode and ``full`` otherwise (``steps = pick(fast=200, full=50_000)``)."""
    return fast if fast_mode() else full


def get_device(prefer: str | None = None, verbose: bool = True) -> torch.device:
    """Choose the compute device: CUDA, then Apple MPS, then CPU.

    ``prefer`` (or the ``MEM_TUTORIAL_DEVICE`` variable) forces one, e.g. ``"cpu"``. The choice is printed
    once per process (``verbose``), so a notebook says where it trains without repeating itself.
    """
    global _reported_device
    choice = prefer or os.environ.get(DEVICE_ENV)
    if choice:
        device = torch.device(choice)
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        device = torch.device("mps")
    else:
        device = torch.device("cpu")
    if verbose and _reported_device != str(device):
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
        print(f"mem_tutorial: using device {device} ({name})")
        _reported_device = str(device)
    return device


def seed_everything(seed: int = 0, threads: int | None = 1, deterministic: bool = True) -> None:
    """Seed Python, NumPy and PyTorch (all devices) and make CPU results repeatable.

    Args:
        seed: the seed for every generator.
        threads: fixed intra-op thread count (printed sums differ in the last bits between 1 and 2 threads);
            ``None`` leaves PyTorch's choice.
        deterministic: ask PyTorch for deterministic kernels where they exist (warn-only elsewhere).
    """
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if threads is not None:
        torch.set_num_threads(threads)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
