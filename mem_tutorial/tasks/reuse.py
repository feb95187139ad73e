"""Memory reuse: several copy episodes in a row through a memory too small to hold them all (Chapter 3).

In the spirit of Graves et al. 2016, Extended Data Fig. 1 (the DNC frees and reuses memory across
consecutive copy sequences). Each episode is a copy task: ``L`` random ``width``-bit vectors, a delimiter,
then ``L`` steps that ask for the vectors back. The next episode starts right after. The episodes together
hold more vectors than the memory has slots, so a model that never frees a slot must overwrite content it
still needs, or find old content by similarity -- the DNC can free each slot once it has been read back
(free gates) and allocate it again (usage-sorted allocation).

Layout of an episode of length L starting at step s: steps s..s+L-1 carry the vectors (channels
0..width-1), step s+L the delimiter (channel ``width``), steps s+L+1..s+2L ask for the copy (input zero).
Episodes follow each other without gaps; lengths are drawn per episode and per sequence.

Returns a :class:`~mem_tutorial.tasks.algorithmic.TaskBatch` (``inputs`` [B, T, width+1], ``targets``
[B, T, width], ``masks`` [B, T], ``lengths`` [B]), built without loops over the batch or the steps.
"""

from __future__ import annotations

import torch

from mem_tutorial.tasks.algorithmic import TaskBatch


def reuse_task(
    batch_size: int,
    *,
    episodes: int = 4,
    min_len: int = 3,
    max_len: int = 6,
    width: int = 6,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> TaskBatch:
    """Several copy episodes back to back (see the module docstring for the layout).

    Args:
        batch_size: B.
        episodes: copy episodes per sequence (E).
        min_len, max_len: each episode's length is uniform in [min_len, max_len].
        width: bits per vector.
        generator: a seeded ``torch.Generator`` (a fresh unseeded one when omitted).
        device: where the batch goes (default: the generator's device).

    Returns:
        TaskBatch with T = max over the batch of sum_e (2 L_e + 1). A memory of N slots cannot hold all the
        vectors once ``episodes * min_len > N``: use :func:`needs_reuse` to check a configuration.
    """
    if episodes < 1:
        raise ValueError(f"reuse_task: episodes must be >= 1, got {episodes}")
    if not 1 <= min_len <= max_len:
        raise ValueError(f"reuse_task lengths: need 1 <= min_len <= max_len, got {min_len}, {max_len}")
    if generator is None:
        generator = torch.Generator()
        generator.seed()
    gdev = generator.device
    out_dev = torch.device(device) if device is not None else gdev
    B, E = batch_size, episodes
    L = torch.randint(min_len, max_len + 1, (B, E), generator=generator, device=gdev)  # [B, E]
    span = 2 * L + 1
    starts = torch.cumsum(span, dim=1) - span  # [B, E] first step of each episode
    lengths = span.sum(1)  # [B]
    T = int(lengths.max())
    seq = torch.randint(0, 2, (B, E, max_len, width), generator=generator, device=gdev).float()
    t = torch.arange(T, device=gdev).expand(B, T)  # [B, T]
    episode = ((t.unsqueeze(-1) >= starts.unsqueeze(1)).sum(-1) - 1).clamp(0, E - 1)  # [B, T]
    local = t - starts.gather(1, episode)  # step within the episode
    Le = L.gather(1, episode)
    valid = t < lengths.unsqueeze(1)
    in_seq = valid & (local < Le)
    delimiter = valid & (local == Le)
    out_step = valid & (local > Le) & (local <= 2 * Le)
    flat = seq.reshape(B, E * max_len, width)

    def rows(position: torch.Tensor) -> torch.Tensor:
        idx = episode * max_len + position.clamp(0, max_len - 1)
        return flat.gather(1, idx.unsqueeze(-1).expand(B, T, width))

    inputs = torch.zeros(B, T, width + 1, device=gdev)
    inputs[..., :width] = rows(local) * in_seq.unsqueeze(-1)
    inputs[..., width] = delimiter.float()
    targets = rows(local - Le - 1) * out_step.unsqueeze(-1)
    return TaskBatch(inputs, targets, out_step.float(), lengths).to(out_dev)


def needs_reuse(memory_slots: int, episodes: int, min_len: int) -> bool:
    """True when every sequence holds more vectors than ``memory_slots`` (so slots must be reused)."""
    return episodes * min_len > memory_slots
