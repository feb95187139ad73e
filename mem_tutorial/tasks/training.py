"""Training recurrent models on the algorithmic tasks: optimisers, clipping, loss, convergence counting.

Knows tasks and optimisers, not particular models: any ``nn.Module`` whose ``forward(inputs [B, T, in])`` returns
``(logits [B, T, out], state)`` works (the NTM, the DNC, the LSTM baseline).

Paper settings (Graves et al. 2014, Section 4): RMSProp with momentum 0.9, learning rate 1e-4, every gradient
component clipped to [-10, 10] (``GRAD_CLIP``). Adam (lr 1e-3 by default) with batches converges much faster on a
CPU (see ``benchmarks/RESULTS.md``, Chapter 2). Progress is counted in training SEQUENCES, so runs at different
batch sizes compare; the paper's "cost per sequence" is :func:`mem_tutorial.tasks.bits_error`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from mem_tutorial.tasks.algorithmic import TASKS, TaskBatch, bits_error, cross_entropy_bits
from mem_tutorial.train import History, train

#: The paper clips each gradient component to [-GRAD_CLIP, GRAD_CLIP].
GRAD_CLIP = 10.0
#: Default learning rates: the paper's RMSProp, and Adam.
DEFAULT_LR = {"rmsprop": 1e-4, "adam": 1e-3}


def make_optimizer(model: nn.Module, name: str = "adam", lr: float | None = None) -> torch.optim.Optimizer:
    """``"rmsprop"``: the paper's RMSProp (momentum 0.9, lr 1e-4, alpha 0.95); ``"adam"``: Adam (lr 1e-3)."""
    name = name.lower()
    if name not in DEFAULT_LR:
        raise ValueError(f"optimizer must be one of {sorted(DEFAULT_LR)}, got {name!r}")
    lr = DEFAULT_LR[name] if lr is None else lr
    if name == "rmsprop":
        return torch.optim.RMSprop(model.parameters(), lr=lr, momentum=0.9, alpha=0.95, eps=1e-8)
    return torch.optim.Adam(model.parameters(), lr=lr)


def clip_gradients(model: nn.Module, clip: float | None = GRAD_CLIP) -> None:
    """Clip every gradient component to [-clip, clip] (the paper's scheme; ``None`` disables it)."""
    if clip is not None:
        torch.nn.utils.clip_grad_value_(model.parameters(), clip)


def task_loss(logits: torch.Tensor, batch: TaskBatch) -> torch.Tensor:
    """Training loss: binary cross-entropy per scored bit, in nats, averaged over the batch's scored bits."""
    bits = cross_entropy_bits(logits, batch.targets, batch.masks)  # [B] bits per sequence
    scored = batch.masks.sum() * batch.targets.shape[-1]
    return bits.sum() * 0.6931471805599453 / scored.clamp_min(1)


