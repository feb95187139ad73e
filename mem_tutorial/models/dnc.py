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

import functools
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
from mem_tutorial.memory.linkage import (
    sparse_precedence_update,
    sparse_temporal_link_update,
    temporal_link_update_plain,
)

#: Link options of :class:`DNC`: the paper's exact N x N update, or the sparse DNC's (Rae et al. 2016).
LINKS = ("exact", "sparse")
#: Default K of the sparse link (Rae et al. 2016 use K = 4 or 8 non-zero entries per weighting).
SPARSE_LINK_K = 8


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


def memory_step(
    state: DNCState,
    iface: Interface,
    *,
    temporal_link_update=temporal_link_update,
    precedence_update=precedence_update,
) -> tuple[DNCState, torch.Tensor]:
    """One step of the DNC's memory (everything but the controller), in the order of the paper's Methods.

    Allocation (psi, u, a), write weighting, erase-then-add write, link and precedence, then the read
    weightings (backward / content / forward) on the *new* memory and the read vectors.

    Args:
        state: the previous :class:`DNCState` (its ``h``/``c`` are passed through unchanged).
        iface: this step's :class:`Interface`.
        temporal_link_update, precedence_update: the link and precedence updates, by default the DNC's exact
            ones from :mod:`mem_tutorial.memory.linkage`; the sparse DNC's (``DNC(link="sparse")``) or the
            compiler-friendly plain-tensor link (:meth:`DNC.compile_step`) are passed here.

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
        link: ``"exact"`` (the default: the paper's N x N link update, Graves et al. 2016) or ``"sparse"`` (the
            sparse DNC's link, Rae et al. 2016: the write weighting and the precedence keep their top ``link_k``
            entries, and the link update costs O(N K) instead of O(N^2); see
            :func:`mem_tutorial.memory.linkage.sparse_temporal_link_update`). Equal when ``link_k >= N``.
        link_k: K for ``link="sparse"`` (default :data:`SPARSE_LINK_K`).

    ``forward(x [B, T, X], state=None) -> (y [B, T, Y], final DNCState)``; the controller sees
    [x_t; r_{t-1}] and the output is y_t = W_y h_t + W_r r_t (one linear layer on [h_t; r_t]).
    :meth:`compile_step` makes the time steps run through ``torch.compile`` (opt-in, faster).
    """

    def __init__(
        self,
        input_size: int,
        output_size: int,
        memory_slots: int = 16,
        word_size: int = 16,
        read_heads: int = 4,
        hidden_size: int = 64,
        link: str = "exact",
        link_k: int | None = None,
    ):
        super().__init__()
        if link not in LINKS:
            raise ValueError(f"link must be one of {LINKS}, got {link!r}")
        if link_k is not None and link_k < 1:
            raise ValueError(f"link_k must be >= 1, got {link_k}")
        self.input_size, self.output_size = input_size, output_size
        self.memory_slots, self.word_size, self.read_heads = memory_slots, word_size, read_heads
        self.hidden_size = hidden_size
        self.link, self.link_k = link, link_k
        self.controller = nn.LSTMCell(input_size + read_heads * word_size, hidden_size)
        self.interface = nn.Linear(hidden_size, interface_size(word_size, read_heads))
        self.output = nn.Linear(hidden_size + read_heads * word_size, output_size)
        self._compiled_steps, self._chunk = None, 1  # set by compile_step()

    def config(self) -> dict:
        """The constructor arguments (stored in checkpoints; ``link``/``link_k`` only when not the default)."""
        cfg = dict(
            input_size=self.input_size,
            output_size=self.output_size,
            memory_slots=self.memory_slots,
            word_size=self.word_size,
            read_heads=self.read_heads,
            hidden_size=self.hidden_size,
        )
        if self.link != "exact":
            cfg.update(link=self.link, link_k=self.link_k)
        return cfg

    def initial_state(self, batch_size: int, device=None, dtype=None) -> DNCState:
        """All-zero state: empty memory, zero usage, no links, no reads yet (on ``device``/``dtype``, by default
        the parameters')."""
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

    def _linkage(self, plain: bool = False) -> dict:
        """The link and precedence updates :func:`memory_step` uses for this model's ``link`` option."""
        if self.link == "sparse":
            k = self.link_k or SPARSE_LINK_K
            return dict(temporal_link_update=functools.partial(sparse_temporal_link_update, k=k),
                        precedence_update=functools.partial(sparse_precedence_update, k=k))
        return dict(temporal_link_update=temporal_link_update_plain if plain else temporal_link_update,
                    precedence_update=precedence_update)

    def _controller_step(self, x: torch.Tensor, state: DNCState) -> tuple[DNCState, Interface]:
        """Controller: (h, c) = LSTM([x_t; r_{t-1}], (h, c)) and the parsed interface vector xi_t = W_xi h_t."""
        B = x.shape[0]
        controller_in = torch.cat([x, state.read_vectors.reshape(B, -1)], dim=-1)
        h, c = self.controller(controller_in, (state.h, state.c))
        return state._replace(h=h, c=c), parse_interface(self.interface(h), self.word_size, self.read_heads)

    def step(self, x: torch.Tensor, state: DNCState) -> tuple[torch.Tensor, DNCState, StepTrace]:
        """One time step. ``x: [B, X]`` -> (y [B, Y], new state, trace)."""
        B = x.shape[0]
        state, iface = self._controller_step(x, state)
        new_state, allocation = memory_step(state, iface, **self._linkage())
        y = self.output(torch.cat([new_state.h, new_state.read_vectors.reshape(B, -1)], dim=-1))
        return y, new_state, StepTrace(iface, allocation, new_state)

    def steps(self, x: torch.Tensor, state: DNCState, plain: bool = False) -> tuple[torch.Tensor, torch.Tensor, DNCState]:
        """The controller and memory over every step of ``x`` [B, K, X] (a Python loop over K).

        Returns (hidden states [B, K, H], read vectors [B, K, R*W], final state); the output layer is left to
        the caller (applied once to all steps). ``plain`` selects the compiler-friendly link update.
        """
        B = x.shape[0]
        linkage = self._linkage(plain)
        hidden, reads = [], []
        for x_t in x.unbind(1):
            state, iface = self._controller_step(x_t, state)
            state, _ = memory_step(state, iface, **linkage)
            hidden.append(state.h)
            reads.append(state.read_vectors.reshape(B, -1))
        return torch.stack(hidden, 1), torch.stack(reads, 1), state

    def _steps_plain(self, x: torch.Tensor, state: DNCState) -> tuple[torch.Tensor, torch.Tensor, DNCState]:
        """:meth:`steps` with the plain-tensor link update (what :meth:`compile_step` compiles)."""
        return self.steps(x, state, plain=True)

    def compile_step(self, chunk: int = 4, **options) -> "DNC":
        """Run the time steps through ``torch.compile`` from now on (opt-in speed-up), as
        :meth:`mem_tutorial.models.ntm.NTM.compile_step` does.

        A DNC step is about a hundred small tensor operations (several hundred with the backward pass), so at
        small batch eager PyTorch spends its time on per-operation overhead. Compiled, ``chunk`` consecutive
        steps become one fused graph (forward and backward) and a sequence of any length T runs as 1 eager step,
        (T - 1) // chunk compiled chunks, then the remaining steps eager: one graph per batch size, grad mode,
        dtype and device, compiled once (inductor caches it on disk; see benchmarks/results/dnc_section.md for
        the time it takes). The link update is the plain-tensor formula
        (:func:`mem_tutorial.memory.linkage.temporal_link_update_plain`), which the compiler fuses; numerics
        match the eager model to float rounding. ``forward(..., trace=True)`` and :meth:`step` stay eager.
        Needs a C++ compiler on CPU. ``options`` go to ``torch.compile`` (default ``dynamic=False``).
        Returns ``self``.
        """
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        self._compiled_steps = torch.compile(self._steps_plain, **{"dynamic": False, **options})
        self._chunk = chunk
        return self

    def _compiled_unroll(self, x: torch.Tensor, state: DNCState) -> tuple[torch.Tensor, torch.Tensor, DNCState]:
        """x [B, T, X]: step 0 eager, whole chunks of K steps compiled, the last (T - 1) % K steps eager.

        One compiled graph (forward and backward) per batch size, grad mode, dtype and device: step 0 (whose
        initial state needs no gradient) and a short tail would each need a graph of their own, which would
        double the compilation time for little gain."""
        T = x.shape[1]
        # time-major storage with standard strides: every slice x[:, t:t+K] has the same strides whatever T
        x = x.transpose(0, 1).clone(memory_format=torch.contiguous_format).transpose(0, 1)
        K = self._chunk
        chunks = (T - 1) // K
        parts = [(self.steps, 0, 1)] + [(self._compiled_steps, 1 + K * c, K) for c in range(chunks)]
        if 1 + K * chunks < T:
            parts.append((self.steps, 1 + K * chunks, T - 1 - K * chunks))
        hidden, reads = [], []
        for run, t, size in parts:
            h, r, state = run(x[:, t : t + size], state)
            hidden.append(h)
            reads.append(r)
        return torch.cat(hidden, 1), torch.cat(reads, 1), state

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
        if trace:
            hidden, reads = [], []
            for x_t in x.unbind(1):
                state, iface = self._controller_step(x_t, state)
                state, allocation = memory_step(state, iface, **self._linkage())
                hidden.append(state.h)
                reads.append(state.read_vectors.reshape(B, -1))
                traces.append(StepTrace(iface, allocation, state))
            hidden_t, reads_t = torch.stack(hidden, 1), torch.stack(reads, 1)
        elif self._compiled_steps is not None and T > 0:
            hidden_t, reads_t, state = self._compiled_unroll(x, state)
        else:
            hidden_t, reads_t, state = self.steps(x, state)
        # the output layer is applied once to all steps: y_t = W_y h_t + W_r r_t
        y = self.output(torch.cat([hidden_t, reads_t], dim=-1))
        return (y, state, traces) if trace else (y, state)
