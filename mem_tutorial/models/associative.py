"""Chapter 1's differentiable associative memory: write K (key, value) pairs, read one back by content.

Nothing new, only the primitives composed: each pair is encoded into a word and written to its own slot
(erase-then-add, Graves et al. 2014 Eq. 3-4); the query is encoded into a read key and read by content weighting
(Eq. 5-6) and a weighted read (Eq. 2); a linear decoder turns the read vector into value logits.
"""

from __future__ import annotations

import torch
from torch import nn

from mem_tutorial.memory import content_weighting, read, write


class AssociativeMemory(nn.Module):
    """Key -> value memory with learned encoders. Memory size (K slots) is set by the data, not the weights.

    Args:
        key_bits, value_bits: sizes of the binary keys and values.
        word_size: W, the width of a memory row.
    """

    def __init__(self, key_bits: int = 8, value_bits: int = 8, word_size: int = 32):
        super().__init__()
        self.encode_pair = nn.Linear(key_bits + value_bits, word_size)
        self.encode_query = nn.Linear(key_bits, word_size)
        self.strength = nn.Linear(key_bits, 1)
        self.decode = nn.Linear(word_size, value_bits)

    def store(self, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Write pair k to slot k. keys: [B, K, Dk], values: [B, K, Dv] -> memory [B, K, W]."""
        b, k, _ = keys.shape
        words = torch.tanh(self.encode_pair(torch.cat([keys, values], dim=-1)))  # [B, K, W]
        memory = words.new_zeros(b, k, words.shape[-1])
        slots = torch.eye(k, dtype=words.dtype, device=words.device).expand(b, k, k)  # [B, H=K, N=K] one-hot
        return write(memory, slots, torch.ones_like(words), words)

    def recall(self, memory: torch.Tensor, query: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Read by content. memory: [B, N, W], query: [B, Dk] -> (value logits [B, Dv], weighting [B, N])."""
        key = torch.tanh(self.encode_query(query))
        beta = nn.functional.softplus(self.strength(query)).squeeze(-1) + 1.0  # [B], beta >= 1
        weights = content_weighting(memory, key, beta)
        return self.decode(read(memory, weights)), weights

    def forward(self, keys: torch.Tensor, values: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """keys: [B, K, Dk], values: [B, K, Dv], query: [B, Dk] -> value logits [B, Dv]."""
        return self.recall(self.store(keys, values), query)[0]
