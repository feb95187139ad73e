"""The Neural Turing Machine (Graves, Wayne & Danihelka 2014, arXiv:1410.5401).

A controller (an LSTM or a feed-forward network, Section 3.4) emits, at every step, the parameters of its read
and write heads; the heads address the memory with the full pipeline of Section 3.3 (content weighting,
interpolation, circular shift, sharpening: :func:`mem_tutorial.memory.ntm_addressing`), read (Eq. 2) and write
by erase-then-add (Eq. 3-4). The module holds parameters only; the recurrent state is an :class:`NTMState`
passed in and returned.

Order of operations within one step t (a convention; the paper does not fix it):

1. controller: h_t = controller([x_t, r_{t-1}], state);
2. all heads (reads and writes) address M_{t-1} from h_t (one batched call);
3. read r_t = M_{t-1}^T w^r_t; then write M_t = erase-then-add(M_{t-1}, w^w_t, e_t, a_t);
4. output y_t = W_y [h_t, r_t] (logits; the tasks' outputs are bits).

Head parameter activations: key k (identity), strength beta = softplus (>= 0), gate g = sigmoid,
shift s = softmax over the S offsets (see :func:`mem_tutorial.memory.shift` for the direction), sharpening
gamma = 1 + softplus (>= 1), erase e = sigmoid, add a = tanh.

Memory initialisation (Collier & Beel 2018, "Implementing Neural Turing Machines", found ``constant`` best):
``constant`` (every cell ``MEMORY_INIT_CONSTANT``), ``learned`` (a parameter [N, W]), ``random`` (a fresh
N(0, 0.5^2) memory per sequence). Initial head weightings focus on slot 0 (one-hot), initial reads are the
corresponding rows of the initial memory.

Symbols: B batch, T time, N slots, W word size, R read heads, H write heads, S shift offsets, C controller size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from mem_tutorial.memory import access
from mem_tutorial.memory import addressing as addr
from mem_tutorial.memory._shapes import check_shape

#: Value of every memory cell with the ``constant`` initialisation (Collier & Beel 2018 use 1e-6).
MEMORY_INIT_CONSTANT = 1e-6
#: Standard deviation of the ``random`` memory initialisation.
MEMORY_INIT_STD = 0.5
MEMORY_INITS = ("constant", "learned", "random")


@dataclass
class NTMConfig:
    """Sizes and choices of an NTM. The defaults are the paper's copy-task setting (Section 4.1, Table 2)."""

    input_size: int = 9
    output_size: int = 8
    controller: str = "lstm"  # "lstm" or "feedforward"
    controller_size: int = 100
    memory_slots: int = 128  # N
    memory_width: int = 20  # W
    read_heads: int = 1  # R
    write_heads: int = 1  # H
    shift_range: int = 3  # S, odd: offsets -(S//2)..S//2
    memory_init: str = "constant"

    def to_dict(self) -> dict:
        return asdict(self)


class NTMState(NamedTuple):
    """Recurrent state of an NTM between steps."""

    memory: torch.Tensor  # [B, N, W]
    read_weights: torch.Tensor  # [B, R, N]
    write_weights: torch.Tensor  # [B, H, N]
    reads: torch.Tensor  # [B, R, W]
    controller: tuple[torch.Tensor, ...]  # LSTM: (h [B, C], c [B, C]); feed-forward: ()


class NTMTrace(NamedTuple):
    """What happened during a run, for plots: logits and every step's weightings."""

    logits: torch.Tensor  # [B, T, out]
    read_weights: torch.Tensor  # [B, T, R, N]
    write_weights: torch.Tensor  # [B, T, H, N]
    state: NTMState


class HeadParams(NamedTuple):
    """One step's head parameters for all R + H heads (reads first), plus the write vectors."""

    key: torch.Tensor  # [B, R+H, W]
    beta: torch.Tensor  # [B, R+H]
    gate: torch.Tensor  # [B, R+H]
    shift: torch.Tensor  # [B, R+H, S]
    gamma: torch.Tensor  # [B, R+H]
    erase: torch.Tensor  # [B, H, W]
    add: torch.Tensor  # [B, H, W]


