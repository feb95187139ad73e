# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# @course-badges
#
# # Chapter 2 — Neural Turing Machines
#
# *External memory in neural networks, built from scratch.* Chapter 1 built content addressing, reading and
# writing. The **Neural Turing Machine** (NTM; Graves, Wayne & Danihelka 2014) adds **location-based
# addressing**: a head can keep its focus, move it by a slot or two, and sharpen it again. With that, a small
# network learns *algorithms* such as "write the input to consecutive slots, then read them back", and the same
# weights work on sequences longer than any it was trained on.
#
# **Contents**
# 1. The NTM in one picture
# 2. Exercise 1 — the interpolation gate (Eq. 7)
# 3. Exercise 2 — circular shift (Eq. 8)
# 4. Exercise 3 — sharpening (Eq. 9)
# 5. Exercise 4 — the complete addressing pipeline
# 6. Explore: β, g, s and γ
# 7. Exercise 5 — one read-head step
# 8. The copy task, and an NTM learning it
# 9. A trained NTM: where it writes and reads
# 10. Beyond the training lengths: NTM vs LSTM
# 11. Summary · Exercises · References

# %% [markdown]
# ### Setup
# This cell works locally and in Colab. Where the course library is missing (Colab) it installs it from the
# published course (`COURSE_SOURCE`; to use another copy, set `MEM_TUTORIAL_SOURCE` in a cell above:
# `%env MEM_TUTORIAL_SOURCE=...`).

# %%
# NBVAL_IGNORE_OUTPUT
# @course-install

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

import mem_tutorial as mt
import mem_tutorial.memory as mem
from mem_tutorial.viz import plots

mt.seed_everything(0)
device = mt.get_device()
print("FAST mode:", mt.fast_mode())

# %% [markdown]
# ## 1. The NTM in one picture
#
# At every time step a **controller** (an LSTM or a feed-forward network) reads the input $x_t$ and the previous
# read vectors, and emits, for each **head**, the parameters of an addressing step:
#
# | parameter | range | role |
# |---|---|---|
# | key $k_t$ | $\mathbb{R}^W$ | what to look for (content) |
# | strength $\beta_t$ | $\ge 0$ | how sharply to focus on the best match (Chapter 1) |
# | gate $g_t$ | $[0, 1]$ | use the content weighting ($g = 1$) or keep last step's focus ($g = 0$) |
# | shift $s_t$ | a distribution over offsets $-1, 0, +1$ | move the focus |
# | sharpening $\gamma_t$ | $\ge 1$ | undo the blur of a fractional shift |
#
# The weighting is built in four stages (the paper's Figure 2):
#
# $$\underbrace{w^c_t = \operatorname{softmax}(\beta_t K(k_t, M_t))}_{\text{content, Eq. 5}}
# \;\to\; \underbrace{w^g_t = g_t w^c_t + (1-g_t) w_{t-1}}_{\text{interpolation, Eq. 7}}
# \;\to\; \underbrace{\tilde w_t(i) = \textstyle\sum_j w^g_t(j)\, s_t(i-j)}_{\text{shift, Eq. 8}}
# \;\to\; \underbrace{w_t(i) = \tilde w_t(i)^{\gamma_t} / \textstyle\sum_j \tilde w_t(j)^{\gamma_t}}_{\text{sharpen, Eq. 9}}$$
#
# A read head returns $r_t = \sum_i w_t(i) M_t(i)$; a write head erases and adds (Chapter 1). You write the three
# new stages, then the whole pipeline, then one head step.

# %% [markdown]
# ## 2. Exercise 1 — the interpolation gate (Eq. 7)
#
# $$w^g_t = g_t\, w^c_t + (1 - g_t)\, w_{t-1}$$
#
# Write `interpolate(content_w, prev_w, gate)`: `content_w: [B, N]`, `prev_w: [B, N]`, `gate: [B]` → `[B, N]`.
# Each batch element has its own gate. With $g = 1$ the head addresses by content; with $g = 0$ it ignores memory
# content and starts from where it was.

# %% nbgrader={"schema_version": 3, "grade": false, "solution": true, "locked": false, "task": false, "grade_id": "interpolate"}
def interpolate(content_w, prev_w, gate):
    """Interpolation gate (NTM Eq. 7). content_w: [B, N], prev_w: [B, N], gate: [B] -> [B, N]"""
    ### BEGIN SOLUTION
    g = gate.unsqueeze(-1)  # [B, 1]
    return g * content_w + (1 - g) * prev_w
    ### END SOLUTION


# %% nbgrader={"schema_version": 3, "grade": true, "solution": false, "locked": true, "task": false, "grade_id": "test_interpolate", "points": 2}
# Visible checks: run this cell to test your answer (it reports and carries on when a check fails).
from mem_tutorial.grading.selfcheck import exercise

with exercise("2.1", "interpolate"):
    wc = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    wp = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    out = interpolate(wc, wp, torch.tensor([0.25, 1.0]))
    assert out.shape == (2, 3), f"expected shape [B, N] = [2, 3], got {list(out.shape)}"
    assert torch.allclose(out, torch.tensor([[0.25, 0.0, 0.75], [0.0, 1.0, 0.0]])), out
