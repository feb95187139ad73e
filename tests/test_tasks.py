"""The NTM paper's algorithmic tasks (Graves et al. 2014, Section 4) and their metrics."""

from __future__ import annotations

import math

import pytest
import torch

from mem_tutorial.tasks import (
    TASKS,
    associative_recall_task,
    bits_error,
    copy_task,
    cross_entropy_bits,
    priority_sort_task,
    repeat_copy_task,
)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_shapes_masks_and_seeding(name):
    a, b = TASKS[name](16, generator=gen(1)), TASKS[name](16, generator=gen(1))
    for x, y in zip(a, b):
        assert torch.equal(x, y)  # same seed, same batch
    c = TASKS[name](16, generator=gen(2))
    assert not torch.equal(a.inputs, c.inputs) or a.inputs.shape != c.inputs.shape
    B, T, _ = a.inputs.shape
    assert a.targets.shape[:2] == (B, T) and a.masks.shape == (B, T) and a.lengths.shape == (B,)
    assert T == int(a.lengths.max())
    # nothing is scored or fed after a sequence ends
    t = torch.arange(T)
    after = t.unsqueeze(0) >= a.lengths.unsqueeze(1)
    assert (a.masks[after] == 0).all() and (a.inputs[after] == 0).all() and (a.targets[after] == 0).all()
    # targets are zero where nothing is asked
    assert (a.targets[a.masks == 0] == 0).all()
    assert set(a.targets.unique().tolist()) <= {0.0, 1.0}


def test_copy_layout_hand_checked():
    b = copy_task(32, min_len=1, max_len=20, generator=gen(3))
    assert b.inputs.shape[-1] == 9 and b.targets.shape[-1] == 8
    for i in range(32):
        L = int(b.lengths[i] - 1) // 2
        assert 1 <= L <= 20
        seq = b.inputs[i, :L, :8]
        assert (b.inputs[i, :L, 8] == 0).all() and b.inputs[i, L, 8] == 1 and (b.inputs[i, L, :8] == 0).all()
        assert (b.inputs[i, L + 1 :] == 0).all()
        assert torch.equal(b.targets[i, L + 1 : 2 * L + 1], seq)
        assert b.masks[i].sum() == L and (b.masks[i, L + 1 : 2 * L + 1] == 1).all()


def test_copy_lengths_cover_range():
    b = copy_task(2000, min_len=1, max_len=20, generator=gen(4))
    L = (b.lengths - 1) // 2
    assert L.min() == 1 and L.max() == 20
    fixed = copy_task(4, min_len=7, max_len=7, generator=gen(0))
    assert (fixed.lengths == 15).all() and fixed.inputs.shape[1] == 15


def test_repeat_copy_layout():
    b = repeat_copy_task(16, generator=gen(5))
    assert b.inputs.shape[-1] == 10 and b.targets.shape[-1] == 9
    for i in range(16):
        delim = int(b.inputs[i, :, 8].nonzero().item())
        n = round(b.inputs[i, delim, 9].item() * 10)
        L = delim
        assert 1 <= n <= 10 and 1 <= L <= 10
        seq = b.inputs[i, :L, :8]
        assert torch.equal(b.targets[i, L + 1 : L + 1 + n * L, :8], seq.repeat(n, 1))
        assert b.targets[i, L + 1 + n * L, 8] == 1 and b.targets[i, :, 8].sum() == 1
        assert b.masks[i].sum() == n * L + 1 and b.lengths[i] == L + n * L + 2


