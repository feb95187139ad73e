"""The Differentiable Neural Computer (Graves et al. 2016, Nature 538:471-476, Methods).

An LSTM controller reads the input x_t together with the previous read vectors r_{t-1} and emits, besides
its hidden state h_t, an *interface vector* xi_t that drives one write head and R read heads over an N x W
memory. The memory is addressed three ways: by content, by dynamic allocation (usage, free gates) and by
temporal links (the order of writes). The output is y_t = W_y h_t + W_r [r^1_t; ...; r^R_t].

This module only composes the mechanisms of :mod:`mem_tutorial.memory` (content weighting, read, write,
allocation, linkage); each is one tested function named after the paper's equation. The recurrent state is
an explicit :class:`DNCState` passed in and returned; the module holds parameters only.

Symbols: B batch, T time, N slots, W word size, R read heads, X input size, Y output size, H hidden size.
Cost per step: O(B N W R) for content addressing and O(B R N^2) for the temporal link matrix.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from mem_tutorial.memory import (
    allocation_weighting,
    content_weighting,
    directional_weightings,
    precedence_update,
    read,
    read_weighting,
    retention_vector,
    temporal_link_update,
    usage_update,
    write,
    write_weighting,
)


class DNCState(NamedTuple):
    """Everything the DNC carries from one step to the next (all zeros at t = 0)."""

    h: torch.Tensor  #: [B, H] controller hidden state
    c: torch.Tensor  #: [B, H] controller cell state
    memory: torch.Tensor  #: [B, N, W] memory matrix M_t
    usage: torch.Tensor  #: [B, N] usage u_t
    link: torch.Tensor  #: [B, N, N] temporal link matrix L_t
    precedence: torch.Tensor  #: [B, N] precedence p_t
    read_weights: torch.Tensor  #: [B, R, N] read weightings w^r_t
    write_weights: torch.Tensor  #: [B, N] write weighting w^w_t
    read_vectors: torch.Tensor  #: [B, R, W] read vectors r_t


class Interface(NamedTuple):
    """The interface vector xi_t split and constrained (Graves et al. 2016, Methods, "Interface parameters")."""

    read_keys: torch.Tensor  #: [B, R, W] read keys k^r (unconstrained)
    read_strengths: torch.Tensor  #: [B, R] read strengths beta^r = oneplus(.) >= 1
    write_key: torch.Tensor  #: [B, W] write key k^w (unconstrained)
    write_strength: torch.Tensor  #: [B] write strength beta^w = oneplus(.) >= 1
    erase: torch.Tensor  #: [B, W] erase vector e = sigmoid(.) in [0, 1]
    write_vector: torch.Tensor  #: [B, W] write vector v (unconstrained)
    free_gates: torch.Tensor  #: [B, R] free gates f = sigmoid(.)
    alloc_gate: torch.Tensor  #: [B, 1] allocation gate g^a = sigmoid(.)
    write_gate: torch.Tensor  #: [B, 1] write gate g^w = sigmoid(.)
    read_modes: torch.Tensor  #: [B, R, 3] read modes pi = softmax(.) over (backward, content, forward)


class StepTrace(NamedTuple):
    """What one step did, for plots and the stepper widget (``forward(..., trace=True)``)."""

    interface: Interface
    allocation: torch.Tensor  #: [B, N]
    state: DNCState


def oneplus(x: torch.Tensor) -> torch.Tensor:
    """oneplus(x) = 1 + log(1 + e^x) >= 1 (Graves et al. 2016, Methods): key strengths of at least 1."""
    return 1 + F.softplus(x)


def interface_size(word_size: int, read_heads: int) -> int:
    """Length of xi_t: R*W + 3W + 5R + 3 (Graves et al. 2016, Methods)."""
    return read_heads * word_size + 3 * word_size + 5 * read_heads + 3


def parse_interface(xi: torch.Tensor, word_size: int, read_heads: int) -> Interface:
    """Split the raw interface vector and apply the paper's constraints.

    The raw vector is laid out by activation so that each activation is one call:
    ``[read keys R*W | write key W | write vector W | strengths R+1 (oneplus) |
    erase W, free gates R, alloc gate 1, write gate 1 (sigmoid) | read modes 3R (softmax over each 3)]``.
    The layout is a convention of this library; the paper fixes only the pieces and their constraints.

    Args:
        xi: [B, R*W + 3W + 5R + 3] raw interface vector.

    Returns:
        An :class:`Interface`.
    """
    W, R = word_size, read_heads
    if xi.dim() != 2 or xi.shape[-1] != interface_size(W, R):
        raise ValueError(f"xi: expected shape [B, {interface_size(W, R)}] for W={W}, R={R}, got {list(xi.shape)}")
    B = xi.shape[0]
    keys, write_key, write_vector, strengths, gates, modes = torch.split(
        xi, [R * W, W, W, R + 1, W + R + 2, 3 * R], dim=-1
    )
    read_strengths, write_strength = oneplus(strengths).split([R, 1], dim=-1)
    erase, free_gates, alloc_gate, write_gate = torch.sigmoid(gates).split([W, R, 1, 1], dim=-1)
    return Interface(
        read_keys=keys.reshape(B, R, W),
        read_strengths=read_strengths,
        write_key=write_key,
        write_strength=write_strength.squeeze(-1),
        erase=erase,
        write_vector=write_vector,
        free_gates=free_gates,
        alloc_gate=alloc_gate,
        write_gate=write_gate,
        read_modes=torch.softmax(modes.reshape(B, R, 3), dim=-1),
    )


def memory_step(state: DNCState, iface: Interface) -> tuple[DNCState, torch.Tensor]:
    """One step of the DNC's memory (everything but the controller), in the order of the paper's Methods.

    Allocation (psi, u, a), write weighting, erase-then-add write, link and precedence, then the read
    weightings (backward / content / forward) on the *new* memory and the read vectors.

    Args:
        state: the previous :class:`DNCState` (its ``h``/``c`` are passed through unchanged).
        iface: this step's :class:`Interface`.

    Returns:
        (new state, allocation weighting [B, N]).
    """
    psi = retention_vector(iface.free_gates, state.read_weights)
    usage = usage_update(state.usage, state.write_weights, psi)
    allocation = allocation_weighting(usage)
    write_content = content_weighting(state.memory, iface.write_key, iface.write_strength)
    ww = write_weighting(allocation, write_content, iface.alloc_gate, iface.write_gate)
    memory = write(state.memory, ww, iface.erase, iface.write_vector)
    link = temporal_link_update(state.link, state.precedence, ww)
    precedence = precedence_update(state.precedence, ww)
    forward, backward = directional_weightings(link, state.read_weights)
    read_content = content_weighting(memory, iface.read_keys, iface.read_strengths)
    wr = read_weighting(backward, read_content, forward, iface.read_modes)
    reads = read(memory, wr)
    new_state = DNCState(state.h, state.c, memory, usage, link, precedence, wr, ww, reads)
    return new_state, allocation


class DNC(nn.Module):
    """Differentiable Neural Computer with an LSTM controller, R read heads and one write head.

    Args:
        input_size: X.
        output_size: Y.
        memory_slots: N.
        word_size: W.
        read_heads: R.
        hidden_size: H, the LSTM controller's size.

    ``forward(x [B, T, X], state=None) -> (y [B, T, Y], final DNCState)``; the controller sees
    [x_t; r_{t-1}] and the output is y_t = W_y h_t + W_r r_t (one linear layer on [h_t; r_t]).
    """

    def __init__(
        self,
        input_size: int,
        output_size: int,
        memory_slots: int = 16,
        word_size: int = 16,
        read_heads: int = 4,
        hidden_size: int = 64,
    ):
        super().__init__()
        self.input_size, self.output_size = input_size, output_size
        self.memory_slots, self.word_size, self.read_heads = memory_slots, word_size, read_heads
        self.hidden_size = hidden_size
        self.controller = nn.LSTMCell(input_size + read_heads * word_size, hidden_size)
        self.interface = nn.Linear(hidden_size, interface_size(word_size, read_heads))
        self.output = nn.Linear(hidden_size + read_heads * word_size, output_size)

    def config(self) -> dict[str, int]:
        """The constructor arguments (stored in checkpoints)."""
        return dict(
            input_size=self.input_size,
            output_size=self.output_size,
            memory_slots=self.memory_slots,
            word_size=self.word_size,
            read_heads=self.read_heads,
            hidden_size=self.hidden_size,
        )

    def initial_state(self, batch_size: int, device=None, dtype=None) -> DNCState:
        """All-zero state: empty memory, zero usage, no links, no reads yet."""
        p = self.interface.weight
        kw = dict(device=device or p.device, dtype=dtype or p.dtype)
        B, N, W, R, H = batch_size, self.memory_slots, self.word_size, self.read_heads, self.hidden_size
        return DNCState(
            h=torch.zeros(B, H, **kw),
            c=torch.zeros(B, H, **kw),
            memory=torch.zeros(B, N, W, **kw),
            usage=torch.zeros(B, N, **kw),
            link=torch.zeros(B, N, N, **kw),
            precedence=torch.zeros(B, N, **kw),
            read_weights=torch.zeros(B, R, N, **kw),
            write_weights=torch.zeros(B, N, **kw),
            read_vectors=torch.zeros(B, R, W, **kw),
        )

    def step(self, x: torch.Tensor, state: DNCState) -> tuple[torch.Tensor, DNCState, StepTrace]:
        """One time step. ``x: [B, X]`` -> (y [B, Y], new state, trace)."""
        B = x.shape[0]
        controller_in = torch.cat([x, state.read_vectors.reshape(B, -1)], dim=-1)
        h, c = self.controller(controller_in, (state.h, state.c))
        iface = parse_interface(self.interface(h), self.word_size, self.read_heads)
        new_state, allocation = memory_step(state._replace(h=h, c=c), iface)
        y = self.output(torch.cat([h, new_state.read_vectors.reshape(B, -1)], dim=-1))
        return y, new_state, StepTrace(iface, allocation, new_state)

    def forward(
        self, x: torch.Tensor, state: DNCState | None = None, trace: bool = False
    ) -> tuple[torch.Tensor, DNCState] | tuple[torch.Tensor, DNCState, list[StepTrace]]:
        """Run a sequence. ``x: [B, T, X]`` -> ``y: [B, T, Y]`` (logits), final state (and traces if ``trace``)."""
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(f"x: expected shape [B, T, {self.input_size}], got {list(x.shape)}")
        B, T, _ = x.shape
        if state is None:
            state = self.initial_state(B, x.device, x.dtype)
        traces: list[StepTrace] = []
        hidden, reads = [], []
        for t, x_t in enumerate(x.unbind(1)):
            controller_in = torch.cat([x_t, state.read_vectors.reshape(B, -1)], dim=-1)
            h, c = self.controller(controller_in, (state.h, state.c))
            iface = parse_interface(self.interface(h), self.word_size, self.read_heads)
            state, allocation = memory_step(state._replace(h=h, c=c), iface)
            hidden.append(h)
            reads.append(state.read_vectors.reshape(B, -1))
            if trace:
                traces.append(StepTrace(iface, allocation, state))
        # the output layer is applied once to all steps: y_t = W_y h_t + W_r r_t
        y = self.output(torch.cat([torch.stack(hidden, 1), torch.stack(reads, 1)], dim=-1))
        return (y, state, traces) if trace else (y, state)
