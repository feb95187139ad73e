"""Sparse Access Memory (SAM): a memory-augmented LSTM whose reads and writes touch K slots (Chapter 6).

Rae, Hunt, Harley, Danihelka, Senior, Wayne, Graves & Lillicrap 2016, "Scaling Memory-Augmented Neural Networks
with Sparse Reads and Writes", Section 3. One step t:

1. controller: h_t = LSTM([x_t, r_{t-1}], state);
2. write (Section 3.2): w^W_t = alpha_t (gamma_t w^R_{t-1} + (1 - gamma_t) I^U_t), with I^U_t the least-used
   slot; M_t = (1 - R_t) * M_{t-1} + w^W_t a_t^T where R_t = I^U_t 1^T erases the least-used row (Eq. 5-6);
3. read (Section 3.1): r_t = sum over the top-K slots of the renormalised content weights (``topk_read``);
4. usage (Section 3.3, discounted form): U_t = lambda U_{t-1} + w^R_t + w^W_t;
5. output y_t = W_y [h_t, r_t] (logits).

``dense=True`` gives the same model with dense content reads over all N slots (the paper's "DAM" baseline): the
write is the same, and the read uses every slot. Everything else (sizes, parameters) is shared, so the two can
be compared at equal parameters. The read can take candidates from an ANN index via ``candidates_fn``.

Activations: read key (identity), strength beta = softplus, alpha and gamma = sigmoid, add a = tanh.
Symbols: B batch, T time, N slots, W word size, R read heads, K slots per read, C controller size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from mem_tutorial.memory import access
from mem_tutorial.memory import addressing as addr
from mem_tutorial.memory import sparse
from mem_tutorial.memory._shapes import check_shape

#: Every cell of the initial memory (tiny and constant, as in the NTM chapter).
MEMORY_INIT_CONSTANT = 1e-6


@dataclass
class SAMConfig:
    """Sizes of a SAM (defaults: the associative recall setting of Chapter 2, with K = 4)."""

    input_size: int = 8
    output_size: int = 6
    controller_size: int = 100
    memory_slots: int = 128  # N
    memory_width: int = 20  # W
    read_heads: int = 1  # R
    k: int = 4  # K slots per read
    usage_decay: float = 0.99  # lambda
    dense: bool = False  # True: dense reads over all N (the DAM baseline)

    def to_dict(self) -> dict:
        return asdict(self)


class SAMState(NamedTuple):
    """Recurrent state of a SAM between steps."""

    memory: torch.Tensor  # [B, N, W]
    usage: torch.Tensor  # [B, N]
    read_indices: torch.Tensor  # [B, R, K] (dense: [B, R, N] = all slots)
    read_weights: torch.Tensor  # [B, R, K] (dense: [B, R, N])
    reads: torch.Tensor  # [B, R, W]
    controller: tuple[torch.Tensor, torch.Tensor]  # (h [B, C], c [B, C])


class SAM(nn.Module):
    """Sparse Access Memory with an LSTM controller (parameters only; the state is explicit)."""

    def __init__(self, config: SAMConfig | None = None, **overrides):
        super().__init__()
        cfg = config or SAMConfig()
        if overrides:
            cfg = SAMConfig(**{**cfg.to_dict(), **overrides})
        if not 1 <= cfg.k <= cfg.memory_slots:
            raise ValueError(f"k must be in [1, memory_slots={cfg.memory_slots}], got {cfg.k}")
        self.config = cfg
        R, W, C = cfg.read_heads, cfg.memory_width, cfg.controller_size
        self.controller = nn.LSTMCell(cfg.input_size + R * W, C)
        # read heads: key W + strength 1 each; write: alpha 1, gamma 1, add W
        self.heads = nn.Linear(C, R * (W + 1) + 2 + W)
        self.output = nn.Linear(C + R * W, cfg.output_size)

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> SAMState:
        cfg = self.config
        p = self.output.weight
        device = torch.device(device) if device is not None else p.device
        B, N, W, R = batch_size, cfg.memory_slots, cfg.memory_width, cfg.read_heads
        K = N if cfg.dense else cfg.k
        memory = torch.full((B, N, W), MEMORY_INIT_CONSTANT, device=device, dtype=p.dtype)
        usage = torch.zeros(B, N, device=device, dtype=p.dtype)
        idx = torch.arange(K, device=device).expand(B, R, K).clone()
        w = torch.full((B, R, K), 1.0 / K, device=device, dtype=p.dtype)
        reads = torch.zeros(B, R, W, device=device, dtype=p.dtype)
        zeros = torch.zeros(B, cfg.controller_size, device=device, dtype=p.dtype)
        return SAMState(memory, usage, idx, w, reads, (zeros, zeros.clone()))

    def step(self, x: torch.Tensor, state: SAMState, candidates: torch.Tensor | None = None) -> tuple[torch.Tensor, SAMState]:
        """One step. x: [B, input_size] -> (logits [B, output_size], new state).

        ``candidates`` [B, R, C]: optional slot indices from an ANN index for the sparse read.
        """
        cfg = self.config
        B, R, W = x.shape[0], cfg.read_heads, cfg.memory_width
        h, c = self.controller(torch.cat([x, state.reads.reshape(B, -1)], dim=-1), state.controller)
        raw = self.heads(h)
        read_raw = raw[:, : R * (W + 1)].view(B, R, W + 1)
        keys, beta = read_raw[..., :W], F.softplus(read_raw[..., W])
        alpha = torch.sigmoid(raw[:, R * (W + 1)])
        gamma = torch.sigmoid(raw[:, R * (W + 1) + 1])
        add = torch.tanh(raw[:, R * (W + 1) + 2 :])  # [B, W]

        # Write (Rae et al. 2016, Eq. 5-6): erase the least-used row, add a_t along w^W.
        least = sparse.least_used(state.usage)[:, 0]  # [B]
        prev = sparse.SparseWeights(state.read_indices, state.read_weights)
        ww = sparse.sparse_write_weighting(prev, least, alpha, gamma)  # [B, R*K + 1]
        one = torch.ones(B, 1, device=x.device, dtype=x.dtype)
        indices = torch.stack([least.unsqueeze(-1).expand_as(ww.indices), ww.indices], dim=1)  # [B, 2, L]
        weights = torch.stack([torch.cat([one, torch.zeros_like(ww.weights[:, 1:])], -1), ww.weights], dim=1)
        erase = torch.stack([torch.ones(B, W, device=x.device, dtype=x.dtype), torch.zeros(B, W, device=x.device, dtype=x.dtype)], 1)
        adds = torch.stack([torch.zeros_like(add), add], dim=1)
        if cfg.dense:  # the same write, with dense [B, 2, N] weightings (DAM)
            dense_w = sparse.densify(indices, weights, cfg.memory_slots)
            memory = access.write(state.memory, dense_w, erase, adds)
        else:
            memory = sparse.sparse_write(state.memory, indices, weights, erase, adds)

        # Read (Section 3.1): top-K content read (dense: all N slots).
        if cfg.dense:
            w_read = addr.content_weighting(memory, keys, beta)  # [B, R, N]
            reads = access.read(memory, w_read)
            read_idx = torch.arange(cfg.memory_slots, device=x.device).expand(B, R, cfg.memory_slots)
        else:
            reads, sw = sparse.topk_read(memory, keys, beta, cfg.k, candidates=candidates)
            read_idx, w_read = sw.indices, sw.weights
        usage = sparse.update_usage(state.usage, sparse.SparseWeights(read_idx, w_read), ww, cfg.usage_decay)
        logits = self.output(torch.cat([h, reads.reshape(B, -1)], dim=-1))
        return logits, SAMState(memory, usage, read_idx, w_read, reads, (h, c))

    def forward(self, inputs: torch.Tensor, state: SAMState | None = None) -> tuple[torch.Tensor, SAMState]:
        """Run over a sequence. inputs: [B, T, input_size] -> (logits [B, T, output_size], final state)."""
        check_shape("inputs", inputs, "B T I", {"I": self.config.input_size})
        B, T, _ = inputs.shape
        if state is None:
            state = self.initial_state(B, inputs.device)
        out = []
        for t in range(T):
            y, state = self.step(inputs[:, t], state)
            out.append(y)
        return torch.stack(out, dim=1), state