class ConvergenceMonitor:
    """Counts training sequences until the cost averaged over the last ``window`` sequences is < ``threshold``.

    The criterion is checked once per update (per training batch), so ``converged_at`` is a multiple of
    the batch size. ``converged_at``: the number of sequences seen when that first happened (None before). ``relapsed``:
    whether the windowed average later exceeded ``threshold`` again (checked once per update).

    :meth:`push` records a batch's costs without reading them (they may stay on the GPU); they are read on the
    host, all pending batches at once, when ``mean``, ``converged_at``, ``relapsed_at`` or ``worst_after`` is
    next read, with the same per-update checks as if each had been read at once. :meth:`update` is push + read.
    """

    def __init__(self, window: int = 1000, threshold: float = 0.1):
        self.window, self.threshold = window, threshold
        self.costs: deque[float] = deque(maxlen=window)
        self.total = 0.0
        self.seen = 0
        self._pending: list[torch.Tensor] = []
        self._converged_at: int | None = None
        self._relapsed_at: int | None = None
        self._worst_after = 0.0
        self._read = 0  # sequences already read

    def push(self, costs_per_sequence: torch.Tensor) -> None:
        """Record one update's costs [B] (any device) without a host synchronisation."""
        self._pending.append(costs_per_sequence.detach().reshape(-1))
        self.seen += costs_per_sequence.numel()

    def update(self, costs_per_sequence: torch.Tensor) -> float:
        """:meth:`push`, then read everything pending; returns the windowed mean."""
        self.push(costs_per_sequence)
        return self.mean

    def _flush(self) -> None:
        if not self._pending:
            return
        sizes = [len(c) for c in self._pending]
        values = torch.cat([c.to(self._pending[0].device) for c in self._pending]).tolist()  # one read
        self._pending.clear()
        pos = 0
        for size in sizes:
            for c in values[pos : pos + size]:
                if len(self.costs) == self.window:
                    self.total -= self.costs[0]
                self.costs.append(c)
                self.total += c
            pos += size
            self._read += size
            if len(self.costs) == self.window:
                mean = self.total / len(self.costs)
                if self._converged_at is None and mean < self.threshold:
                    self._converged_at = self._read
                elif self._converged_at is not None:
                    self._worst_after = max(self._worst_after, mean)
                    if mean >= self.threshold and self._relapsed_at is None:
                        self._relapsed_at = self._read

    @property
    def mean(self) -> float:
        self._flush()
        return self.total / max(1, len(self.costs))

    @property
    def converged_at(self) -> int | None:
        self._flush()
        return self._converged_at

    @property
    def relapsed_at(self) -> int | None:
        self._flush()
        return self._relapsed_at

    @property
    def worst_after(self) -> float:
        self._flush()
        return self._worst_after


@dataclass
class TaskRun:
    """Result of :func:`train_on_task`."""

    history: History
    monitor: ConvergenceMonitor
    sequences: int
    extra: dict[str, Any] = field(default_factory=dict)


