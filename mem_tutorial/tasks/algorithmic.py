"""The NTM paper's algorithmic tasks as batched, seeded generators (Graves, Wayne & Danihelka 2014, Section 4).

Every generator returns a :class:`TaskBatch` of padded tensors, built without Python loops over the batch:

- ``inputs``  [B, T, in]:  the input vectors, zero after a sequence's end;
- ``targets`` [B, T, out]: the wanted outputs (bits in {0, 1}), zero where nothing is asked;
- ``masks``   [B, T]:      1 at the steps whose output is scored, else 0;
- ``lengths`` [B]:         the number of steps each sequence really uses (T = max over the batch).

Sequences are left-aligned: a model runs over all T steps and the masks select what is scored, so one batch can
mix lengths. Randomness comes only from the ``generator`` argument (a ``torch.Generator``; a fresh unseeded one
when omitted), and the batch is built on the generator's device and moved to ``device``.

Metrics (Section 4.1, "cost per sequence"): :func:`bits_error` counts wrong bits per sequence after
thresholding the outputs at 0.5; :func:`cross_entropy_bits` is the binary cross-entropy in bits per sequence.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from mem_tutorial.memory._shapes import check_shape

#: ln(2): converts nats to bits.
LN2 = 0.6931471805599453


class TaskBatch(NamedTuple):
    """One batch of an algorithmic task (see the module docstring for the shapes)."""

    inputs: torch.Tensor  # [B, T, in]
    targets: torch.Tensor  # [B, T, out]
    masks: torch.Tensor  # [B, T]
    lengths: torch.Tensor  # [B] steps used by each sequence

    def to(self, device: torch.device | str) -> "TaskBatch":
        return TaskBatch(*(t.to(device) for t in self))


def _setup(generator: torch.Generator | None, device) -> tuple[torch.Generator, torch.device, torch.device]:
    if generator is None:
        generator = torch.Generator()
        generator.seed()
    gen_device = generator.device
    return generator, gen_device, torch.device(device) if device is not None else gen_device


def _randint(lo: int, hi: int, size, gen: torch.Generator, dev: torch.device) -> torch.Tensor:
    """Integers uniform in [lo, hi] (both inclusive)."""
    return torch.randint(lo, hi + 1, size, generator=gen, device=dev)


def _bits(size, gen: torch.Generator, dev: torch.device) -> torch.Tensor:
    return torch.randint(0, 2, size, generator=gen, device=dev).float()


def _check_range(name: str, lo: int, hi: int, minimum: int) -> None:
    if not (minimum <= lo <= hi):
        raise ValueError(f"{name}: need {minimum} <= min <= max, got min={lo}, max={hi}")


def copy_task(
    batch_size: int,
    *,
    min_len: int = 1,
    max_len: int = 20,
    width: int = 8,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> TaskBatch:
    """Copy (Section 4.1): read a sequence of random ``width``-bit vectors, then reproduce it.

    Layout for a sequence of length L (lengths uniform in [min_len, max_len]):
    steps 0..L-1 carry the vectors (channels 0..width-1), step L the delimiter (channel ``width``),
    steps L+1..2L ask for the copy (input zero). ``inputs`` [B, T, width+1], ``targets`` [B, T, width],
    T = 2 * max(L) + 1.
    """
    _check_range("copy_task lengths", min_len, max_len, 1)
    gen, gdev, out_dev = _setup(generator, device)
    B = batch_size
    L = _randint(min_len, max_len, (B,), gen, gdev)  # [B]
    T = 2 * int(L.max()) + 1
    seq = _bits((B, int(L.max()), width), gen, gdev)
    t = torch.arange(T, device=gdev).unsqueeze(0)  # [1, T]
    Lc = L.unsqueeze(1)
    in_seq = t < Lc  # [B, T]
    out_step = (t > Lc) & (t <= 2 * Lc)
    src = seq.gather(1, (t.clamp(max=seq.shape[1] - 1)).expand(B, T).unsqueeze(-1).expand(B, T, width))
    inputs = torch.zeros(B, T, width + 1, device=gdev)
    inputs[..., :width] = src * in_seq.unsqueeze(-1)
    inputs[..., width] = (t == Lc).float()
    out_idx = (t - Lc - 1).clamp(0, seq.shape[1] - 1)
    targets = seq.gather(1, out_idx.unsqueeze(-1).expand(B, T, width)) * out_step.unsqueeze(-1)
    return TaskBatch(inputs, targets, out_step.float(), 2 * L + 1).to(out_dev)


def repeat_copy_task(
    batch_size: int,
    *,
    min_len: int = 1,
    max_len: int = 10,
    min_repeats: int = 1,
    max_repeats: int = 10,
    width: int = 8,
    repeat_norm: float | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> TaskBatch:
    """Repeat copy (Section 4.2): output a sequence a given number of times, then an end marker.

    Layout (length L, repeat count n): steps 0..L-1 carry the vectors; step L carries the delimiter
    (channel ``width``) and the normalised repeat count n / ``repeat_norm`` (channel ``width+1``;
    ``repeat_norm`` defaults to ``max_repeats``, so training counts lie in (0, 1]); steps L+1..L+nL ask for
    the n copies and step L+nL+1 for the end marker (target channel ``width``).
    ``inputs`` [B, T, width+2], ``targets`` [B, T, width+1], T = max(L + nL + 2).
    """
    _check_range("repeat_copy_task lengths", min_len, max_len, 1)
    _check_range("repeat_copy_task repeats", min_repeats, max_repeats, 1)
    gen, gdev, out_dev = _setup(generator, device)
    norm = float(repeat_norm if repeat_norm is not None else max_repeats)
    B = batch_size
    L = _randint(min_len, max_len, (B,), gen, gdev)
    n = _randint(min_repeats, max_repeats, (B,), gen, gdev)
    lengths = L + n * L + 2
    T = int(lengths.max())
    seq = _bits((B, int(L.max()), width), gen, gdev)
    t = torch.arange(T, device=gdev).unsqueeze(0)
    Lc, nc = L.unsqueeze(1), n.unsqueeze(1)
    in_seq = t < Lc
    out_step = (t > Lc) & (t <= Lc + nc * Lc)
    end_step = t == Lc + nc * Lc + 1
    cap = seq.shape[1] - 1
    src = seq.gather(1, t.clamp(max=cap).expand(B, T).unsqueeze(-1).expand(B, T, width))
    inputs = torch.zeros(B, T, width + 2, device=gdev)
    inputs[..., :width] = src * in_seq.unsqueeze(-1)
    inputs[..., width] = (t == Lc).float()
    inputs[..., width + 1] = (t == Lc).float() * (nc.float() / norm)
    out_idx = torch.remainder((t - Lc - 1).clamp(min=0), Lc).clamp(max=cap)
    targets = torch.zeros(B, T, width + 1, device=gdev)
    targets[..., :width] = seq.gather(1, out_idx.unsqueeze(-1).expand(B, T, width)) * out_step.unsqueeze(-1)
    targets[..., width] = end_step.float()
    masks = (out_step | end_step).float()
    return TaskBatch(inputs, targets, masks, lengths).to(out_dev)


def associative_recall_task(
    batch_size: int,
    *,
    min_items: int = 2,
    max_items: int = 6,
    item_len: int = 3,
    width: int = 6,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> TaskBatch:
    """Associative recall (Section 4.3): after a list of items and a query item, output the item that followed it.

    An item is ``item_len`` (3) random ``width``-bit (6) vectors. With K items (uniform in [min_items,
    max_items]), each item is preceded by an item delimiter (channel ``width``): steps 4k (delimiter) and
    4k+1..4k+3 (vectors) for k < K. Then a query delimiter (channel ``width+1``), the query (a copy of item
    q, q uniform in 0..K-2), a second query delimiter, and ``item_len`` steps that ask for item q+1.
    ``inputs`` [B, T, width+2], ``targets`` [B, T, width], T = max over the batch of K(item_len+1) + 2 item_len + 2.
    """
    _check_range("associative_recall_task items", min_items, max_items, 2)
    gen, gdev, out_dev = _setup(generator, device)
    B, P = batch_size, item_len + 1  # P steps per item (delimiter + vectors)
    K = _randint(min_items, max_items, (B,), gen, gdev)
    items = _bits((B, max_items, item_len, width), gen, gdev)
    q = (torch.rand(B, generator=gen, device=gdev) * (K - 1).float()).long()  # uniform in 0..K-2
    lengths = K * P + 2 + 2 * item_len
    T = int(lengths.max())
    t = torch.arange(T, device=gdev).unsqueeze(0).expand(B, T)
    Kc, qc = K.unsqueeze(1), q.unsqueeze(1)
    in_items = t < Kc * P
    phase = t % P
    item_delim = in_items & (phase == 0)
    item_vec = in_items & (phase > 0)
    flat = items.reshape(B, max_items * item_len, width)

    def item_rows(item_index: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        idx = (item_index.clamp(0, max_items - 1) * item_len + pos.clamp(0, item_len - 1)).unsqueeze(-1)
        return flat.gather(1, idx.expand(B, T, width))

    store = item_rows(t // P, phase - 1) * item_vec.unsqueeze(-1)
    start = Kc * P  # first query delimiter
    query_vec = (t > start) & (t <= start + item_len)
    query = item_rows(qc.expand(B, T), t - start - 1) * query_vec.unsqueeze(-1)
    answer_step = (t > start + item_len + 1) & (t < lengths.unsqueeze(1))
    answer = item_rows((qc + 1).expand(B, T), t - start - item_len - 2) * answer_step.unsqueeze(-1)
    inputs = torch.zeros(B, T, width + 2, device=gdev)
    inputs[..., :width] = store + query
    inputs[..., width] = item_delim.float()
    inputs[..., width + 1] = ((t == start) | (t == start + item_len + 1)).float()
    return TaskBatch(inputs, answer, answer_step.float(), lengths).to(out_dev)


def priority_sort_task(
    batch_size: int,
    *,
    num_inputs: int = 20,
    num_outputs: int = 16,
    width: int = 8,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> TaskBatch:
    """Priority sort (Section 4.5): output the ``num_outputs`` highest-priority vectors, highest first.

    Steps 0..num_inputs-1 carry a random ``width``-bit vector (channels 0..width-1) and its priority,
    uniform in [-1, 1] (channel ``width``); step num_inputs the delimiter (channel ``width+1``); the next
    ``num_outputs`` steps ask for the vectors sorted by decreasing priority.
    ``inputs`` [B, T, width+2], ``targets`` [B, T, width], T = num_inputs + 1 + num_outputs (all equal).
    """
    if not 1 <= num_outputs <= num_inputs:
        raise ValueError(f"priority_sort_task: need 1 <= num_outputs <= num_inputs, got {num_outputs}, {num_inputs}")
    gen, gdev, out_dev = _setup(generator, device)
    B, T = batch_size, num_inputs + 1 + num_outputs
    seq = _bits((B, num_inputs, width), gen, gdev)
    prio = torch.rand(B, num_inputs, generator=gen, device=gdev) * 2 - 1
    order = prio.argsort(dim=1, descending=True)[:, :num_outputs]  # [B, num_outputs]
    inputs = torch.zeros(B, T, width + 2, device=gdev)
    inputs[:, :num_inputs, :width] = seq
    inputs[:, :num_inputs, width] = prio
    inputs[:, num_inputs, width + 1] = 1.0
    targets = torch.zeros(B, T, width, device=gdev)
    targets[:, num_inputs + 1 :] = seq.gather(1, order.unsqueeze(-1).expand(B, num_outputs, width))
    masks = torch.zeros(B, T, device=gdev)
    masks[:, num_inputs + 1 :] = 1.0
    return TaskBatch(inputs, targets, masks, torch.full((B,), T, device=gdev)).to(out_dev)


def _check_metric_args(outputs: torch.Tensor, targets: torch.Tensor, masks: torch.Tensor) -> None:
    sizes = check_shape("targets", targets, "B T O")
    check_shape("outputs", outputs, "B T O", sizes)
    check_shape("masks", masks, "B T", sizes)


def bits_error(outputs: torch.Tensor, targets: torch.Tensor, masks: torch.Tensor, *, logits: bool = True) -> torch.Tensor:
    """Cost per sequence (Section 4): the number of wrong bits after thresholding the outputs at 0.5.

    Args:
        outputs: [B, T, O] the model's outputs: logits (``logits=True``: thresholded at 0, i.e. sigmoid 0.5)
            or probabilities (``logits=False``: thresholded at 0.5).
        targets: [B, T, O] bits in {0, 1}.
        masks: [B, T] 1 at scored steps.

    Returns:
        [B] wrong bits per sequence (float).
    """
    _check_metric_args(outputs, targets, masks)
    predicted = (outputs > (0.0 if logits else 0.5)).to(targets.dtype)
    wrong = (predicted != targets).to(outputs.dtype) * masks.unsqueeze(-1)
    return wrong.sum(dim=(1, 2))


def cross_entropy_bits(logits: torch.Tensor, targets: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy in bits per sequence, summed over the scored steps and bits (differentiable).

    Args:
        logits: [B, T, O] output logits (sigmoid gives the bit probabilities).
        targets: [B, T, O] bits in {0, 1}.
        masks: [B, T] 1 at scored steps.

    Returns:
        [B] cross-entropy in bits per sequence.
    """
    _check_metric_args(logits, targets, masks)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * masks.unsqueeze(-1)
    return ce.sum(dim=(1, 2)) / LN2


TASKS = {
    "copy": copy_task,
    "repeat_copy": repeat_copy_task,
    "associative_recall": associative_recall_task,
    "priority_sort": priority_sort_task,
}