def test_associative_recall_answer_follows_query():
    b = associative_recall_task(32, generator=gen(6))
    assert b.inputs.shape[-1] == 8 and b.targets.shape[-1] == 6
    for i in range(32):
        delims = b.inputs[i, :, 6].nonzero().flatten()
        K = len(delims)
        assert 2 <= K <= 6 and torch.equal(delims, torch.arange(K) * 4)
        items = [b.inputs[i, 4 * k + 1 : 4 * k + 4, :6] for k in range(K)]
        qd = b.inputs[i, :, 7].nonzero().flatten()
        assert qd.tolist() == [4 * K, 4 * K + 4]
        query = b.inputs[i, 4 * K + 1 : 4 * K + 4, :6]
        matches = [k for k in range(K - 1) if torch.equal(items[k], query)]
        assert matches, "the query is one of the first K-1 items"
        answer = b.targets[i, 4 * K + 5 : 4 * K + 8]
        assert any(torch.equal(answer, items[k + 1]) for k in matches)
        assert b.masks[i].sum() == 3 and b.lengths[i] == 4 * K + 8


def test_priority_sort_outputs_highest_first():
    b = priority_sort_task(8, generator=gen(7))
    assert b.inputs.shape == (8, 37, 10) and b.targets.shape == (8, 37, 8)
    for i in range(8):
        prio = b.inputs[i, :20, 8]
        assert (prio >= -1).all() and (prio <= 1).all()
        order = prio.argsort(descending=True)[:16]
        assert torch.equal(b.targets[i, 21:], b.inputs[i, order, :8])
        assert b.inputs[i, 20, 9] == 1 and b.masks[i].sum() == 16


def test_device_argument_and_generator_device():
    b = copy_task(3, generator=gen(0), device="cpu")
    assert b.inputs.device.type == "cpu"
    b2 = copy_task(3, generator=gen(0))
    assert torch.equal(b.inputs, b2.inputs)


def test_bad_arguments():
    with pytest.raises(ValueError, match="copy_task"):
        copy_task(2, min_len=0)
    with pytest.raises(ValueError, match="copy_task"):
        copy_task(2, min_len=5, max_len=3)
    with pytest.raises(ValueError, match="associative"):
        associative_recall_task(2, min_items=1)
    with pytest.raises(ValueError, match="priority"):
        priority_sort_task(2, num_inputs=4, num_outputs=5)


# --- metrics ---------------------------------------------------------------------------------------------------
def test_bits_error_hand_checked():
    targets = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    masks = torch.tensor([[1.0, 1.0, 0.0]])
    probs = torch.tensor([[[0.9, 0.6], [0.4, 0.2], [0.0, 0.0]]])  # 2 wrong scored bits, 2 unscored
    assert bits_error(probs, targets, masks, logits=False).tolist() == [2.0]
    logits = torch.log(probs / (1 - probs))
    assert bits_error(logits, targets, masks).tolist() == [2.0]
    assert bits_error(targets * 20 - 10, targets, masks).tolist() == [0.0]


def test_cross_entropy_bits_reference():
    g = gen(8)
    logits = torch.randn(2, 4, 3, generator=g, dtype=torch.float64)
    targets = torch.randint(0, 2, (2, 4, 3), generator=g).double()
    masks = torch.tensor([[1.0, 1, 0, 1], [0, 1, 1, 1]], dtype=torch.float64)
    expected = []
    for b in range(2):
        total = 0.0
        for t in range(4):
            for o in range(3):
                p = 1 / (1 + math.exp(-logits[b, t, o].item()))
                y = targets[b, t, o].item()
                total -= masks[b, t].item() * (y * math.log2(p) + (1 - y) * math.log2(1 - p))
        expected.append(total)
    torch.testing.assert_close(cross_entropy_bits(logits, targets, masks), torch.tensor(expected, dtype=torch.float64))
    # a coin flip costs exactly one bit per scored bit
    zero = torch.zeros(2, 4, 3, dtype=torch.float64)
    torch.testing.assert_close(cross_entropy_bits(zero, targets, masks), masks.sum(1) * 3)


def test_metric_shape_errors():
    with pytest.raises(ValueError, match="outputs"):
        bits_error(torch.zeros(2, 3, 4), torch.zeros(2, 3, 5), torch.ones(2, 3))
    with pytest.raises(ValueError, match="masks"):
        cross_entropy_bits(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4), torch.ones(2, 4))