def train_step(model: nn.Module, opt: torch.optim.Optimizer, batch: TaskBatch, clip: float | None = GRAD_CLIP
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """One update on one batch: forward, :func:`task_loss`, backward, :func:`clip_gradients`, optimiser step.

    Returns:
        (loss [] detached, wrong bits per sequence [B]).
    """
    logits, _ = model(batch.inputs)
    loss = task_loss(logits, batch)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    clip_gradients(model, clip)
    opt.step()
    with torch.no_grad():
        cost = bits_error(logits.detach(), batch.targets, batch.masks)
    return loss.detach(), cost


def train_on_task(
    model: nn.Module,
    task: str | Callable[..., TaskBatch] = "copy",
    *,
    batch_size: int = 16,
    max_sequences: int = 50_000,
    optimizer: torch.optim.Optimizer | str = "adam",
    lr: float | None = None,
    clip: float | None = GRAD_CLIP,
    seed: int = 0,
    device: torch.device | str | None = None,
    task_kwargs: dict | None = None,
    window: int = 1000,
    threshold: float = 0.1,
    stop_after: int | None = 0,
    log_every: int = 10,
    desc: str = "training",
    monitor: ConvergenceMonitor | None = None,
    history: History | None = None,
    anneal_on_converge: float | None = None,
) -> TaskRun:
    """Train ``model`` on a task, counting sequences until the windowed cost falls below ``threshold``.

    Args:
        task: a name in :data:`TASKS` or a generator function ``(batch_size, generator=..., device=...)``.
        max_sequences: stop after this many training sequences.
        optimizer: an optimiser or a name for :func:`make_optimizer` (with ``lr``).
        stop_after: once converged, train this many more sequences and stop (None: never stop early).
        log_every: record metrics every this many updates (``loss``: per-bit BCE in nats; ``bits``: the batch's
            mean cost per sequence; ``avg_bits``: the windowed cost; ``sequences``: sequences seen).
        anneal_on_converge: once the windowed cost first falls below ``threshold``, multiply the learning rate by
            this factor (e.g. 0.1), so that Adam's fixed-size steps on near-zero gradients do not kick a
            converged model out of its solution (None: keep the learning rate).

    Returns:
        A :class:`TaskRun` with the history and the :class:`ConvergenceMonitor`.
    """
    make_batch = TASKS[task] if isinstance(task, str) else task
    device = torch.device(device) if device is not None else next(model.parameters()).device
    gen = torch.Generator(device="cpu").manual_seed(seed)
    opt = make_optimizer(model, optimizer, lr) if isinstance(optimizer, str) else optimizer
    mon = monitor or ConvergenceMonitor(window, threshold)
    kwargs = dict(task_kwargs or {})
    steps = -(-max_sequences // batch_size)

    annealed = False

    def step(i: int) -> dict:
        # metrics stay on the device; train() reads them every log_every steps (no per-step host sync)
        nonlocal annealed
        batch = make_batch(batch_size, generator=gen, **kwargs).to(device)
        loss, cost = train_step(model, opt, batch, clip)
        mon.push(cost)
        if anneal_on_converge is not None and not annealed and mon.converged_at is not None:
            # annealing must act on the update that converged: read the costs every step until then
            annealed = True
            for group in opt.param_groups:
                group["lr"] *= anneal_on_converge
        return {"loss": loss, "bits": cost.mean(), "avg_bits": lambda: mon.mean, "sequences": mon.seen}

    def stop(h: History) -> bool:
        return stop_after is not None and mon.converged_at is not None and mon.seen >= mon.converged_at + stop_after

    model.train()
    hist = train(step, steps, log_every=log_every, desc=desc, history=history, stop=stop,
                 plot_metrics=("bits",))
    return TaskRun(hist, mon, mon.seen)


@torch.no_grad()
def sequence_errors(
    model: nn.Module,
    task: str | Callable[..., TaskBatch] = "copy",
    *,
    sequences: int = 100,
    batch_size: int = 50,
    seed: int = 1234,
    device: torch.device | str | None = None,
    task_kwargs: dict | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Wrong bits and cross-entropy (bits) of EACH of ``sequences`` fresh sequences from a fixed seed.

    The sequences depend only on ``seed``, ``sequences``, ``batch_size`` and ``task_kwargs`` (not on the model), so
    two models evaluated with the same arguments see the same sequences.

    Returns:
        ``(errors [sequences], cross_entropy [sequences])`` on the CPU. The mean of ``errors`` is the paper's cost
        per sequence; its distribution shows whether a mean comes from many small slips or a few failures.
    """
    if sequences < 1 or batch_size < 1:
        raise ValueError(f"sequences and batch_size must be >= 1, got {sequences} and {batch_size}")
    make_batch = TASKS[task] if isinstance(task, str) else task
    device = torch.device(device) if device is not None else next(model.parameters()).device
    gen = torch.Generator(device="cpu").manual_seed(seed)
    was_training = model.training
    model.eval()
    errors, ce, n = [], [], 0
    while n < sequences:
        b = min(batch_size, sequences - n)
        batch = make_batch(b, generator=gen, **(task_kwargs or {})).to(device)
        logits, _ = model(batch.inputs)
        errors.append(bits_error(logits, batch.targets, batch.masks))
        ce.append(cross_entropy_bits(logits, batch.targets, batch.masks))
        n += b
    model.train(was_training)
    return torch.cat(errors).cpu(), torch.cat(ce).cpu()  # one copy to the host at the end


@torch.no_grad()
def evaluate(
    model: nn.Module,
    task: str | Callable[..., TaskBatch] = "copy",
    *,
    sequences: int = 100,
    batch_size: int = 50,
    seed: int = 1234,
    device: torch.device | str | None = None,
    task_kwargs: dict | None = None,
) -> dict[str, float]:
    """Summary of :func:`sequence_errors` on fresh sequences from a fixed seed.

    Returns a dict: ``bits_error`` (mean wrong bits per sequence), ``cross_entropy_bits`` (mean cross-entropy in
    bits per sequence), ``perfect`` (fraction of sequences with no wrong bit) and ``worst`` (the most wrong bits
    in one sequence).
    """
    errors, ce = sequence_errors(model, task, sequences=sequences, batch_size=batch_size, seed=seed, device=device,
                                 task_kwargs=task_kwargs)
    return {"bits_error": errors.mean().item(), "cross_entropy_bits": ce.mean().item(),
            "perfect": (errors == 0).double().mean().item(), "worst": errors.max().item()}
