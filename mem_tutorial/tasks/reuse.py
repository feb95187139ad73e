"""Memory reuse out of write order: a key-value store with deletions (Chapter 3).

Why this task. The DNC frees memory with its free gates and writes to the least-used slot (Graves et al. 2016,
Methods, "Dynamic memory allocation"), wherever that slot is. The NTM has no notion of a free slot: it reuses
memory by *position*, walking its write head round the slots with circular shifts, which overwrites the oldest
write. That is enough when memory is freed in the order it was written (e.g. copy episodes back to back; a first
version of this task was solved by the NTM exactly that way). Here the slots to reuse are decided by the input,
out of write order:

1. **fill**: ``slots`` items (key, value) are stored, one per step. The memory of a model with N = ``slots``
   slots is now full.
2. **rounds**: each round deletes ``d`` random live items (d uniform in [``min_frees``, ``max_frees``]): the
   input asks for key k, the model must output k's value, and the item is gone afterwards. Then ``d`` new items
   are stored. The freed slots are wherever the deleted items were (random, not the oldest), and with d >= 2
   several slots are free at once, so "overwrite the slot just read" does not work either. A new item may use
   a key that was deleted before (keys are unique among the live items only), so a stale copy of a deleted item
   gives a wrong answer.
3. **recall**: the ``slots`` live items are asked for in random order (retrieved and deleted, as above).

A memory of N = ``slots`` slots holds exactly the live items, so every store after the fill must go into a slot
freed by a retrieval. A writer that cycles round the slots overwrites items that are still needed.

Encoding (one operation per step, answers on the same step):

- ``inputs`` [B, T, 2 + K + width]: channel 0 = "store", channel 1 = "retrieve and delete", channels 2..2+K-1 =
  the key (one-hot among K = ``keys``), channels 2+K.. = the value bits (stores only; zero for retrievals);
- ``targets`` [B, T, width]: the value of the retrieved key at retrieval steps, else 0;
- ``masks`` [B, T]: 1 at retrieval steps; ``lengths`` [B]: steps used, 2 * slots + 2 * (sum of the d's).

Sequences are left-aligned and padded with zeros (no operation). Built with a loop over the T steps only
(batched over B, no loop over sequences or keys), from the seeded ``generator``, on the generator's device, then
moved to ``device``.
"""

from __future__ import annotations

import torch

from mem_tutorial.tasks.algorithmic import TaskBatch

#: Input channel of the "store" operation.
STORE = 0
#: Input channel of the "retrieve and delete" operation.
RETRIEVE = 1


