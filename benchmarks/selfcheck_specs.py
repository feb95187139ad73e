"""Generate the visible self-checks of the graded test cells (chapters 1-5) from small fixed examples (issue #14).

Each spec gives an example (batch size >= 2, non-degenerate), the call, and the checks: the expected value and,
for common mistakes of ``tests/wrong_answers.py``, the value that mistake gives on the same example with a one-line
diagnosis. Expected and mistaken values are computed here with the solution notebook's own answers and written into
the cell as rounded literals, so the cell shows values, never a formula.

    python benchmarks/selfcheck_specs.py          # rewrite the visible part of the test cells in solutions/*/*.py
    python benchmarks/selfcheck_specs.py --check  # exit 1 when a cell is not what this script would write

Then ``mem-tutorial build NN && mem-tutorial release NN``.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_selfchecks import load_chapter  # noqa: E402
from wrong_answers import WRONG_ANSWERS  # noqa: E402

HEADER = "# Visible checks: run this cell to test your answer (it reports and carries on when a check fails)."
DECIMALS = 4


def lit(value) -> str:
    """A Python literal for a tensor (rounded) or plain value."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu()
        if t.dtype == torch.bool:
            return f"torch.tensor({t.tolist()})"
        if t.is_floating_point():
            data = (t.to(torch.float64).round(decimals=DECIMALS) + 0.0).tolist()
            text = json.dumps(data).replace("NaN", 'float("nan")')
            return f"torch.tensor({text})"
        return f"torch.tensor({t.tolist()})"
    return repr(value)


