"""Key -> value recall (Chapter 1): store K random (key, value) pairs, then ask for the value of one key.

The smallest task on which a differentiable memory has to *address by content*: nothing about the position
of the pair is given in the query.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class KVRecallBatch(NamedTuple):
    """keys: [B, K, Dk], values: [B, K, Dv], query: [B, Dk] (one of the keys), target: [B, Dv] (its value),
    index: [B] which pair was asked."""

    keys: torch.Tensor
    values: torch.Tensor
    query: torch.Tensor
    target: torch.Tensor
    index: torch.Tensor


def kv_recall_batch(
    batch_size: int,
    pairs: int,
    key_bits: int = 8,
    value_bits: int = 8,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> KVRecallBatch:
    """Sample a batch of random binary key/value pairs and one query per episode.

    Sampling happens on the CPU with ``generator`` (so a seed gives the same data on every device), then the
    tensors move to ``device``. Keys within an episode are distinct.
    """
    if pairs < 1 or pairs > 2**key_bits:
        raise ValueError(f"pairs must be in [1, 2**key_bits = {2**key_bits}], got {pairs}")
    # distinct keys: sample distinct integers and write them in binary
    codes = torch.argsort(torch.rand(batch_size, 2**key_bits, generator=generator), dim=1)[:, :pairs]
    bits = 2 ** torch.arange(key_bits - 1, -1, -1)
    keys = ((codes.unsqueeze(-1) // bits) % 2).float()
    values = torch.randint(0, 2, (batch_size, pairs, value_bits), generator=generator).float()
    index = torch.randint(0, pairs, (batch_size,), generator=generator)
    rows = torch.arange(batch_size)
    out = KVRecallBatch(keys, values, keys[rows, index], values[rows, index], index)
    return KVRecallBatch(*(t.to(device) for t in out))