### BEGIN HIDDEN TESTS
from mem_tutorial.grading.checks import assert_close, assert_distribution, assert_own_work

_g = torch.Generator().manual_seed(201)
_wc = torch.softmax(torch.randn(4, 7, generator=_g, dtype=torch.float64), -1)
_wp = torch.softmax(torch.randn(4, 7, generator=_g, dtype=torch.float64), -1)
_gate = torch.tensor([0.0, 0.3, 0.8, 1.0], dtype=torch.float64)
_ref = torch.stack([_gate[b] * _wc[b] + (1 - _gate[b]) * _wp[b] for b in range(4)])
_got = assert_own_work(interpolate, [mem.interpolate], _wc, _wp, _gate)
assert_close(_got, _ref, "interpolate with a different gate per batch element")
assert_distribution(_got, "interpolate of two distributions")
assert_close(interpolate(_wc, _wp, torch.zeros(4, dtype=torch.float64)), _wp, "g = 0 must keep the previous weighting")
### END HIDDEN TESTS

# %% [markdown]
# ## 3. Exercise 2 — circular shift (Eq. 8)
#
# The shift distribution $s_t$ has $S$ entries (odd), one per **offset** $-\lfloor S/2 \rfloor, \dots, +\lfloor S/2
# \rfloor$; with $S = 3$ the entries are the offsets $(-1, 0, +1)$. The shifted weighting is a **circular**
# convolution, indices taken modulo $N$:
#
# $$\tilde w_t(i) = \sum_{j=0}^{N-1} w^g_t(j)\, s_t(i - j).$$
#
# Convention (the same as the library's): all mass on offset $+1$ moves a focus at slot $i$ to slot $i + 1$, and
# slot $N-1$ **wraps around** to slot 0. Write `shift(weights, shift_dist)`: `weights: [B, N]`,
# `shift_dist: [B, S]` → `[B, N]`. A loop over the $S$ offsets is fine (`torch.roll` helps); no loop over slots.

# %% nbgrader={"schema_version": 3, "grade": false, "solution": true, "locked": false, "task": false, "grade_id": "shift"}
def shift(weights, shift_dist):
    """Circular shift (NTM Eq. 8). weights: [B, N], shift_dist: [B, S] (offsets -(S//2)..S//2) -> [B, N]"""
    ### BEGIN SOLUTION
    half = shift_dist.shape[-1] // 2
    out = torch.zeros_like(weights)
    for j in range(shift_dist.shape[-1]):
        out = out + shift_dist[:, j : j + 1] * torch.roll(weights, shifts=j - half, dims=-1)
    return out
    ### END SOLUTION


# %% nbgrader={"schema_version": 3, "grade": true, "solution": false, "locked": true, "task": false, "grade_id": "test_shift", "points": 3}
# Visible checks: run this cell to test your answer (it reports and carries on when a check fails).
from mem_tutorial.grading.selfcheck import exercise

with exercise("2.2", "shift"):
    w = torch.tensor([[0.0, 1.0, 0.0, 0.0, 0.0]])
    out = shift(w, torch.tensor([[0.0, 0.0, 1.0]]))
    assert out.shape == (1, 5), f"expected shape [B, N] = [1, 5], got {list(out.shape)}"
    assert torch.allclose(out, torch.tensor([[0.0, 0.0, 1.0, 0.0, 0.0]])), f"offset +1 must move slot 1 to slot 2: {out}"
    assert torch.allclose(shift(w, torch.tensor([[0.5, 0.5, 0.0]])), torch.tensor([[0.5, 0.5, 0.0, 0.0, 0.0]]))
### BEGIN HIDDEN TESTS
from mem_tutorial.grading.checks import assert_close, assert_distribution, assert_own_work