def reuse_task(
    batch_size: int,
    *,
    slots: int = 6,
    rounds: int = 2,
    min_frees: int = 2,
    max_frees: int = 5,
    keys: int = 8,
    width: int = 4,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> TaskBatch:
    """A key-value store with deletions (see the module docstring for the phases and the layout).

    Args:
        batch_size: B.
        slots: live items after the fill (the memory size N that the task is meant for).
        rounds: delete-then-store rounds between the fill and the final recall.
        min_frees, max_frees: items deleted (and then stored) per round, uniform in [min_frees, max_frees],
            at most ``slots``.
        keys: K, the number of distinct keys (one-hot), at least ``slots``. A store draws its key uniformly
            among the keys that are not live, which includes keys deleted earlier in the sequence.
        width: value bits.
        generator: a seeded ``torch.Generator`` (a fresh unseeded one when omitted).
        device: where the batch goes (default: the generator's device).

    Returns:
        TaskBatch: ``inputs`` [B, T, 2 + K + width], ``targets`` [B, T, width], ``masks`` [B, T],
        ``lengths`` [B], with T = the longest sequence of the batch.
    """
    if slots < 1 or rounds < 0 or width < 1:
        raise ValueError(f"reuse_task: need slots >= 1, rounds >= 0, width >= 1; got {slots}, {rounds}, {width}")
    if not 1 <= min_frees <= max_frees <= slots:
        raise ValueError(f"reuse_task frees: need 1 <= min_frees <= max_frees <= slots, got {min_frees}, "
                         f"{max_frees}, slots={slots}")
    if keys < slots:
        raise ValueError(f"reuse_task: keys ({keys}) must be >= slots ({slots})")
    if generator is None:
        generator = torch.Generator()
        generator.seed()
    gdev = generator.device
    out_dev = torch.device(device) if device is not None else gdev
    B, K = batch_size, keys
    # the operation schedule: +1 store, -1 retrieve, 0 padding
    frees = torch.randint(min_frees, max_frees + 1, (B, rounds), generator=generator, device=gdev)
    lengths = 2 * slots + 2 * frees.sum(1)
    T = int(lengths.max())
    t = torch.arange(T, device=gdev).expand(B, T)
    seg = torch.cat([torch.full((B, 1), slots, device=gdev), (2 * frees)], 1)  # fill, then one span per round
    ends = torch.cumsum(seg, 1)  # [B, 1 + rounds]
    span = (t.unsqueeze(-1) >= ends.unsqueeze(1)).sum(-1)  # [B, T]: 0 fill, 1..rounds rounds, rounds+1 recall
    start = torch.cat([torch.zeros(B, 1, dtype=ends.dtype, device=gdev), ends], 1).gather(1, span)
    d = torch.cat([torch.zeros(B, 1, dtype=frees.dtype, device=gdev), frees], 1).gather(1, span.clamp(max=rounds))
    valid = t < lengths.unsqueeze(1)
    store = valid & ((span == 0) | ((span <= rounds) & (t - start >= d)))
    retrieve = valid & ~store
    inputs = torch.zeros(B, T, 2 + K + width, device=gdev)
    targets = torch.zeros(B, T, width, device=gdev)
    live = torch.zeros(B, K, dtype=torch.bool, device=gdev)
    values = torch.zeros(B, K, width, device=gdev)
    rows = torch.arange(B, device=gdev)
    for step in range(T):  # a loop over time only: the live set changes with every operation
        s, r = store[:, step], retrieve[:, step]
        # a store draws a key that is not live, a retrieval a live one (uniformly); rows with no candidate
        # (padding) draw from all keys and are ignored below
        pool = torch.where(s.unsqueeze(1), ~live, live)
        pool = pool | ~pool.any(1, keepdim=True)
        key = torch.multinomial(pool.float(), 1, generator=generator).squeeze(1)  # [B]
        new_value = torch.randint(0, 2, (B, width), generator=generator, device=gdev).float()
        held = values[rows, key]
        value = torch.where(s.unsqueeze(1), new_value, held)
        inputs[:, step, STORE] = s.float()
        inputs[:, step, RETRIEVE] = r.float()
        inputs[rows, step, 2 + key] = (s | r).float()
        inputs[:, step, 2 + K :] = new_value * s.unsqueeze(1)
        targets[:, step] = held * r.unsqueeze(1)
        values[rows, key] = value
        live[rows, key] = torch.where(s, True, torch.where(r, False, live[rows, key]))
    return TaskBatch(inputs, targets, retrieve.float(), lengths).to(out_dev)


def live_items(inputs: torch.Tensor) -> torch.Tensor:
    """How many items are live after each step of a :func:`reuse_task` batch.

    ``inputs`` [B, T, 2 + K + width] -> [B, T]: stores add one, retrievals remove one. The task keeps it in
    [0, slots]; a model with N = slots memory slots must therefore reuse every freed slot."""
    return torch.cumsum(inputs[..., STORE] - inputs[..., RETRIEVE], dim=1)


def cyclic_writer_answers(inputs: torch.Tensor, slots: int, keys: int) -> torch.Tensor:
    """Which retrievals a perfect *cyclic* writer with ``slots`` slots answers correctly.

    The baseline for an NTM that reuses memory by position: the i-th store goes to slot i mod N (the write head
    walks round the slots), and a retrieval is answered correctly when the key's slot has not been overwritten
    since. (Reading is assumed perfect, by content.) Shows how much of the task order-based reuse can solve.

    Args:
        inputs: [B, T, 2 + K + width] from :func:`reuse_task`.
        slots: N.
        keys: K.

    Returns:
        [B, T] bool: True at the retrieval steps answered correctly (False elsewhere).
    """
    B, T, _ = inputs.shape
    dev = inputs.device
    rows = torch.arange(B, device=dev)
    owner = torch.full((B, slots), -1, dtype=torch.long, device=dev)  # the key written last into each slot
    slot_of = torch.zeros(B, keys, dtype=torch.long, device=dev)  # where each key was written last
    pointer = torch.zeros(B, dtype=torch.long, device=dev)
    correct = torch.zeros(B, T, dtype=torch.bool, device=dev)
    for t in range(T):
        s, r = inputs[:, t, STORE] > 0, inputs[:, t, RETRIEVE] > 0
        key = inputs[:, t, 2 : 2 + keys].argmax(-1)
        correct[:, t] = r & (owner[rows, slot_of[rows, key]] == key)
        owner[rows, pointer] = torch.where(s, key, owner[rows, pointer])
        slot_of[rows, key] = torch.where(s, pointer, slot_of[rows, key])
        pointer = torch.where(s, (pointer + 1) % slots, pointer)
    return correct