# Each check: (variable, what, expected-kind, [(wrong answer name, diagnosis)], hint)
SPECS = {
    "01_memory_as_attention": {
        "test_cosine_similarity": dict(
            label="1.1", name="cosine_similarity",
            setup='''M = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [1.0, 1.0, 0.0], [-3.0, 0.0, 0.0]],
                  [[0.0, 0.0, 0.0], [1.0, 2.0, 2.0], [0.0, 0.5, 0.0], [2.0, -1.0, 2.0]]])  # [B=2, N=4, W=3]
k = torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0]])                                   # [B=2, W=3]
# batch element 1: row 0 is all zeros (no direction), the rows and keys have different lengths''',
            call="sim = cosine_similarity(M, k)",
            checks=[("sim", "cosine_similarity(M, k)", [
                ("dot product, no normalisation", "you did not divide by the lengths (norms) of the key and the rows"),
                ("divides by the key's norm only", "you divided by the key's length but not by each row's length"),
                ("divides by the rows' norms only", "you divided by each row's length but not by the key's length"),
                ("no eps: NaN for an all-zero row",
                 "an all-zero row gives 0/0 = NaN: add a small eps to the denominator"),
                ("the first key for every batch element",
                 "every batch element must use its own key (key[b]), not the first one"),
            ], "compare each row M[b, i] with the key of its own batch element, k[b]")],
        ),
        "test_content_weighting": dict(
            label="1.2", name="content_weighting",
            setup='''M = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]],
                  [[1.0, 1.0], [1.0, -1.0], [0.0, 2.0]]])  # [B=2, N=3, W=2]
k = torch.tensor([[1.0, 0.0], [0.0, 1.0]])              # [B=2, W=2]
beta = torch.tensor([2.0, 0.5])                         # [B=2]: a different β per batch element''',
            call="w = content_weighting(M, k, beta)",
            checks=[("w", "content_weighting(M, k, beta)", [
                ("softmax over the batch, not the slots",
                 "you normalised over the batch (dim 0), not over the slots: each row w[b] must sum to 1"),
                ("beta left out", "β is missing: the similarities must be multiplied by β before the softmax"),
                ("one beta (the first) for the whole batch",
                 "every batch element has its own β: use beta[b] for row b"),
                ("normalised by the sum, no exponential",
                 "a weighting here is a softmax: exponentiate before normalising"),
                ("beta divides instead of multiplies", "β multiplies the similarities; it does not divide them"),
            ], "each row w[b] is a softmax over the N slots of β[b] times the similarities")],
        ),
        "test_read": dict(
            label="1.3", name="read",
            setup='''M = torch.tensor([[[1.0, 2.0, 3.0], [10.0, 20.0, 30.0]],
                  [[-1.0, 0.0, 1.0], [4.0, 4.0, 4.0]]])  # [B=2, N=2, W=3]
weights = torch.tensor([[0.25, 0.75], [0.9, 0.1]])      # [B=2, N=2]''',
            call="r = read(M, weights)",
            checks=[("r", "read(M, weights)", [
                ("mean instead of weighted sum", "you averaged the rows: weight each row by w[b, i] instead"),
                ("the first batch element's memory for everyone",
                 "every batch element must read its own memory M[b], not M[0]"),
                ("softmax of the weights again", "the weights are already a weighting: use them as they are"),
            ], "sum over the slots (dim 1) of the rows weighted by w; the result has shape [B, W]")],
        ),
        "test_write": dict(
            label="1.4", name="write",
            setup='''M = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]],
                  [[-1.0, 0.0], [0.5, 0.5], [2.0, -2.0]]])  # [B=2, N=3, W=2]
weights = torch.tensor([[0.0, 1.0, 0.5], [0.2, 0.3, 0.5]])  # [B=2, N=3]
erase = torch.tensor([[1.0, 0.0], [0.5, 1.0]])              # [B=2, W=2]
add = torch.tensor([[5.0, 5.0], [1.0, -1.0]])               # [B=2, W=2]
M_before = M.clone()''',
            call="new = write(M, weights, erase, add)",
            checks=[("new", "write(M, weights, erase, add)", [
                ("add before erase", "erase must come before add: you erased part of what you had just added"),
                ("erase not weighted by w", "the erase of slot i is scaled by its weight w_i (a slot with w_i = 0 "
                 "must not change)"),
                ("no erase", "the erase step is missing: old content must be partly erased before adding"),
                ("add not weighted by w", "the add of slot i is scaled by its weight w_i"),
            ], "")],
            after='expect(torch.equal(M, M_before), "write must not modify the memory it was given: return a new tensor")',
        ),
    },
    "02_ntm": {
        "test_interpolate": dict(
            label="2.1", name="interpolate",
            setup='''content_w = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]])  # [B=2, N=3]
prev_w = torch.tensor([[0.0, 0.0, 1.0], [0.5, 0.5, 0.0]])     # [B=2, N=3]
gate = torch.tensor([0.25, 0.9])                              # [B=2]: a different gate per batch element''',
            call="out = interpolate(content_w, prev_w, gate)",
            checks=[("out", "interpolate(content_w, prev_w, gate)", [
                ("gate weights the previous weighting",
                 "the roles are swapped: g weights the content weighting, 1 - g the previous one"),
                ("one gate (the first) for the whole batch", "every batch element has its own gate g[b]"),
                ("forgot (1 - g)", "the previous weighting is scaled by (1 - g): the result must stay a weighting"),
                ("the mean gate", "every batch element has its own gate g[b]; do not average them"),
            ], "")],
        ),
        "test_shift": dict(
            label="2.2", name="shift",
            setup='''weights = torch.tensor([[0.0, 1.0, 0.0, 0.0, 0.0],
                        [0.0, 0.0, 0.0, 0.2, 0.8]])  # [B=2, N=5]; element 1 has weight on the last slot
shift_dist = torch.tensor([[0.0, 0.3, 0.7],
                           [0.1, 0.2, 0.7]])         # [B=2, S=3], offsets (-1, 0, +1)''',
            call="out = shift(weights, shift_dist)",
            checks=[("out", "shift(weights, shift_dist)", [
                ("shift in the wrong direction",
                 "your shift moves the focus the wrong way: offset +1 moves weight from slot i to slot i+1"),
                ("no wrap-around (zero padding)",
                 "the shift is circular: weight moved past the last slot wraps around to slot 0"),
                ("offsets 0..S-1 instead of -(S//2)..S//2",
                 "entry j of shift_dist is the offset j - S//2 (here -1, 0, +1), not j"),
                ("only the most likely offset (hard shift)",
                 "mix all the offsets, each weighted by its probability, not only the most likely one"),
                ("the first element's shift for the whole batch",
                 "every batch element has its own shift distribution shift_dist[b]"),
            ], "offset +1 moves weight from slot i to slot (i + 1) mod N")],
        ),
        "test_sharpen": dict(
            label="2.3", name="sharpen",
            setup='''weights = torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.6, 0.3]])  # [B=2, N=3]
gamma = torch.tensor([2.0, 3.0])                                 # [B=2]: a different γ per batch element
zeros = torch.zeros(2, 3)''',
            call="out = sharpen(weights, gamma)\nout_zero = sharpen(zeros, gamma)",
            checks=[("out", "sharpen(weights, gamma)", [
                ("no renormalisation", "after raising to the power γ, renormalise each row to sum to 1"),
                ("one gamma (the first) for the whole batch", "every batch element has its own γ[b]"),
                ("multiplies by gamma instead of raising to it",
                 "sharpening raises each weight to the power γ; multiplying changes nothing after renormalising"),
                ("softmax of gamma * w", "sharpening is a power followed by a renormalisation, not a softmax"),
            ], "")],
            after='expect(torch.isfinite(out_zero).all(), "an all-zero weighting gave NaN or inf: add eps to the denominator")',
        ),
        "test_address": dict(
            label="2.4", name="address",
            setup='''memory = torch.stack([torch.eye(4), torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0],
                                                     [0.0, 0.0, 1.0, 1.0], [1.0, 0.0, 0.0, 1.0]])])  # [B=2, N=4, W=4]
key = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]])
beta = torch.tensor([50.0, 5.0])
gate = torch.tensor([0.0, 0.6])
shift_dist = torch.tensor([[0.0, 0.0, 1.0], [0.2, 0.6, 0.2]])
gamma = torch.tensor([1.0, 2.5])
prev_w = torch.tensor([[0.0, 0.0, 1.0, 0.0], [0.1, 0.2, 0.3, 0.4]])''',
            call="w = address(memory, key, beta, gate, shift_dist, gamma, prev_w)",
            checks=[("w", "address(...)", [
                ("no sharpening", "the last step, sharpening with γ, is missing"),
                ("sharpen before shift", "the order is content → interpolate → shift → sharpen: you sharpened before "
                 "shifting"),
                ("interpolation roles swapped", "g weights the content weighting, 1 - g the previous weighting"),
                ("no interpolation (content only)", "the interpolation with the previous weighting is missing"),
                ("shift before interpolation", "interpolate first, then shift"),
            ], "content → interpolate → shift → sharpen, in this order")],
        ),
        "test_read_head_step": dict(
            label="2.5", name="read_head_step",
            setup='''memory = torch.stack([torch.eye(4), torch.tensor([[1.0, 2.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0],
                                                     [2.0, 0.0, 1.0, 1.0], [1.0, 0.0, 0.0, 3.0]])])  # [B=2, N=4, W=4]
prev_w = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.1, 0.2, 0.3, 0.4]])
#                  key (W=4)              β     g     shift logits (S=3)  γ
raw = torch.tensor([[1.0, 0.0, 0.0, 0.0,  2.0, -1.0,  0.5, 0.0, 1.5,     0.0],
                    [0.0, 1.0, 1.0, 0.0, -1.0,  0.5,  1.0, 0.0, 2.0,     1.0]])  # [B=2, W + 3 + S = 10]''',
            call="r, w = read_head_step(memory, prev_w, raw)",
            checks=[("w", "read_head_step weights w", [
                ("beta without softplus", "β = softplus(raw β): a key strength is never negative"),
                ("gamma = softplus (without 1 +)", "γ = 1 + softplus(raw γ): sharpening needs γ ≥ 1"),
                ("shift weights without softmax", "the shift weights are a softmax over the S shift logits"),
                ("gate and beta slots swapped", "the layout is [key (W), β, g, shift (S), γ]: β comes before g"),
                ("gate without sigmoid (clamped)", "g = sigmoid(raw g)"),
            ], "check each parameter's slice of raw and its activation"),
                ("r", "read_head_step read vector r", [], "r is the read of memory with the weighting w")],
        ),
    },
    "03_dnc": {
        "test_usage_update": dict(
            label="3.1", name="usage_update",
            setup='''prev_usage = torch.tensor([[0.5, 0.5, 0.0], [0.2, 0.9, 0.4]])           # [B=2, N=3]
prev_write_weights = torch.tensor([[0.0, 0.5, 1.0], [0.3, 0.1, 0.6]])   # [B=2, N=3]
free_gates = torch.tensor([[1.0, 0.5], [0.6, 0.3]])                     # [B=2, R=2]
prev_read_weights = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]],
                                  [[0.2, 0.5, 0.3], [0.6, 0.3, 0.1]]])  # [B=2, R=2, N=3]''',
            call="u = usage_update(prev_usage, prev_write_weights, free_gates, prev_read_weights)",
            checks=[("u", "usage_update(...)", [
                ("retention as a sum over heads, not a product",
                 "the retention ψ is a product over the read heads of (1 - f^i w^{r,i}), not 1 minus a sum"),
                ("u + w without - u w", "u + w can exceed 1: subtract u ∘ w"),
                ("free gates ignored", "each read head's free gate f^i scales how much of what it read is freed"),
                ("retention not applied", "multiply by the retention ψ (what the free gates release)"),
                ("product over slots instead of heads", "ψ is a product over the R read heads (dim 1), per slot"),
            ], "")],
        ),
        "test_allocation_weighting": dict(
            label="3.2", name="allocation_weighting",
            setup='''usage = torch.tensor([[0.4, 0.1, 0.9, 0.6], [0.3, 0.8, 0.05, 0.5]])  # [B=2, N=4]''',
            call="a = allocation_weighting(usage)\na_empty = allocation_weighting(torch.zeros(2, 4))",
            checks=[("a", "allocation_weighting(usage)", [
                ("no sort: slots in index order", "sort the slots by usage first (the free list φ)"),
                ("sorted by descending usage", "the free list φ sorts by *ascending* usage: least used first"),
                ("inclusive cumprod (off by one)",
                 "off by one: slot φ_j is scaled by the product of the usages *before* it (i < j), not including it"),
                ("left in sorted order (not scattered back)",
                 "put each allocation back on its slot: the result is in slot order, not in sorted order"),
                ("gathered instead of scattered back",
                 "put each allocation back on its slot (scatter), gathering permutes the wrong way"),
            ], ""),
                ("a_empty", "allocation_weighting of an empty memory (ties go to the lowest slot index)", [], "")],
        ),
        "test_temporal_link": dict(
            label="3.3", name="precedence_update and link_update",
            setup='''prev_link = torch.tensor([[[0.0, 0.2, 0.1], [0.3, 0.0, 0.0], [0.1, 0.4, 0.0]],
                          [[0.0, 0.0, 0.5], [0.1, 0.0, 0.2], [0.0, 0.3, 0.0]]])  # [B=2, N=3, N=3]
prev_precedence = torch.tensor([[0.2, 0.5, 0.1], [0.6, 0.1, 0.1]])        # [B=2, N=3]
write_weights = torch.tensor([[0.1, 0.0, 0.8], [0.3, 0.5, 0.1]])          # [B=2, N=3]''',
            call='''p = precedence_update(prev_precedence, write_weights)
L = link_update(prev_link, prev_precedence, write_weights)''',
            checks=[("p", "precedence_update(prev_precedence, write_weights)", [
                ("precedence: p + w (no decay)", "the old precedence decays by (1 - Σ_i w[i]) before adding w"),
                ("precedence decays slot by slot, not by the total write",
                 "the decay uses the total write Σ_i w[i], the same for every slot"),
            ], ""),
                ("L", "link_update(prev_link, prev_precedence, write_weights)", [
                    ("link transposed (w_j p_i)",
                     "the link is transposed: L[i, j] uses w[i] (written now) and p[j] (written before)"),
                    ("diagonal not zeroed", "the diagonal must be zero: a slot is never linked to itself"),
                    ("old links never decay", "old links decay by (1 - w[i] - w[j])"),
                    ("decay (1 - w_i) only", "old links decay by (1 - w[i] - w[j]), both ends"),
                ], "")],
        ),
        "test_read_modes": dict(
            label="3.4", name="read_weighting",
            setup='''# batch 0: writes went 2 -> 0 -> 1; batch 1: a soft link matrix
link = torch.tensor([[[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]],
                     [[0.0, 0.1, 0.6], [0.7, 0.0, 0.2], [0.2, 0.5, 0.0]]])   # [B=2, N=3, N=3]
prev_read_weights = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]],
                                  [[0.2, 0.7, 0.1], [0.5, 0.0, 0.5]]])       # [B=2, R=2, N=3]
content = torch.tensor([[[0.0, 0.0, 0.0], [0.3, 0.3, 0.4]],
                        [[0.1, 0.1, 0.8], [0.6, 0.2, 0.2]]])                 # [B=2, R=2, N=3]
read_modes = torch.tensor([[[0.0, 0.0, 1.0], [0.7, 0.2, 0.1]],
                           [[1.0, 0.0, 0.0], [0.2, 0.5, 0.3]]])              # [B=2, R=2, 3] (backward, content, forward)''',
            call="w = read_weighting(link, prev_read_weights, content, read_modes)",
            checks=[("w", "read_weighting(...)", [
                ("forward and backward swapped",
                 "forward and backward are swapped: forward follows L (from slot j to the slot i written after it), "
                 "backward follows L transposed"),
                ("modes read in the order (content, backward, forward)",
                 "the read modes are ordered (backward, content, forward)"),
                ("content mode left out", "the content mode π[1] · c is missing"),
                ("the first head's weighting for every head",
                 "every read head follows the links from its own previous weighting"),
            ], "")],
        ),
    },
    "04_memn2n": {
        "test_position_encoding": dict(
            label="4.1", name="position_encoding",
            setup="",
            call="L = position_encoding(3, 4)",
            checks=[("L", "position_encoding(J=3, d=4)", [
                ("0-based indices", "the word index j and the dimension k start at 1, not 0"),
                ("sign of the second term flipped", "check the sign of the (k/d)(1 - 2j/J) term"),
                ("J and d swapped in the fractions", "the word position j is divided by J (the sentence length), "
                 "the dimension k by d (the embedding size)"),
            ], "the result has one row per word position j (J rows) and one column per dimension k (d columns)")],
        ),
        "test_memory_hop": dict(
            label="4.2", name="memory_hop",
            setup='''u = torch.tensor([[1.0, 0.0], [0.5, -1.0]])                          # [B=2, d=2]
memory_in = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 0.0]],
                          [[0.0, -1.0], [1.0, 1.0], [2.0, 0.0]]])        # [B=2, N=3, d=2]
memory_out = torch.tensor([[[10.0, 0.0], [0.0, 10.0], [99.0, 99.0]],
                           [[1.0, 2.0], [3.0, -1.0], [0.0, 4.0]]])      # [B=2, N=3, d=2]
mask = torch.tensor([[True, True, False], [True, True, True]])         # slot 2 of element 0 is padding''',
            call="out = memory_hop(u, memory_in, memory_out, mask)\nu_next, p = out",
            checks=[("p", "attention p", [
                ("padding not masked", "padding slots must get exactly zero attention: mask them before the softmax"),
                ("mask applied after the softmax, not renormalised",
                 "you zeroed the padding after the softmax, so p no longer sums to 1: mask before the softmax"),
                ("softmax over the batch", "the softmax is over the N slots (dim 1), not over the batch"),
            ], ""),
                ("u_next", "u_next", [
                    ("returns o instead of u + o", "the next controller state is u + o, not o alone"),
                    ("reads the input memory instead of the output memory",
                     "o is read from the output memory (C), not the input memory (A)"),
                ], "")],
        ),
        "test_adjacent_memn2n": dict(
            label="4.3", name="adjacent_memn2n",
            setup='''_gen = torch.Generator().manual_seed(0)
E = [torch.randn(6, 3, generator=_gen) for _ in range(3)]          # K = 2 hops: E_0, E_1, E_2; V = 6, d = 3
stories = torch.tensor([[[1, 2], [3, 4], [5, 1]], [[2, 2], [4, 5], [0, 0]]])  # [B=2, N=3, J=2]
mask = torch.tensor([[True, True, True], [True, True, False]])     # element 1: slot 2 is padding
queries = torch.tensor([[3, 1], [5, 2]])                            # [B=2, J=2]
encoding = M.position_encoding(2, 3)''',
            call="out = adjacent_memn2n(stories, mask, queries, E, encoding)\nlogits, attention = out",
            checks=[("attention", "attention [B, K, N]", [
                ("output embedding of hop k is E_(k-1) too (no adjacent tying)",
                 "adjacent tying: the output memory of hop k uses E_k (C^k = A^(k+1))"),
                ("u not carried to the next hop", "each hop starts from the previous hop's u (u^(k+1) = u^k + o^k)"),
                ("no position encoding (bag of words)", "weight the word embeddings with the position encoding"),
                ("input and output embeddings swapped", "hop k reads A^k = E_(k-1) for matching and C^k = E_k "
                 "for the output, not the other way round"),
            ], "A^k = E_(k-1), C^k = E_k, B = E_0"),
                ("logits", "logits [B, V]", [
                    ("answer projection with E_0", "the answer projection is W^T = C^K = E_K (the last embedding)"),
                ], "")],
        ),
    },
    "05_kv_memnn": {
        "test_key_addressing": dict(
            label="5.2", name="key_addressing",
            setup='''query = torch.tensor([[1.0, 0.0], [0.5, 0.5]], dtype=torch.float64)          # [B=2, d=2]
keys = torch.tensor([[[2.0, 5.0], [0.0, 1.0], [9.0, 9.0]],
                     [[1.0, 1.0], [2.0, 0.0], [0.0, 3.0]]], dtype=torch.float64)  # [B=2, K=3, d=2]
key_mask = torch.tensor([[True, True, False], [True, True, True]])
no_keys = torch.tensor([[True, True, False], [False, False, False]])  # element 1 has no real key''',
            call="p = key_addressing(query, keys, key_mask)\np_empty = key_addressing(query, keys, no_keys)",
            checks=[("p", "key_addressing(query, keys, key_mask)", [
                ("no mask", "masked keys must get exactly zero weight: mask the scores before the softmax"),
                ("mask after the softmax, not renormalised",
                 "you zeroed masked keys after the softmax, so the weights no longer sum to 1"),
                ("softmax over the batch", "the softmax is over the K keys (the last dim), not over the batch"),
            ], ""),
                ("p_empty", "key_addressing for a row with no real key (must be all zeros, not NaN)", [
                    ("-inf fill: NaN for a row without keys",
                     "a row whose keys are all masked gives NaN with -inf scores: use a large finite negative "
                     "value and zero the masked weights"),
                ], "")],
        ),
        "test_value_reading": dict(
            label="5.2", name="value_reading",
            setup='''weights = torch.tensor([[0.25, 0.75, 0.0], [0.5, 0.2, 0.3]], dtype=torch.float64)  # [B=2, K=3]
values = torch.tensor([[[4.0, 0.0], [0.0, 4.0], [100.0, 100.0]],
                       [[1.0, -1.0], [2.0, 2.0], [0.0, 10.0]]], dtype=torch.float64)  # [B=2, K=3, d=2]''',
            call="o = value_reading(weights, values)",
            checks=[("o", "value_reading(weights, values)", [
                ("mean of the values", "weight each value by its p_i instead of averaging"),
                ("the first batch element's values for everyone", "every batch element reads its own values[b]"),
            ], "sum over the K keys (dim 1) of p_i v_i; the result has shape [B, d]")],
        ),
        "test_hop_update": dict(
            label="5.3", name="hop_update",
            setup='''query = torch.tensor([[1.0, 2.0], [0.0, -1.0]], dtype=torch.float64)  # [B=2, d=2]
read = torch.tensor([[0.0, 1.0], [2.0, 0.5]], dtype=torch.float64)    # [B=2, d=2]
R = torch.tensor([[0.0, 1.0], [2.0, 3.0]], dtype=torch.float64)       # [d, d], not symmetric''',
            call="q_next = hop_update(query, read, R)",
            checks=[("q_next", "hop_update(query, read, R)", [
                ("row-vector convention: (q + o) R",
                 "R acts on column vectors: for row vectors that is (q + o) R^T, not (q + o) R"),
                ("o left out: R q", "the read o is missing: R is applied to q + o"),
                ("q + R o", "R is applied to the sum q + o, not to o alone"),
                ("no R: q + o", "the hop's matrix R is missing"),
            ], "")],
        ),
    },
}


