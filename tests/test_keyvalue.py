"""Key-Value Memory Network mechanisms (Miller et al. 2016, Section 3) against float64 references, and key hashing
on a small hand-made index."""

from __future__ import annotations

import math

import pytest
import torch

from mem_tutorial.data.hashing import STOP_WORDS, build_inverted_index, key_hashing, rank_hashed
from mem_tutorial.memory.keyvalue import candidate_scores, hop_update, key_addressing, value_reading

D = torch.float64


# ---------------------------------------------------------------- references written from the paper's equations


def ref_key_addressing(q, keys, mask):
    """p_i = exp(q.k_i) / sum_{j unmasked} exp(q.k_j), 0 for masked i; loops, plain Python floats."""
    B, K, d = keys.shape
    out = torch.zeros(B, K, dtype=D)
    for b in range(B):
        s = [sum(float(q[b, t]) * float(keys[b, i, t]) for t in range(d)) for i in range(K)]
        real = [i for i in range(K) if mask is None or bool(mask[b, i])]
        if not real:
            continue
        m = max(s[i] for i in real)
        z = sum(math.exp(s[i] - m) for i in real)
        for i in real:
            out[b, i] = math.exp(s[i] - m) / z
    return out


def ref_value_reading(p, values):
    B, K, d = values.shape
    out = torch.zeros(B, d, dtype=D)
    for b in range(B):
        for i in range(K):
            out[b] += float(p[b, i]) * values[b, i]
    return out


def ref_hop_update(q, o, R):
    B, d = q.shape
    out = torch.zeros(B, d, dtype=D)
    for b in range(B):
        x = q[b] + o[b]
        for r in range(d):
            out[b, r] = sum(float(R[r, c]) * float(x[c]) for c in range(d))
    return out


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    B, K, d = 3, 5, 4
    q = torch.randn(B, d, generator=g, dtype=D)
    keys = torch.randn(B, K, d, generator=g, dtype=D)
    values = torch.randn(B, K, d, generator=g, dtype=D)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 0, 1, 0, 0], [0, 0, 0, 0, 0]], dtype=torch.bool)
    return q, keys, values, mask


# ---------------------------------------------------------------- key addressing


def test_key_addressing_matches_reference(batch):
    q, keys, _, mask = batch
    torch.testing.assert_close(key_addressing(q, keys, mask), ref_key_addressing(q, keys, mask))
    torch.testing.assert_close(key_addressing(q, keys), ref_key_addressing(q, keys, None))


def test_key_addressing_masked_keys_get_exactly_zero(batch):
    q, keys, _, mask = batch
    p = key_addressing(q, keys, mask)
    assert torch.all(p[~mask] == 0)
    torch.testing.assert_close(p[:2].sum(-1), torch.ones(2, dtype=D))
    assert torch.all(p[2] == 0)  # nothing retrieved: all-zero weights, not NaN
    # masked keys do not influence the others, however large their scores
    keys2 = keys.clone()
    keys2[1, 1] = 1e6 * q[1]
    torch.testing.assert_close(key_addressing(q, keys2, mask), p)


def test_key_addressing_hand_checked():
    q = torch.tensor([[1.0, 0.0]], dtype=D)
    keys = torch.tensor([[[2.0, 5.0], [0.0, 1.0], [9.0, 9.0]]], dtype=D)
    mask = torch.tensor([[True, True, False]])
    e = math.exp(2.0)
    expected = torch.tensor([[e / (e + 1), 1 / (e + 1), 0.0]], dtype=D)
    torch.testing.assert_close(key_addressing(q, keys, mask), expected)


def test_key_addressing_is_plain_dot_product_not_cosine():
    q = torch.tensor([[1.0, 0.0]], dtype=D)
    keys = torch.tensor([[[3.0, 0.0], [1.0, 0.0]]], dtype=D)  # same direction, different norms
    p = key_addressing(q, keys)
    torch.testing.assert_close(p, torch.softmax(torch.tensor([[3.0, 1.0]], dtype=D), -1))


def test_key_addressing_gradcheck_and_no_nan(batch):
    q, keys, _, mask = batch
    q = q.clone().requires_grad_()
    keys = keys.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: key_addressing(a, b, mask), (q, keys))
    zeros_q = torch.zeros(2, 4, dtype=D, requires_grad=True)
    zeros_k = torch.zeros(2, 3, 4, dtype=D, requires_grad=True)
    none = torch.zeros(2, 3, dtype=torch.bool)
    key_addressing(zeros_q, zeros_k, none).sum().backward()
    assert torch.isfinite(zeros_q.grad).all() and torch.isfinite(zeros_k.grad).all()


def test_key_addressing_dtype_device_and_shape_errors(batch):
    q, keys, _, mask = batch
    assert key_addressing(q.float(), keys.float(), mask).dtype == torch.float32
    with pytest.raises(ValueError, match="keys"):
        key_addressing(q, keys[:, :, :3])
    with pytest.raises(ValueError, match="key_mask"):
        key_addressing(q, keys, mask[:, :4])


# ---------------------------------------------------------------- value reading and hop update


