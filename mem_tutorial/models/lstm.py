"""The LSTM baseline of the NTM paper (Graves et al. 2014, Section 4: "LSTM network without external memory").

Same interface as :class:`mem_tutorial.models.ntm.NTM`: ``initial_state(B)``, ``step(x, state)``,
``forward(inputs [B, T, in]) -> (logits [B, T, out], state)``. Stacked LSTM layers (the paper uses 3 x 256
on copy); a linear layer reads the top layer. State is an explicit :class:`LSTMState`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
from torch import nn

from mem_tutorial.memory._shapes import check_shape


@dataclass
class LSTMConfig:
    input_size: int = 9
    output_size: int = 8
    hidden_size: int = 256
    layers: int = 3

    def to_dict(self) -> dict:
        return asdict(self)


class LSTMState(NamedTuple):
    h: torch.Tensor  # [layers, B, hidden]
    c: torch.Tensor  # [layers, B, hidden]


class LSTMBaseline(nn.Module):
    """A stacked LSTM with a linear read-out of all layers' hidden states (logits)."""

    def __init__(self, config: LSTMConfig | None = None, **overrides):
        super().__init__()
        cfg = config or LSTMConfig()
        if overrides:
            cfg = LSTMConfig(**{**cfg.to_dict(), **overrides})
        self.config = cfg
        self.lstm = nn.LSTM(cfg.input_size, cfg.hidden_size, num_layers=cfg.layers, batch_first=True)
        self.output = nn.Linear(cfg.hidden_size, cfg.output_size)

    def initial_state(self, batch_size: int, device: torch.device | str | None = None, generator=None) -> LSTMState:
        p = self.output.weight
        z = torch.zeros(self.config.layers, batch_size, self.config.hidden_size, device=device or p.device, dtype=p.dtype)
        return LSTMState(z, z.clone())

    def step(self, x: torch.Tensor, state: LSTMState) -> tuple[torch.Tensor, LSTMState]:
        """One time step. x: [B, input_size] -> (logits [B, output_size], new state)."""
        y, state = self.forward(x.unsqueeze(1), state)
        return y[:, 0], state

    def forward(self, inputs: torch.Tensor, state: LSTMState | None = None) -> tuple[torch.Tensor, LSTMState]:
        """inputs: [B, T, input_size] -> (logits [B, T, output_size], final state)."""
        check_shape("inputs", inputs, "B T I", {"I": self.config.input_size})
        if state is None:
            state = self.initial_state(inputs.shape[0], inputs.device)
        hs, (h, c) = self.lstm(inputs, (state.h, state.c))
        return self.output(hs), LSTMState(h, c)