def _values(base: dict, spec: dict, answer: str | None) -> dict:
    ns = dict(base)
    with contextlib.redirect_stdout(io.StringIO()):
        if answer:
            exec(answer, ns)  # noqa: S102
        exec(spec["setup"], ns)  # noqa: S102
        try:
            exec(spec["call"], ns)  # noqa: S102
        except Exception:  # noqa: BLE001
            return {}
    return ns


def _indent(text: str) -> list[str]:
    return [("    " + line) if line.strip() else "" for line in text.split("\n")]


MISTAKES_MODULE = ROOT / "mem_tutorial" / "grading" / "selfcheck_mistakes.py"


def _plain(t: torch.Tensor):
    t = t.detach().cpu()
    if t.is_floating_point():
        return (t.to(torch.float64).round(decimals=DECIMALS) + 0.0).tolist()
    return t.tolist()


def render(chapter: str, gid: str, base: dict, table: dict) -> str:
    """The visible part of test cell ``gid``; fills ``table[gid:var]`` with the known mistakes' values."""
    spec = SPECS[chapter][gid]
    wrong = dict(WRONG_ANSWERS[chapter][gid])
    right = _values(base, spec, None)
    helpers = ["exercise", "expect_close", "known_mistakes"] + (["expect"] if spec.get("after") else [])
    lines = [HEADER, f"from mem_tutorial.grading.selfcheck import {', '.join(helpers)}", "",
             f'with exercise("{spec["label"]}", "{spec["name"]}"):']
    if spec["setup"]:
        lines += _indent(spec["setup"])
    lines += _indent(spec["call"])
    for var, what, mistakes, hint in spec["checks"]:
        expected = right[var]
        entries, seen = [], [expected.to(torch.float64)]
        for name, why in mistakes:
            got = _values(base, spec, wrong[name]).get(var)
            if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
                continue
            g = got.detach().to(torch.float64)
            if any(torch.allclose(g, s, atol=1e-4, equal_nan=True) for s in seen):
                continue  # shows nothing new in this check
            if torch.isinf(g).any():
                continue
            seen.append(g)
            entries.append([_plain(got), why])
        table[f"{gid}:{var}"] = entries
        call = [f"    expect_close({var}, {lit(expected)},", f"                 {what!r}"]
        if entries:
            call[-1] += f", mistakes=known_mistakes({gid!r}, {var!r})"
        if hint:
            call[-1] += ","
            call.append(f"                 hint={hint!r}")
        call[-1] += ")"
        lines += call
    if spec.get("after"):
        lines += _indent(spec["after"])
    return "\n".join(lines)