class NTM(nn.Module):
    """Neural Turing Machine with an LSTM or feed-forward controller (parameters only; state is explicit)."""

    def __init__(self, config: NTMConfig | None = None, **overrides):
        super().__init__()
        cfg = config or NTMConfig()
        if overrides:
            cfg = NTMConfig(**{**cfg.to_dict(), **overrides})
        if cfg.controller not in ("lstm", "feedforward"):
            raise ValueError(f"controller must be 'lstm' or 'feedforward', got {cfg.controller!r}")
        if cfg.memory_init not in MEMORY_INITS:
            raise ValueError(f"memory_init must be one of {MEMORY_INITS}, got {cfg.memory_init!r}")
        if cfg.shift_range % 2 != 1:
            raise ValueError(f"shift_range must be odd (offsets -(S//2)..S//2), got {cfg.shift_range}")
        self.config = cfg
        R, H, W, S, C = cfg.read_heads, cfg.write_heads, cfg.memory_width, cfg.shift_range, cfg.controller_size
        ctrl_in = cfg.input_size + R * W
        if cfg.controller == "lstm":
            self.controller = nn.LSTMCell(ctrl_in, C)
        else:
            self.controller = nn.Linear(ctrl_in, C)
        # per head: key W, beta 1, gate 1, shift S, gamma 1; per write head also erase W, add W
        self._per_head = W + 3 + S
        self.heads = nn.Linear(C, (R + H) * self._per_head + H * 2 * W)
        self.output = nn.Linear(C + R * W, cfg.output_size)
        if cfg.memory_init == "learned":
            self.memory_bias = nn.Parameter(torch.full((cfg.memory_slots, W), MEMORY_INIT_CONSTANT))
        self._compiled_steps, self._chunk = None, 1  # set by compile_step()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Default PyTorch init, then head biases that start from a sensible addressing regime:
        no shift preferred (uniform logits), gamma = 1 + softplus(0) ~ 1.69, gate = sigmoid(0)."""
        nn.init.zeros_(self.heads.bias)
        if isinstance(self.controller, nn.LSTMCell):
            C = self.config.controller_size
            with torch.no_grad():  # forget-gate bias 1: remember by default
                self.controller.bias_ih[C : 2 * C].fill_(1.0)
                self.controller.bias_hh[C : 2 * C].zero_()

    def with_memory_slots(self, memory_slots: int) -> "NTM":
        """A copy of this NTM with a memory of ``memory_slots`` rows (N), same weights, same device and dtype.

        No parameter depends on N (the controller sees reads of size W, the heads emit keys of size W and a shift
        over S offsets), so a model trained with one N runs with another: a longer test sequence needs at least
        as many slots as it has vectors (the paper tests copy up to length 120 with N = 128). Impossible with the
        ``learned`` initial memory, which is an [N, W] parameter.
        """
        if self.config.memory_init == "learned":
            raise ValueError("memory_init='learned' holds an [N, W] parameter: the memory size cannot be changed")
        if memory_slots < 1:
            raise ValueError(f"memory_slots must be >= 1, got {memory_slots}")
        p = self.output.weight
        other = NTM(self.config, memory_slots=memory_slots).to(device=p.device, dtype=p.dtype)
        other.load_state_dict(self.state_dict())
        other.train(self.training)
        return other

    # --- state ---------------------------------------------------------------------------------------------
    def initial_state(
        self, batch_size: int, device: torch.device | str | None = None, generator: torch.Generator | None = None
    ) -> NTMState:
        """The state before the first step: initial memory, one-hot weightings at slot 0, matching reads."""
        cfg = self.config
        p = self.output.weight
        device = torch.device(device) if device is not None else p.device
        B, N, W = batch_size, cfg.memory_slots, cfg.memory_width
        if cfg.memory_init == "constant":
            memory = torch.full((B, N, W), MEMORY_INIT_CONSTANT, device=device, dtype=p.dtype)
        elif cfg.memory_init == "learned":
            memory = self.memory_bias.to(device=device, dtype=p.dtype).unsqueeze(0).expand(B, N, W).clone()
        elif generator is None or generator.device == device:  # sampled where it is used, in the model's dtype
            memory = torch.randn(B, N, W, generator=generator, device=device, dtype=p.dtype).mul_(MEMORY_INIT_STD)
        else:  # a generator on another device (e.g. a CPU generator for a CUDA model) samples there: one copy
            noise = torch.randn(B, N, W, generator=generator, device=generator.device, dtype=p.dtype)
            memory = noise.mul_(MEMORY_INIT_STD).to(device, non_blocking=True)
        one_hot = torch.zeros(B, 1, N, device=device, dtype=p.dtype)
        one_hot[..., 0] = 1.0  # a fill on the device, no host copy
        read_w = one_hot.expand(B, cfg.read_heads, N).clone()
        write_w = one_hot.expand(B, cfg.write_heads, N).clone()
        reads = access.read(memory, read_w)
        if cfg.controller == "lstm":
            zeros = torch.zeros(B, cfg.controller_size, device=device, dtype=p.dtype)
            ctrl: tuple[torch.Tensor, ...] = (zeros, zeros.clone())
        else:
            ctrl = ()
        return NTMState(memory, read_w, write_w, reads, ctrl)

    # --- one step ------------------------------------------------------------------------------------------
    def head_params(self, h: torch.Tensor) -> HeadParams:
        """Split the controller output h [B, C] into the heads' parameters (activations in the module doc)."""
        cfg = self.config
        B, R, H, W, S = h.shape[0], cfg.read_heads, cfg.write_heads, cfg.memory_width, cfg.shift_range
        raw = self.heads(h)
        addr_raw = raw[:, : (R + H) * self._per_head].view(B, R + H, self._per_head)
        write_raw = raw[:, (R + H) * self._per_head :].view(B, H, 2 * W)
        key = addr_raw[..., :W]
        beta = F.softplus(addr_raw[..., W])
        gate = torch.sigmoid(addr_raw[..., W + 1])
        shift = torch.softmax(addr_raw[..., W + 2 : W + 2 + S], dim=-1)
        gamma = 1 + F.softplus(addr_raw[..., W + 2 + S])
        erase = torch.sigmoid(write_raw[..., :W])
        add = torch.tanh(write_raw[..., W:])
        return HeadParams(key, beta, gate, shift, gamma, erase, add)

    def step(self, x: torch.Tensor, state: NTMState) -> tuple[torch.Tensor, NTMState]:
        """One time step. x: [B, input_size] -> (logits [B, output_size], new state)."""
        cfg = self.config
        R = cfg.read_heads
        B = x.shape[0]
        ctrl_in = torch.cat([x, state.reads.reshape(B, -1)], dim=-1)
        if cfg.controller == "lstm":
            h, c = self.controller(ctrl_in, state.controller)
            ctrl_state: tuple[torch.Tensor, ...] = (h, c)
        else:
            h, ctrl_state = torch.relu(self.controller(ctrl_in)), ()
        p = self.head_params(h)
        prev_w = torch.cat([state.read_weights, state.write_weights], dim=1)  # [B, R+H, N]
        w = addr.ntm_addressing(state.memory, p.key, p.beta, p.gate, p.shift, p.gamma, prev_w)
        read_w, write_w = w[:, :R], w[:, R:]
        reads = access.read(state.memory, read_w)  # [B, R, W]
        memory = access.write(state.memory, write_w, p.erase, p.add)
        logits = self.output(torch.cat([h, reads.reshape(B, -1)], dim=-1))
        return logits, NTMState(memory, read_w, write_w, reads, ctrl_state)

    def steps(self, inputs: torch.Tensor, state: NTMState) -> NTMTrace:
        """:meth:`step` over every time step of ``inputs`` [B, K, input_size] (a Python loop over K)."""
        logits, reads_w, writes_w = [], [], []
        for k in range(inputs.shape[1]):
            y, state = self.step(inputs[:, k], state)
            logits.append(y)
            reads_w.append(state.read_weights)
            writes_w.append(state.write_weights)
        return NTMTrace(torch.stack(logits, 1), torch.stack(reads_w, 1), torch.stack(writes_w, 1), state)

    def compile_step(self, chunk: int = 4, **options) -> "NTM":
        """Run the time steps through ``torch.compile`` from now on (opt-in speed-up for long training runs).

        At batch 1 an NTM step is a few hundred tiny tensor operations, so eager PyTorch spends its time on
        per-operation overhead. Compiled, ``chunk`` consecutive steps become one fused graph (forward and
        backward), and a sequence of any length T runs as 1 step, (T - 1) // chunk chunks, then single steps:
        three graphs (the first step, a chunk, a later step) per batch size, grad mode and device, compiled once
        (seconds to a minute or two; inductor caches them on disk). Numerics match the eager steps to float
        rounding. Measured on a 2-core CPU: 2.7x more training sequences per second at batch 1, 1.2x at batch 32
        (benchmarks/RESULTS.md, Chapter 2). Needs a C++ compiler on CPU (Linux, macOS and Colab have one).
        ``options`` go to ``torch.compile`` (default ``dynamic=False``).
        Returns ``self``; :meth:`with_memory_slots` copies are not compiled.
        """
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        self._compiled_steps = torch.compile(self.steps, **{"dynamic": False, **options})
        self._chunk = chunk
        return self

    # --- whole sequences -----------------------------------------------------------------------------------
    def forward(self, inputs: torch.Tensor, state: NTMState | None = None) -> tuple[torch.Tensor, NTMState]:
        """Run over a sequence. inputs: [B, T, input_size] -> (logits [B, T, output_size], final state)."""
        trace = self._unroll(inputs, state, record=False)
        return trace.logits, trace.state

    def trace(self, inputs: torch.Tensor, state: NTMState | None = None) -> NTMTrace:
        """Like :meth:`forward` but also returns every step's read and write weightings (for plots)."""
        return self._unroll(inputs, state, record=True)

    def _unroll(self, inputs: torch.Tensor, state: NTMState | None, record: bool) -> NTMTrace:
        check_shape("inputs", inputs, "B T I", {"I": self.config.input_size})
        if state is None:
            state = self.initial_state(inputs.shape[0], inputs.device)
        if self._compiled_steps is None:
            trace = self.steps(inputs, state)
        else:
            parts = self._compiled_unroll(inputs, state)
            trace = NTMTrace(*(torch.cat([getattr(p, f) for p in parts], 1)
                               for f in ("logits", "read_weights", "write_weights")), parts[-1].state)
        if not record:
            empty = trace.logits.new_zeros(0)
            return trace._replace(read_weights=empty, write_weights=empty)
        return trace

    def _compiled_unroll(self, inputs: torch.Tensor, state: NTMState) -> list[NTMTrace]:
        """The compiled steps over inputs [B, T, I]: step 0, whole chunks of K steps, then single steps."""
        T = inputs.shape[1]
        # time-major storage with standard strides: every slice x[:, t:t+K] has the same strides whatever T
        inputs = inputs.transpose(0, 1).clone(memory_format=torch.contiguous_format).transpose(0, 1)
        K = self._chunk
        chunks = (T - 1) // K  # step 0 alone (its initial state needs no grad), then whole chunks, then single steps
        sizes = [1] + [K] * chunks + [1] * (T - 1 - K * chunks)
        parts, t = [], 0
        for size in sizes:
            parts.append(self._compiled_steps(inputs[:, t : t + size], state))
            state, t = parts[-1].state, t + size
        return parts