_N = 6
_last = torch.zeros(1, _N, dtype=torch.float64); _last[0, _N - 1] = 1.0
_first = torch.zeros(1, _N, dtype=torch.float64); _first[0, 0] = 1.0
_plus = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)
_minus = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
assert_close(shift(_last, _plus), _first, "offset +1 must wrap slot N-1 around to slot 0")
assert_close(shift(_first, _minus), _last, "offset -1 must wrap slot 0 around to slot N-1")
_g = torch.Generator().manual_seed(202)
_w = torch.softmax(torch.randn(3, 7, generator=_g, dtype=torch.float64), -1)
for _S in (3, 5):
    _s = torch.softmax(torch.randn(3, _S, generator=_g, dtype=torch.float64), -1)
    _ref = torch.zeros(3, 7, dtype=torch.float64)
    for _b in range(3):
        for _i in range(7):
            for _j in range(7):
                for _k in range(_S):
                    if (_i - _j - (_k - _S // 2)) % 7 == 0:
                        _ref[_b, _i] += _w[_b, _j] * _s[_b, _k]
    _got = assert_own_work(shift, [mem.shift], _w, _s)
    assert_close(_got, _ref, f"shift on a random batch with S = {_S} offsets (direction: +1 moves i to i+1)")
    assert_distribution(_got, "shift of a distribution")
### END HIDDEN TESTS

# %% [markdown]
# ## 4. Exercise 3 — sharpening (Eq. 9)
#
# A fractional shift blurs the weighting; after many steps the focus would dissolve. Sharpening with
# $\gamma_t \ge 1$ raises every entry to the power $\gamma_t$ and **renormalises**:
#
# $$w_t(i) = \frac{\tilde w_t(i)^{\gamma_t}}{\sum_j \tilde w_t(j)^{\gamma_t}}.$$
#
# Write `sharpen(weights, gamma, eps=1e-12)`: `weights: [B, N]`, `gamma: [B]` → `[B, N]`, each row summing to 1.
# Add `eps` to the denominator so that an all-zero row gives zeros, not NaN.

# %% nbgrader={"schema_version": 3, "grade": false, "solution": true, "locked": false, "task": false, "grade_id": "sharpen"}
def sharpen(weights, gamma, eps=1e-12):
    """Sharpening (NTM Eq. 9). weights: [B, N], gamma: [B] -> [B, N], rows sum to 1"""
    ### BEGIN SOLUTION
    powered = weights ** gamma.unsqueeze(-1)
    return powered / (powered.sum(-1, keepdim=True) + eps)
    ### END SOLUTION


# %% nbgrader={"schema_version": 3, "grade": true, "solution": false, "locked": true, "task": false, "grade_id": "test_sharpen", "points": 2}
# Visible checks: run this cell to test your answer (it reports and carries on when a check fails).
from mem_tutorial.grading.selfcheck import exercise

with exercise("2.3", "sharpen"):
    w = torch.tensor([[0.5, 0.25, 0.25]])
    out = sharpen(w, torch.tensor([2.0]))
    assert out.shape == (1, 3), f"expected shape [B, N] = [1, 3], got {list(out.shape)}"
    assert torch.allclose(out, torch.tensor([[4 / 6, 1 / 6, 1 / 6]])), out
### BEGIN HIDDEN TESTS
from mem_tutorial.grading.checks import assert_close, assert_distribution, assert_own_work

_g = torch.Generator().manual_seed(203)
_w = torch.softmax(torch.randn(4, 9, generator=_g, dtype=torch.float64), -1)
_gamma = torch.tensor([1.0, 1.5, 3.0, 10.0], dtype=torch.float64)
_ref = torch.stack([_w[b] ** _gamma[b] / (_w[b] ** _gamma[b]).sum() for b in range(4)])
_got = assert_own_work(sharpen, [mem.sharpen], _w, _gamma)
assert_close(_got, _ref, "sharpen with a different gamma per batch element")
assert_distribution(_got, "sharpen (rows must be renormalised to sum to 1)")
assert_close(sharpen(_w, torch.ones(4, dtype=torch.float64)), _w, "gamma = 1 must leave a distribution unchanged")
_z = sharpen(torch.zeros(2, 5, dtype=torch.float64), torch.full((2,), 2.0, dtype=torch.float64))
assert torch.isfinite(_z).all(), "an all-zero weighting must not give NaN (add eps to the denominator)"
### END HIDDEN TESTS

# %% [markdown]
# From here on the notebook uses the library's tested versions `mem.interpolate`, `mem.shift` and `mem.sharpen`.
# They also take several heads at once (`[B, R, N]`), and the library's sharpening first divides by the largest
# entry (the same value, but no underflow in float32 when γ is large).
#
# ## 5. Exercise 4 — the complete addressing pipeline
#
# Chain content weighting, interpolation, shift and sharpening (Eq. 5–9) in the paper's order. Write
# `address(memory, key, beta, gate, shift_dist, gamma, prev_w)` for one head per batch element:
# `memory: [B, N, W]`, `key: [B, W]`, `beta, gate, gamma: [B]`, `shift_dist: [B, S]`, `prev_w: [B, N]` → `[B, N]`.
# Use the library's stages (`mem.content_weighting`, `mem.interpolate`, `mem.shift`, `mem.sharpen`) — not
# `mem.ntm_addressing`, which is this exercise's answer.

# %% nbgrader={"schema_version": 3, "grade": false, "solution": true, "locked": false, "task": false, "grade_id": "address"}
def address(memory, key, beta, gate, shift_dist, gamma, prev_w):
    """NTM addressing (Eq. 5-9) for one head. Returns the weighting w_t: [B, N]."""
    ### BEGIN SOLUTION
    content_w = mem.content_weighting(memory, key, beta)
    gated = mem.interpolate(content_w, prev_w, gate)
    shifted = mem.shift(gated, shift_dist)
    return mem.sharpen(shifted, gamma)
    ### END SOLUTION


# %% nbgrader={"schema_version": 3, "grade": true, "solution": false, "locked": true, "task": false, "grade_id": "test_address", "points": 2}
# Visible checks: run this cell to test your answer (it reports and carries on when a check fails).
from mem_tutorial.grading.selfcheck import exercise

with exercise("2.4", "address"):
    M = torch.eye(4).unsqueeze(0)                       # [1, 4, 4]: slot i holds the unit vector e_i
    prev = torch.tensor([[0.0, 0.0, 1.0, 0.0]])          # focused on slot 2
    w = address(M, torch.tensor([[1.0, 0.0, 0.0, 0.0]]), torch.tensor([50.0]), torch.tensor([0.0]),
                torch.tensor([[0.0, 0.0, 1.0]]), torch.tensor([1.0]), prev)
    assert w.shape == (1, 4), f"expected shape [B, N] = [1, 4], got {list(w.shape)}"
    assert torch.allclose(w, torch.tensor([[0.0, 0.0, 0.0, 1.0]]), atol=1e-5), f"g = 0, shift +1 from slot 2: {w}"
### BEGIN HIDDEN TESTS
from mem_tutorial.grading.checks import assert_close, assert_distribution, assert_own_work

_g = torch.Generator().manual_seed(204)
_B, _N, _W = 3, 8, 5
_M = torch.randn(_B, _N, _W, generator=_g, dtype=torch.float64)
_k = torch.randn(_B, _W, generator=_g, dtype=torch.float64)
_beta = torch.tensor([0.5, 4.0, 20.0], dtype=torch.float64)
_gate = torch.tensor([0.2, 0.7, 1.0], dtype=torch.float64)
_s = torch.softmax(torch.randn(_B, 3, generator=_g, dtype=torch.float64), -1)
_gamma = torch.tensor([1.0, 2.5, 6.0], dtype=torch.float64)
_prev = torch.softmax(3 * torch.randn(_B, _N, generator=_g, dtype=torch.float64), -1)
_cos = torch.einsum("bnw,bw->bn", _M, _k) / (_M.norm(dim=-1) * _k.norm(dim=-1, keepdim=True))
_wc = torch.softmax(_beta[:, None] * _cos, -1)
_wg = _gate[:, None] * _wc + (1 - _gate[:, None]) * _prev
_ws = sum(_s[:, j : j + 1] * torch.roll(_wg, j - 1, dims=-1) for j in range(3))
_ref = _ws ** _gamma[:, None] / (_ws ** _gamma[:, None]).sum(-1, keepdim=True)
_got = assert_own_work(address, [mem.ntm_addressing], _M, _k, _beta, _gate, _s, _gamma, _prev)
assert_distribution(_got, "address")
assert_close(_got, _ref, "address: content -> interpolate -> shift -> sharpen, in this order", rtol=1e-4, atol=1e-6)
### END HIDDEN TESTS

# %% [markdown]
# ## 6. Explore: β, g, s and γ
#
# Each panel is one stage. The previous weighting is focused on slot 3 and the key is a noisy copy of row 10.
# Try: $g = 0$ with shift $+1$ (the head steps forward — how the NTM walks through memory when copying);
# $g = 1$ (jump to the slot that matches the key); a blurred shift, then $\gamma = 10$ to sharpen it back.
# (The sliders need a live kernel; in a static view you see the starting state.)

# %%
# NBVAL_IGNORE_OUTPUT
from mem_tutorial.viz.widgets import ntm_addressing_explorer, ntm_addressing_stages

ntm_addressing_explorer()

# %% [markdown]
# Without widgets: ten steps of a head with $g = 0$ and a slightly blurred shift of $+1$, with and without
# sharpening. Without γ the focus melts away; with γ = 3 it stays a sharp, moving point.

# %%
N = 16
memory16 = torch.randn(1, N, 6)
blurred = torch.tensor([[0.05, 0.15, 0.8]])
fig, axes = plt.subplots(1, 2, figsize=(10, 2.8))
for ax, gamma in zip(axes, [1.0, 3.0]):
    w = F.one_hot(torch.tensor([0]), N).double()
    steps = []
    for t in range(10):
        w = mem.ntm_addressing(memory16.double(), torch.ones(1, 6, dtype=torch.float64), torch.tensor([1.0]).double(),
                               torch.tensor([0.0]).double(), blurred.double(), torch.tensor([gamma]).double(), w)
        steps.append(w[0])
    plots.plot_weightings(torch.stack(steps), ax=ax, title=f"10 steps of shift +1, γ = {gamma}")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 7. Exercise 5 — one read-head step
#
# The controller emits one unconstrained vector per head; the head turns it into valid parameters and reads.
# For a read head the vector has $W + 3 + S$ entries laid out as (the library's `NTM.head_params` uses the same
# layout and activations):
#
# | entries | parameter | activation |
# |---|---|---|
# | `[0, W)` | key $k$ | none |
# | `W` | strength $\beta$ | softplus (so $\beta \ge 0$) |
# | `W + 1` | gate $g$ | sigmoid |
# | `[W + 2, W + 2 + S)` | shift $s$ | softmax over the $S$ offsets |
# | `W + 2 + S` | sharpening $\gamma$ | $1 + $ softplus (so $\gamma \ge 1$) |
#
# Write `read_head_step(memory, prev_w, raw)`: `memory: [B, N, W]`, `prev_w: [B, N]`, `raw: [B, W + 3 + S]` →
# `(read_vector [B, W], weights [B, N])`. Use `mem.ntm_addressing` for the addressing and `mem.read` to read.

# %% nbgrader={"schema_version": 3, "grade": false, "solution": true, "locked": false, "task": false, "grade_id": "read_head_step"}
def read_head_step(memory, prev_w, raw):
    """One NTM read head: raw controller output -> parameters -> weighting -> read vector."""
    W = memory.shape[-1]
    S = raw.shape[-1] - W - 3
    ### BEGIN SOLUTION
    key = raw[:, :W]
    beta = F.softplus(raw[:, W])
    gate = torch.sigmoid(raw[:, W + 1])
    shift_dist = torch.softmax(raw[:, W + 2 : W + 2 + S], dim=-1)
    gamma = 1 + F.softplus(raw[:, W + 2 + S])
    weights = mem.ntm_addressing(memory, key, beta, gate, shift_dist, gamma, prev_w)
    return mem.read(memory, weights), weights
    ### END SOLUTION


# %% nbgrader={"schema_version": 3, "grade": true, "solution": false, "locked": true, "task": false, "grade_id": "test_read_head_step", "points": 2}
# Visible checks: run this cell to test your answer (it reports and carries on when a check fails).
from mem_tutorial.grading.selfcheck import exercise

with exercise("2.5", "read_head_step"):
    M = torch.eye(4).unsqueeze(0)
    raw = torch.zeros(1, 4 + 3 + 3)
    raw[0, 5] = -20.0          # gate ~ 0: keep the previous focus
    raw[0, 8] = 20.0           # all shift mass on offset +1
    r, w = read_head_step(M, torch.tensor([[1.0, 0.0, 0.0, 0.0]]), raw)
    assert r.shape == (1, 4) and w.shape == (1, 4), f"expected [1, 4] and [1, 4], got {list(r.shape)}, {list(w.shape)}"
    assert w.argmax().item() == 1, f"gate ~ 0 and shift +1 from slot 0 must focus on slot 1: {w}"
### BEGIN HIDDEN TESTS
from mem_tutorial.grading.checks import assert_close

_g = torch.Generator().manual_seed(205)
_B, _N, _W, _S = 3, 7, 4, 3
_M = torch.randn(_B, _N, _W, generator=_g, dtype=torch.float64)
_prev = torch.softmax(torch.randn(_B, _N, generator=_g, dtype=torch.float64), -1)
_raw = 2 * torch.randn(_B, _W + 3 + _S, generator=_g, dtype=torch.float64)
_raw[:, _W + 2 + _S] = torch.tensor([-6.0, 0.0, 2.0], dtype=torch.float64)  # gamma near 1 for the first element
_raw[:, _W] = torch.tensor([-3.0, 1.0, 4.0], dtype=torch.float64)
_k, _beta, _gate = _raw[:, :_W], F.softplus(_raw[:, _W]), torch.sigmoid(_raw[:, _W + 1])
_s, _gamma = torch.softmax(_raw[:, _W + 2 : _W + 2 + _S], -1), 1 + F.softplus(_raw[:, _W + 2 + _S])
_cos = torch.einsum("bnw,bw->bn", _M, _k) / (_M.norm(dim=-1) * _k.norm(dim=-1, keepdim=True))
_wc = torch.softmax(_beta[:, None] * _cos, -1)
_wg = _gate[:, None] * _wc + (1 - _gate[:, None]) * _prev
_ws = sum(_s[:, j : j + 1] * torch.roll(_wg, j - 1, dims=-1) for j in range(3))
_wref = _ws ** _gamma[:, None] / (_ws ** _gamma[:, None]).sum(-1, keepdim=True)
_r, _w = read_head_step(_M, _prev, _raw)
assert_close(_w, _wref, "read_head_step weights (check each parameter's activation: softplus, sigmoid, softmax, "
             "1 + softplus)", rtol=1e-4, atol=1e-6)
assert_close(_r, torch.einsum("bn,bnw->bw", _wref, _M), "read_head_step read vector", rtol=1e-4, atol=1e-6)
### END HIDDEN TESTS

# %% [markdown]
# ## 8. The copy task, and an NTM learning it
#
# The paper's first task (Section 4.1): the network sees a sequence of random 8-bit vectors, then a delimiter on
# a ninth channel, and must then reproduce the sequence with no input. Lengths are random from 1 to 20. The
# library's `mem_tutorial.tasks` builds padded batches with masks (only the answer steps are scored):

# %%
from mem_tutorial.tasks import bits_error, copy_task, cross_entropy_bits

example = copy_task(1, min_len=6, max_len=6, generator=torch.Generator().manual_seed(0))
print("inputs", list(example.inputs.shape), "targets", list(example.targets.shape), "masks", list(example.masks.shape))
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 2.6))
ax1.imshow(example.inputs[0].T, cmap="Greys", aspect="auto"); ax1.set_title("inputs (8 bits + delimiter)")
ax2.imshow(example.targets[0].T, cmap="Greys", aspect="auto"); ax2.set_title("targets (scored after the delimiter)")
for ax in (ax1, ax2):
    ax.set_xlabel("time")