def _read_table() -> dict:
    ns: dict = {}
    if MISTAKES_MODULE.is_file():
        exec(MISTAKES_MODULE.read_text(encoding="utf-8"), ns)  # noqa: S102
    return dict(ns.get("MISTAKES", {}))


def _write_table(table: dict) -> str:
    nan = 'float("nan")'
    def entry(value, why):
        return "        (" + json.dumps(value).replace("NaN", nan) + ",\n         " + repr(why) + "),"

    body = ",\n".join(f"    {k!r}: [\n" + "\n".join(entry(v, w) for v, w in vs) + "\n    ]"
                      for k, vs in sorted(table.items()))
    doc = ('"""Values that common mistakes give on the visible examples of the graded test cells, with a one-line '
           "diagnosis each.\n\nGenerated by ``benchmarks/selfcheck_specs.py`` from ``tests/wrong_answers.py``; do not "
           'edit by hand. Keys: ``"<test grade_id>:<variable>"``.\n"""\n\n')
    return doc + "MISTAKES = {\n" + body + ",\n}\n"


def rewrite(chapter: str, table: dict, check: bool = False) -> bool:
    (path,) = sorted((ROOT / "solutions" / chapter).glob("*.py"))
    base, _ = load_chapter(chapter)
    text = path.read_text(encoding="utf-8")
    changed = False
    for gid in SPECS[chapter]:
        pattern = re.compile(r'(# %% nbgrader=\{[^\n]*"grade_id": "' + gid + r'"[^\n]*\}\n)(.*?)(\n### BEGIN HIDDEN TESTS)',
                             re.S)
        m = pattern.search(text)
        assert m, f"{chapter}: no test cell {gid}"
        new = render(chapter, gid, base, table)
        if m.group(2) != new:
            changed = True
            text = text[: m.start(2)] + new + text[m.end(2):]
    if changed and not check:
        path.write_text(text, encoding="utf-8")
    return changed


if __name__ == "__main__":
    torch.set_num_threads(1)
    check = "--check" in sys.argv
    names = [a for a in sys.argv[1:] if not a.startswith("--")]
    chapters = [c for c in SPECS if not names or any(c.startswith(n) for n in names)]
    table = _read_table()
    stale = [c for c in chapters if rewrite(c, table, check)]
    text = _write_table(table)
    if not MISTAKES_MODULE.is_file() or MISTAKES_MODULE.read_text(encoding="utf-8") != text:
        stale.append(MISTAKES_MODULE.name)
        if not check:
            MISTAKES_MODULE.write_text(text, encoding="utf-8")
    print(("stale: " if check else "rewrote: ") + ", ".join(stale) if stale else "up to date")
    sys.exit(1 if check and stale else 0)
