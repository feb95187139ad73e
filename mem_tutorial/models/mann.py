"""Memory-Augmented Neural Network with least-recently-used access (Santoro et al. 2016, "One-shot Learning with
Memory-Augmented Neural Networks", Section 3).

Shapes: B batch, N memory slots, W word size, R read heads, C classes (labels), X input size, H controller size.

Equations (paper numbering in brackets):

    read weights       w^r_t(i) = softmax_i(β_t K(k_t, M_t(i)))                                  [2] (β: see below)
    read               r_t = Σ_i w^r_t(i) M_t(i)                                                   [3]
    usage              w^u_t = γ w^u_{t-1} + w^r_t + w^w_t                                          [5]
    least used         w^lu_t(i) = 0 if w^u_t(i) > m(w^u_t, n), 1 otherwise                         [6]
                       (m(v, n): the n-th smallest element of v; n = the number of reads)
    write weights      w^w_t = σ(α) w^r_{t-1} + (1 - σ(α)) w^lu_{t-1}                                [7]
    write              M_t(i) = M_{t-1}(i) + w^w_t(i) a_t,   after zeroing the least-used slot       [8]

Three choices the paper leaves open or that we change: the write vector a_t is its own controller output (the paper
writes the read key k_t); the read has a key strength β_t = 1 + softplus (the NTM's; the paper's Eq. 2 has none,
which makes a cosine softmax over N slots nearly uniform early in training); and the controller's input at step t
is [x_t, x_{t-1}, y_{t-1}]: the previous image again, next to its label, so that the binding (x_{t-1}, y_{t-1}) can
be written without first holding x_{t-1} in the LSTM state for one step (the same information the paper's model
has, given more directly; the LSTM baseline gets the same input). With it, the write at step t goes to w^r_{t-1},
the slot the previous image's key read (an earlier example of its class), or to the least-used slot: the paper's
"update a memory or store a new one".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from mem_tutorial.memory.addressing import content_weighting


def least_used(usage: torch.Tensor, n: int) -> torch.Tensor:
    """w^lu [B, N] (Eq. 6): 1 on the slots whose usage [B, N] is among the n smallest (ties at the n-th smallest
    included, as the paper's definition says), 0 elsewhere."""
    nth = usage.topk(n, dim=-1, largest=False).values[..., -1:]  # m(w^u, n)
    return (usage <= nth).to(usage.dtype)


def lrua_write_weights(prev_read: torch.Tensor, prev_least_used: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """w^w_t = σ(α) w^r_{t-1} + (1 - σ(α)) w^lu_{t-1} (Eq. 7): [B, R, N] from prev_read [B, R, N],
    prev_least_used [B, N] (shared by the heads) and the gate logits alpha [B, R]."""
    g = torch.sigmoid(alpha).unsqueeze(-1)
    return g * prev_read + (1 - g) * prev_least_used.unsqueeze(1)


def usage_update(usage: torch.Tensor, read_w: torch.Tensor, write_w: torch.Tensor, gamma: float) -> torch.Tensor:
    """w^u_t = γ w^u_{t-1} + Σ_heads (w^r_t + w^w_t) (Eq. 5): [B, N]."""
    return gamma * usage + read_w.sum(1) + write_w.sum(1)


@dataclass
class MANNConfig:
    input_size: int = 64  # X (the step input is [x_t, x_{t-1}], 2X wide)
    n_classes: int = 5
    hidden: int = 128
    slots: int = 64
    word: int = 40
    heads: int = 1
    gamma: float = 0.95


class MANNState(NamedTuple):
    h: torch.Tensor  # [B, H]
    c: torch.Tensor  # [B, H]
    memory: torch.Tensor  # [B, N, W]
    read_w: torch.Tensor  # [B, R, N]
    usage: torch.Tensor  # [B, N]
    reads: torch.Tensor  # [B, R, W]


class MANN(nn.Module):
    """LSTM controller + LRUA memory. Input at step t: [x_t, one-hot y_{t-1}] (the label arrives one step late)."""

    def __init__(self, cfg: MANNConfig):
        super().__init__()
        self.cfg = cfg
        c = cfg
        self.lstm = nn.LSTMCell(2 * c.input_size + c.n_classes + c.heads * c.word, c.hidden)
        self.iface = nn.Linear(c.hidden, c.heads * (2 * c.word + 2))  # key, write vector, alpha, beta per head
        self.out = nn.Linear(c.hidden + c.heads * c.word, c.n_classes)

    def initial_state(self, batch: int, like: torch.Tensor) -> MANNState:
        c = self.cfg
        z = lambda *s: like.new_zeros(*s)  # noqa: E731
        usage = like.new_zeros(batch, c.slots)
        return MANNState(z(batch, c.hidden), z(batch, c.hidden), z(batch, c.slots, c.word) + 1e-6,
                         z(batch, c.heads, c.slots), usage, z(batch, c.heads, c.word))

    def step(self, x: torch.Tensor, y_prev: torch.Tensor, s: MANNState) -> tuple[torch.Tensor, MANNState]:
        c = self.cfg
        h, cell = self.lstm(torch.cat([x, y_prev, s.reads.flatten(1)], -1), (s.h, s.c))
        p = self.iface(h).view(-1, c.heads, 2 * c.word + 2)
        key, add = torch.tanh(p[..., : c.word]), torch.tanh(p[..., c.word : 2 * c.word])
        alpha, beta = p[..., -2], 1 + F.softplus(p[..., -1])
        lu_prev = least_used(s.usage, c.heads)  # w^lu_{t-1}
        write_w = lrua_write_weights(s.read_w, lu_prev, alpha)  # [B, R, N]
        memory = s.memory * (1 - lu_prev).unsqueeze(-1)  # zero the least-used slot(s) before writing
        memory = memory + torch.einsum("brn,brw->bnw", write_w, add)
        read_w = content_weighting(memory, key, beta)  # [B, R, N]
        reads = torch.einsum("brn,bnw->brw", read_w, memory)
        usage = usage_update(s.usage, read_w, write_w, c.gamma)
        logits = self.out(torch.cat([h, reads.flatten(1)], -1))
        return logits, MANNState(h, cell, memory, read_w, usage, reads)

    def forward(self, x: torch.Tensor, y_prev: torch.Tensor) -> torch.Tensor:
        """x [B, T, X], y_prev [B, T, C] -> logits [B, T, C]."""
        s = self.initial_state(x.shape[0], x)
        inp = with_previous(x)
        out = []
        for t in range(x.shape[1]):
            logits, s = self.step(inp[:, t], y_prev[:, t], s)
            out.append(logits)
        return torch.stack(out, 1)


def with_previous(x: torch.Tensor) -> torch.Tensor:
    """[B, T, X] -> [B, T, 2X]: [x_t, x_{t-1}] (zeros before the first step)."""
    return torch.cat([x, torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], 1)], -1)


class LSTMClassifier(nn.Module):
    """The paper's LSTM baseline: the same inputs, no external memory."""

    def __init__(self, input_size: int = 64, n_classes: int = 5, hidden: int = 200):
        super().__init__()
        self.cfg = dict(input_size=input_size, n_classes=n_classes, hidden=hidden)
        self.lstm = nn.LSTM(2 * input_size + n_classes, hidden, batch_first=True)
        self.out = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor, y_prev: torch.Tensor) -> torch.Tensor:
        return self.out(self.lstm(torch.cat([with_previous(x), y_prev], -1))[0])