fig.tight_layout()
plt.show()

# %% [markdown]
# The model, `mem_tutorial.models.ntm.NTM`, is the controller plus the pipeline you just wrote; its state
# (memory, weightings, reads, controller state) is an explicit `NTMState` passed from step to step. One step:

# %%
import inspect

from mem_tutorial.models.ntm import NTM, NTMConfig
from mem_tutorial.tasks.training import evaluate, train_on_task

print(inspect.getsource(NTM.step))

# %% [markdown]
# Training counts **sequences**: the cost is the number of wrong bits per sequence (after thresholding the output
# at 0.5), averaged over the last 1,000 training sequences. The library's `train_on_task` uses Adam and clips
# every gradient component to $[-10, 10]$ as in the paper. In FAST mode (CI) this is a tiny NTM on short
# sequences; the full mode uses the paper's sizes (it takes a while on a CPU: the next section loads a trained
# one).
#
# For long runs, `NTM(...).compile_step()` sends the steps through `torch.compile`: the first sequences wait
# for a compilation (up to a minute or so the first time; it needs a C++ compiler, which Linux, macOS and
# Colab have), then training at batch 1 runs about 2.7 times faster on a CPU (`benchmarks/RESULTS.md`,
# Chapter 2).

# %%
sizes = mt.pick(fast=dict(controller_size=32, memory_slots=16, memory_width=8), full={})  # full: the paper's sizes
mt.seed_everything(0)
tiny = NTM(NTMConfig(**sizes)).to(device)
run = train_on_task(tiny, "copy", batch_size=16, max_sequences=mt.pick(fast=1600, full=40_000), lr=3e-3,
                    task_kwargs={"min_len": 1, "max_len": mt.pick(fast=4, full=20)}, stop_after=None, log_every=5,
                    desc="NTM on copy", device=device)
