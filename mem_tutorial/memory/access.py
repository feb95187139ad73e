"""Reading from and writing to memory with a weighting: shared by the NTM, the DNC and Chapter 1.

Graves, Wayne & Danihelka 2014 (NTM), Section 3.1 (Eq. 2) and Section 3.2 (Eq. 3-4);
Graves et al. 2016 (DNC), Methods, "Reading and writing to memory".

Symbols: B batch, N slots, W word size, R read heads, H write heads.
"""

from __future__ import annotations

import torch

from mem_tutorial.memory._shapes import check_shape


def read(memory: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted read r = sum_i w(i) M_i (NTM Eq. 2; DNC r = M^T w).

    Args:
        memory: [B, N, W]
        weights: [B, R, N] (or [B, N] for one head).

    Returns:
        [B, R, W] (or [B, W]) read vectors.
    """
    sizes = check_shape("memory", memory, "B N W")
    if weights.dim() == 2:
        check_shape("weights", weights, "B N", sizes)
        return torch.einsum("bn,bnw->bw", weights, memory)
    check_shape("weights", weights, "B R N", sizes)
    return torch.einsum("brn,bnw->brw", weights, memory)


def write(memory: torch.Tensor, weights: torch.Tensor, erase: torch.Tensor, add: torch.Tensor) -> torch.Tensor:
    """Erase then add: M_t = M_{t-1} * prod_h (1 - w_h e_h^T) + sum_h w_h a_h^T (NTM Eq. 3-4; DNC Methods).

    With several write heads the erases multiply (their order does not matter) and the adds sum, as in
    the NTM paper. Erase comes first so that a slot can be fully replaced in one step (e = 1, w one-hot).

    Args:
        memory: [B, N, W]
        weights: [B, N] or [B, H, N] write weightings.
        erase: [B, W] or [B, H, W] erase vectors with entries in [0, 1].
        add: [B, W] or [B, H, W] add vectors.

    Returns:
        [B, N, W] the new memory (a new tensor; ``memory`` is not modified).
    """
    sizes = check_shape("memory", memory, "B N W")
    if weights.dim() == 2:
        check_shape("weights", weights, "B N", sizes)
        check_shape("erase", erase, "B W", sizes)
        check_shape("add", add, "B W", sizes)
        weights, erase, add = weights.unsqueeze(1), erase.unsqueeze(1), add.unsqueeze(1)
    else:
        sizes = check_shape("weights", weights, "B H N", sizes)
        check_shape("erase", erase, "B H W", sizes)
        check_shape("add", add, "B H W", sizes)
    keep = torch.prod(1 - weights.unsqueeze(-1) * erase.unsqueeze(2), dim=1)  # [B, N, W]
    return memory * keep + torch.einsum("bhn,bhw->bnw", weights, add)