def test_value_reading_matches_reference(batch):
    q, keys, values, mask = batch
    p = key_addressing(q, keys, mask)
    torch.testing.assert_close(value_reading(p, values), ref_value_reading(p, values))
    assert torch.all(value_reading(p, values)[2] == 0)
    p = p.clone().requires_grad_()
    assert torch.autograd.gradcheck(value_reading, (p, values.clone().requires_grad_()))


def test_value_reading_one_hot_returns_that_value(batch):
    _, _, values, _ = batch
    p = torch.zeros(3, 5, dtype=D)
    p[torch.arange(3), torch.tensor([0, 3, 4])] = 1
    torch.testing.assert_close(value_reading(p, values), values[torch.arange(3), torch.tensor([0, 3, 4])])


def test_hop_update_matches_reference_and_convention():
    g = torch.Generator().manual_seed(1)
    q, o, R = torch.randn(2, 3, generator=g, dtype=D), torch.randn(2, 3, generator=g, dtype=D), torch.randn(
        3, 3, generator=g, dtype=D
    )
    torch.testing.assert_close(hop_update(q, o, R), ref_hop_update(q, o, R))
    # R acts on column vectors: a non-symmetric R distinguishes R(q+o) from R^T(q+o)
    R = torch.tensor([[0.0, 1.0], [0.0, 0.0]], dtype=D)
    out = hop_update(torch.tensor([[1.0, 2.0]], dtype=D), torch.tensor([[0.0, 1.0]], dtype=D), R)
    torch.testing.assert_close(out, torch.tensor([[3.0, 0.0]], dtype=D))
    args = tuple(t.clone().requires_grad_() for t in (q, o, torch.randn(3, 3, generator=g, dtype=D)))
    assert torch.autograd.gradcheck(hop_update, args)
    with pytest.raises(ValueError, match="R"):
        hop_update(q, o, torch.eye(4, dtype=D))


def test_candidate_scores_shared_and_per_question():
    g = torch.Generator().manual_seed(2)
    q, c = torch.randn(2, 3, generator=g, dtype=D), torch.randn(4, 3, generator=g, dtype=D)
    expected = torch.tensor([[float(q[b] @ c[i]) for i in range(4)] for b in range(2)], dtype=D)
    torch.testing.assert_close(candidate_scores(q, c), expected)
    torch.testing.assert_close(candidate_scores(q, c.expand(2, 4, 3)), expected)


# ---------------------------------------------------------------- key hashing on a hand-made index

KEYS = [
    ["Blade Runner", "directed_by"],        # 0
    ["Blade Runner", "release_year"],       # 1
    ["Ridley Scott", "directed_by_inv"],    # 2
    ["Alien", "directed_by"],               # 3
    ["the", "film", "Alien", "is", "scary"],  # 4
    ["the", "film", "is", "long"],          # 5
]


def test_inverted_index_postings_and_frequencies():
    index = build_inverted_index(KEYS)
    assert index.size == 6
    assert index.postings["Alien"] == [3, 4]
    assert index.postings["directed_by"] == [0, 3]
    assert index.frequency("film") == 2 and index.frequency("the") == 2 and index.frequency("nope") == 0
    assert build_inverted_index([["a", "a", "b"]]).postings["a"] == [0]  # a key counts once
    with pytest.raises(TypeError):
        build_inverted_index(["not tokens"])


def test_key_hashing_hand_checked():
    index = build_inverted_index(KEYS)
    q = ["who", "directed", "Alien", "?"]
    assert key_hashing(q, index, max_frequency=3) == [3, 4]
    assert key_hashing(q, index, max_frequency=2) == []  # "Alien" occurs in 2 keys: not < 2
    assert key_hashing(["Blade Runner", "Ridley Scott"], index, 3) == [0, 1, 2]
    # frequency cut-off on non-stop words: "film" (2 keys) passes only when F > 2
    assert key_hashing(["long", "film"], index, 3, stop_words=()) == [4, 5]
    assert key_hashing(["long", "film"], index, 2, stop_words=()) == [5]
    # stop words never select, whatever their frequency
    assert key_hashing(["the", "is"], index, 100) == []
    assert key_hashing(["the"], index, 100, stop_words=()) == [4, 5]
    assert "the" in STOP_WORDS


def test_key_hashing_matches_brute_force_and_is_deterministic():
    import random

    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(12)]
    keys = [rng.sample(vocab, rng.randint(1, 4)) for _ in range(40)]
    index = build_inverted_index(keys)
    for _ in range(30):
        q = rng.sample(vocab, 3)
        F = rng.randint(1, 15)
        freq = {w: sum(w in k for k in keys) for w in vocab}
        brute = [i for i, k in enumerate(keys) if any(w in k and freq[w] < F for w in q)]
        assert key_hashing(q, index, F, stop_words=()) == brute
        assert key_hashing(list(reversed(q)), index, F, stop_words=()) == brute


def test_rank_hashed_keeps_best_matches():
    index = build_inverted_index(KEYS)
    q = ["Alien", "scary"]
    ids = key_hashing(q, index, 10)
    assert ids == [3, 4]
    assert rank_hashed(q, KEYS, ids, index, limit=1) == [4]  # shares two words
    assert rank_hashed(q, KEYS, ids, index, limit=None) == ids
