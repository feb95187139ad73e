"""Shape checks that fail with a message naming the expected and the received shape."""

from __future__ import annotations

import torch


def check_shape(name: str, tensor: torch.Tensor, spec: str, sizes: dict[str, int] | None = None) -> dict[str, int]:
    """Check ``tensor`` against a symbolic shape such as ``"B N W"`` and return the bound sizes.

    Symbols already in ``sizes`` must match; new symbols are bound. Raises ValueError otherwise, e.g.
    ``memory: expected shape [B, N, W], got [2, 3]``.
    """
    sizes = dict(sizes or {})
    symbols = spec.split()
    expected = "[" + ", ".join(symbols) + "]"
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of shape {expected}, got {type(tensor).__name__}")
    got = list(tensor.shape)
    if len(got) != len(symbols):
        raise ValueError(f"{name}: expected shape {expected}, got {got}")
    for sym, size in zip(symbols, got):
        if sym.isdigit():
            if int(sym) != size:
                raise ValueError(f"{name}: expected shape {expected}, got {got}")
            continue
        if sym in sizes and sizes[sym] != size:
            bound = ", ".join(f"{k}={v}" for k, v in sizes.items())
            raise ValueError(f"{name}: expected shape {expected} with {bound}, got {got}")
        sizes[sym] = size
    return sizes