print(f"sequences seen: {run.sequences}; cost over the last {len(run.monitor.costs)} sequences: "
      f"{run.monitor.mean:.3g} bits/sequence")

# %% [markdown]
# ## 9. A trained NTM: where it writes and reads
#
# The course ships a copy-task NTM checkpoint (`mem_tutorial/checkpoints/ntm_copy.pt`, the paper's sizes: LSTM
# controller 100, memory 128 × 20, trained on lengths 1–20) with the recipe that trained it; retrain it with
# `python benchmarks/ntm_copy.py retrain` (see `benchmarks/RESULTS.md`, Chapter 2).

# %%
from pathlib import Path

import mem_tutorial
from mem_tutorial.train import load_checkpoint

checkpoints = Path(mem_tutorial.__file__).parent / "checkpoints"
payload = load_checkpoint(checkpoints / "ntm_copy.pt")
ntm = NTM(NTMConfig(**payload["config"])).to(device)
ntm.load_state_dict(payload["state_dict"])
ntm.eval()
print("trained with library", payload["library_version"], "| config:", payload["config"])
print("recipe:", payload["extra"].get("recipe"), "| sequences:", payload["extra"].get("sequences"))
print("converged after", payload["extra"].get("converged_at"), "training sequences")

# %% [markdown]
# As in the paper's Figure 6: inputs, outputs, and the write and read weightings over time for one sequence of
# length 20. Heads may walk either way round the circular memory, so the weighting plots show only the slots
# the heads visited (`focus_slots` below), labelled with their true slot numbers. The write head steps through
# consecutive slots while the input arrives; after the delimiter the read head goes back to the first written
# slot and steps through the same slots in the same order.

# %%
def focus_slots(*weightings, margin=2, threshold=0.05):
    """The slots that any of the [T, N] weightings visits (weight > threshold), as one contiguous window of the
    circular memory (plus a margin), in the order of the slot numbers modulo N. Returns slot indices [K]."""
    N = weightings[0].shape[-1]
    hit = torch.zeros(N, dtype=torch.bool)
    for w in weightings:
        hit |= (w > threshold).any(dim=0).cpu()
    idx = hit.nonzero().flatten()
    if len(idx) == 0:
        return torch.arange(min(N, 8))
    # the largest gap between visited slots (cyclically) is where the window does not go
    gaps = torch.diff(torch.cat([idx, idx[:1] + N]))
    start = idx[(int(gaps.argmax()) + 1) % len(idx)]
    span = int(N - gaps.max() + 1)
    return (start - margin + torch.arange(min(N, span + 2 * margin))) % N


def plot_trace(inputs, outputs, write_w, read_w, title=""):
    """Figure 6/7 of the paper: inputs and outputs [T, bits] (outputs shown at the scored steps only), write and
    read weightings [T, N] (visited slots)."""
    slots = focus_slots(write_w, read_w)
    fig, axes = plt.subplots(2, 2, figsize=(11, 5), sharex=True)
    axes[0, 0].imshow(inputs.T, cmap="Greys", aspect="auto", interpolation="nearest"); axes[0, 0].set_title("inputs")
    axes[0, 1].imshow(outputs.T, cmap="Greys", aspect="auto", interpolation="nearest", vmin=0, vmax=1)
    axes[0, 1].set_title("outputs")
    for ax, w, name in ((axes[1, 0], write_w, "write"), (axes[1, 1], read_w, "read")):
        plots.plot_weightings(w[:, slots], ax=ax, title=f"{name} weighting (visited slots)")
        ticks = list(range(0, len(slots), max(1, len(slots) // 6)))
        ax.set_yticks(ticks, [str(int(slots[i])) for i in ticks])
    fig.suptitle(title)
    fig.tight_layout()
    plt.show()


with torch.no_grad():
    seq = copy_task(1, min_len=20, max_len=20, generator=torch.Generator().manual_seed(3), device=device)
    tr = ntm.trace(seq.inputs)
print("wrong bits on this sequence:", int(bits_error(tr.logits, seq.targets, seq.masks).item()))
plot_trace(seq.inputs[0].cpu(), (torch.sigmoid(tr.logits) * seq.masks.unsqueeze(-1))[0].cpu(),
           tr.write_weights[0, :, 0].cpu(), tr.read_weights[0, :, 0].cpu(), "copy, length 20")

# %% [markdown]
# ### Repeat copy
#
# The paper's second task (Section 4.2): after the sequence, the delimiter channel and a **repeat count** on an
# extra channel (normalised: count / maximum count); the network must output the sequence that many times and
# then raise an end marker on an extra output channel. It has to store the sequence, jump back to its start once
# per repeat and count. The paper trains on lengths 1–10 and 1–10 repeats; on a shared 2-core CPU that was too
# slow for this course, so the shipped checkpoint (`ntm_repeat_copy.pt`, the paper's model sizes with 10 inputs
# and 9 outputs) was trained on the **smaller range printed below**, starting from the copy NTM's weights (it
# already writes a sequence to consecutive slots and reads it back; repeat copy adds the jumps back and the
# counting). Its recipe is the command that retrains it; `--max-len 10 --max-repeats 10` gives the paper's range,
# and `benchmarks/RESULTS.md` says how far the shipped one got. Compare the figure with the paper's Figure 7.
#
# **The shipped repeat-copy NTM is only partly trained** (the CPU budget ran out; it prints its own cost below). It
# writes the sequence to consecutive slots and reproduces the first repeat almost perfectly (the copy procedure it
# started from), but it has not yet learned to jump back to the start after each repeat: in the figure below the
# read head walks on past the stored slots into empty memory, and the later repeats are guesses. A converged NTM
# shows the read weighting of the paper's Figure 7: the same walk through the stored slots once per repeat, with a
# jump back to the first slot in between. Look for that difference.

# %%
from mem_tutorial.tasks import repeat_copy_task

rc_payload = load_checkpoint(checkpoints / "ntm_repeat_copy.pt")
rc_ntm = NTM(NTMConfig(**rc_payload["config"])).to(device)
rc_ntm.load_state_dict(rc_payload["state_dict"])
rc_ntm.eval()
rc_range = rc_payload["extra"]["task_kwargs"]
print("trained on:", rc_range, "|", rc_payload["extra"]["sequences"], "training sequences")
if rc_payload["extra"].get("converged_at") is None:
    print("NOT converged: cost over its last 1,000 training sequences",
          round(rc_payload["extra"]["final_windowed_cost"], 2), "bits/sequence")
print("recipe:", rc_payload["extra"].get("recipe"))
rc_eval = evaluate(rc_ntm, "repeat_copy", sequences=mt.pick(fast=50, full=500), task_kwargs=rc_range, device=device)
print(f"wrong bits per sequence over the training range: {rc_eval['bits_error']:.4g} "
      f"({100 * rc_eval['perfect']:.4g}% of the sequences perfect)")

# %%
L_rc, n_rc = rc_range["max_len"], min(3, rc_range["max_repeats"])
with torch.no_grad():
    rc_seq = repeat_copy_task(1, min_len=L_rc, max_len=L_rc, min_repeats=n_rc, max_repeats=n_rc,
                              repeat_norm=rc_range["repeat_norm"], generator=torch.Generator().manual_seed(1),
                              device=device)
    rc_tr = rc_ntm.trace(rc_seq.inputs)
print(f"length {L_rc}, {n_rc} repeats: wrong bits", int(bits_error(rc_tr.logits, rc_seq.targets, rc_seq.masks).item()))
plot_trace(rc_seq.inputs[0].cpu(), (torch.sigmoid(rc_tr.logits) * rc_seq.masks.unsqueeze(-1))[0].cpu(),
           rc_tr.write_weights[0, :, 0].cpu(),
           rc_tr.read_weights[0, :, 0].cpu(), f"repeat copy, length {L_rc}, {n_rc} repeats")

# %% [markdown]
# ## 10. Beyond the training lengths: NTM vs LSTM
#
# The NTM was trained on lengths 1–20 only. It learned a *procedure* ("write at the next slot, later read from
# the first slot onwards") whose parameters do not depend on the sequence length, so it keeps working on longer
# sequences as long as the memory has room (the paper's Figures 3–5). The baseline is an LSTM without memory
# (`lstm_copy.pt`, trained on the same task and lengths; recipe printed below). Both are evaluated on the same
# fixed sequences of each length. The memory size N is not a parameter of the NTM: `ntm.with_memory_slots(256)`
# runs the same weights with a larger memory, which matters near N = 128.

# %%
lstm_payload = load_checkpoint(checkpoints / "lstm_copy.pt")
from mem_tutorial.models.lstm import LSTMBaseline, LSTMConfig

lstm = LSTMBaseline(LSTMConfig(**lstm_payload["config"])).to(device)
lstm.load_state_dict(lstm_payload["state_dict"])
lstm.eval()
print("LSTM:", lstm_payload["config"], "| recipe:", lstm_payload["extra"].get("recipe"))
print("cost over its last 1,000 training sequences:", round(lstm_payload["extra"]["final_windowed_cost"], 2),
      "bits/sequence")

# %%
from mem_tutorial.tasks.training import sequence_errors

lengths = mt.pick(fast=[10, 20, 40, 80, 120], full=[10, 20, 30, 40, 50, 60, 80, 100, 120])
n_eval = mt.pick(fast=10, full=100)
models = {"NTM (N = 128)": ntm, "NTM (N = 256)": ntm.with_memory_slots(256), "LSTM": lstm}
errors = {name: [sequence_errors(m, "copy", sequences=n_eval, batch_size=n_eval, seed=1000 + n, device=device,
                                 task_kwargs={"min_len": n, "max_len": n})[0] for n in lengths]
          for name, m in models.items()}
print(f"mean wrong bits per sequence (% of sequences with no wrong bit), {n_eval} sequences per length")
print("length " + " ".join(f"{name:>16}" for name in models))
for i, n in enumerate(lengths):
    cells = [f"{e[i].mean().item():.4g} ({100 * (e[i] == 0).float().mean().item():.0f}%)" for e in errors.values()]
    print(f"{n:>6} " + " ".join(f"{c:>16}" for c in cells))
plt.figure(figsize=(6, 3.4))
for (name, e), style in zip(errors.items(), ["o-", "s--", "^-"]):
    plt.plot(lengths, [x.mean().item() for x in e], style, label=name)
plt.axvline(20, color="grey", ls=":", label="longest training length")
plt.yscale("symlog", linthresh=1)
plt.ylim(bottom=0)
plt.xlabel("sequence length"); plt.ylabel("wrong bits / sequence"); plt.legend(); plt.tight_layout()
plt.show()

# %% [markdown]
# Read the table as well as the plot: a mean of a fraction of a bit can be many perfect sequences plus one
# failure (the benchmark in `benchmarks/RESULTS.md` uses 100–1,000 sequences per length and reports the
# distribution). The LSTM's errors grow quickly beyond the trained lengths, the NTM's stay near zero. Near the
# memory's size (N = 128) the trained NTM degrades; the same weights with N = 256 copy length 120 almost
# perfectly: the procedure generalises, the memory must only be large enough.

# %% [markdown]
# **Question (written, graded by your instructor).** Why does the NTM generalise to sequences longer than it was
# trained on, when an LSTM of similar or larger size does not?

# %% [markdown] nbgrader={"schema_version": 3, "grade": true, "solution": true, "locked": false, "task": false, "grade_id": "written_generalisation", "points": 2}
# The trained NTM stores each input vector in its own memory slot and moves its heads by relative location
# (gate g ~ 0, shift +1, sharpening), then finds the start again by content and reads in the same order. Each
# step of this procedure is the same whatever the length, and the number of slots, not the number of parameters,
# limits how much it can hold: a longer sequence only uses more slots (up to N = 128). An LSTM must squeeze the
# whole sequence into its fixed-size cell state, with a coding that it tuned to the lengths seen in training:
# longer sequences overflow that capacity and leave the range of states it learned, so its errors grow quickly
# beyond length 20. The NTM separates the algorithm (in the controller's weights) from the data (in memory).

# %% [markdown]
# ## 11. Summary
#
# - The NTM weighting is built in four stages: **content** (β), **interpolation** with the last weighting (g),
#   **circular shift** (s) and **sharpening** (γ) — Eq. 5–9.
# - With g = 0 and a shift of +1 a head walks through memory; with g = 1 it jumps to matching content. Sharpening
#   keeps a repeatedly shifted focus from blurring.
# - A controller emits the head parameters; activations keep them valid (softplus, sigmoid, softmax, 1+softplus).
# - Trained on copy with lengths 1–20, the NTM learns a procedure that works on longer sequences.
# - Chapter 3 (the DNC) replaces shifts with **temporal links** and adds **allocation** of free memory.
#
# ## Exercises (not graded)
# 1. Set `shift_range=5` in `NTMConfig` and train on copy. Does the model use the ±2 offsets?
# 2. Train with `memory_init="learned"` and `"random"` and compare sequences to converge (Collier & Beel 2018).
# 3. Use `repeat_copy_task` and `associative_recall_task` from `mem_tutorial.tasks`; plot the weightings.
# 4. Replace the LSTM controller with `controller="feedforward"`. What must the heads do differently?
#
# ## References
# - A. Graves, G. Wayne, I. Danihelka. *Neural Turing Machines.* arXiv:1410.5401, 2014. (Sections 3.3–4, Eq. 5–9)
# - M. Collier, J. Beel. *Implementing Neural Turing Machines.* ICANN 2018. (memory initialisation)
# - A. Graves et al. *Hybrid computing using a neural network with dynamic external memory.* Nature 538,
#   471–476, 2016.
