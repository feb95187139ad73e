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
# # Chapter 3 — The Differentiable Neural Computer
#
# *External memory in neural networks, built from scratch.* The Neural Turing Machine of Chapter 2 can find a
# slot by content or move its head by shifting, but it cannot **free** a slot, and it forgets **in which order**
# it wrote. The Differentiable Neural Computer (DNC; Graves et al. 2016) adds both: a *usage* per slot with
# *free gates* and an *allocation weighting* that writes to the least-used slot, and a *temporal link matrix* that
# lets a read head step forwards or backwards through its writes. You implement these mechanisms, then train a
# DNC on a task that needs more memory than it has, look inside it, and compare it with an NTM of the same size.
#
# **Contents**
# 1. What the NTM cannot do
# 2. Exercise 1 — retention and usage
# 3. Exercise 2 — the allocation weighting
# 4. Exercise 3 — precedence and the temporal link matrix
# 5. Exercise 4 — read modes
# 6. A walk-through: allocate, free, reuse, follow the links
# 7. The whole DNC
# 8. Training on the reuse task (load or train)
# 9. Inside a trained DNC: usage, gates, links, read modes
# 10. NTM vs DNC at equal memory size
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
# ## 1. What the NTM cannot do
#
# The NTM writes where its head points. To use a fresh slot it must *shift* there, one slot per step, and every
# slot it leaves behind keeps its old content: nothing says "this slot is no longer needed". On a long stream of
# short tasks (copy this, now copy that, …) its memory fills with stale content. Worse, when it looks up by
# content, old copies compete with new ones.
#
# The DNC (Graves et al. 2016, *Methods*) keeps, next to the memory $M \in \mathbb{R}^{N \times W}$:
#
# | state | shape | meaning |
# |---|---|---|
# | usage $u_t$ | `[B, N]` | how much each slot is in use, in $[0, 1]$ |
# | precedence $p_t$ | `[B, N]` | how much each slot was *the last one written* |
# | link matrix $L_t$ | `[B, N, N]` | $L_t[i, j]$: how much slot $i$ was written right after slot $j$ |
# | read weightings $w^r_t$ | `[B, R, N]` | where each of the $R$ read heads read |
# | write weighting $w^w_t$ | `[B, N]` | where the single write head wrote |
#
# At every step the controller (an LSTM) emits an **interface vector** with, among others, a free gate $f^i$ per
# read head, an allocation gate $g^a$, a write gate $g^w$, and three read modes $\pi^i$ per read head. The next
# four exercises build the memory side, in the order the DNC runs them.

# %% [markdown]
# ## 2. Exercise 1 — retention and usage
#
# Each read head $i$ has a **free gate** $f^i_t \in [0, 1]$: "the slots I just read may be reused". The
# **retention** $\psi_t$ says how much of each slot is *not* freed, and the **usage** rises where the write head
# wrote at the previous step and falls where memory was freed:
#
# $$\psi_t = \prod_{i=1}^{R} \left(1 - f^i_t\, w^{r,i}_{t-1}\right), \qquad
#   u_t = \left(u_{t-1} + w^w_{t-1} - u_{t-1} \circ w^w_{t-1}\right) \circ \psi_t .$$
#
# Write `usage_update(prev_usage, prev_write_weights, free_gates, prev_read_weights)`:
# `prev_usage: [B, N]`, `prev_write_weights: [B, N]`, `free_gates: [B, R]`, `prev_read_weights: [B, R, N]` →
# the new usage `[B, N]`. No Python loops over the batch or the slots.

# %% nbgrader={"schema_version": 3, "grade": false, "solution": true, "locked": false, "task": false, "grade_id": "usage_update"}
def usage_update(prev_usage, prev_write_weights, free_gates, prev_read_weights):
    """u_t = (u + w^w - u * w^w) * psi, psi = prod_i (1 - f^i w^{r,i}).

    prev_usage: [B, N], prev_write_weights: [B, N], free_gates: [B, R], prev_read_weights: [B, R, N] -> [B, N]
    """
    ### BEGIN SOLUTION
    retention = torch.prod(1 - free_gates.unsqueeze(-1) * prev_read_weights, dim=1)  # [B, N]
    return (prev_usage + prev_write_weights - prev_usage * prev_write_weights) * retention
    ### END SOLUTION


# %% nbgrader={"schema_version": 3, "grade": true, "solution": false, "locked": true, "task": false, "grade_id": "test_usage_update", "points": 2}
# Visible checks: run this cell to test your answer (it reports and carries on when a check fails).
from mem_tutorial.grading.selfcheck import exercise

with exercise("3.1", "usage_update"):
    u = usage_update(torch.tensor([[0.5, 0.5, 0.0]]), torch.tensor([[0.0, 0.5, 1.0]]),
                     torch.tensor([[1.0, 0.5]]), torch.tensor([[[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]]]))
    assert u.shape == (1, 3), f"expected shape [B, N] = [1, 3], got {list(u.shape)}"
    assert torch.allclose(u, torch.tensor([[0.0, 0.5625, 0.75]])), u
### BEGIN HIDDEN TESTS
from mem_tutorial.grading.checks import assert_close, assert_own_work

_g = torch.Generator().manual_seed(301)
_B, _R, _N = 3, 4, 6
_u = torch.rand(_B, _N, generator=_g, dtype=torch.float64)
_ww = torch.softmax(torch.randn(_B, _N, generator=_g, dtype=torch.float64), -1) * 0.9
_f = torch.rand(_B, _R, generator=_g, dtype=torch.float64)
_wr = torch.softmax(torch.randn(_B, _R, _N, generator=_g, dtype=torch.float64), -1)
_ref = torch.zeros(_B, _N, dtype=torch.float64)
for _b in range(_B):
    for _n in range(_N):
        _psi = 1.0
        for _i in range(_R):
            _psi = _psi * (1 - _f[_b, _i] * _wr[_b, _i, _n])
        _ref[_b, _n] = (_u[_b, _n] + _ww[_b, _n] - _u[_b, _n] * _ww[_b, _n]) * _psi
_got = assert_own_work(usage_update, [mem.usage_update, mem.retention_vector], _u, _ww, _f, _wr)
assert_close(_got, _ref, "usage_update on a random batch (B=3, R=4, N=6)")
assert_close(usage_update(_u, _ww, torch.zeros(_B, _R, dtype=torch.float64), _wr), _u + _ww - _u * _ww,
             "with all free gates 0 nothing is freed: u_t = u + w - u w")
_one = torch.zeros(1, 2, 5, dtype=torch.float64); _one[0, 0, 3] = 1.0; _one[0, 1, 3] = 1.0
assert_close(usage_update(torch.ones(1, 5, dtype=torch.float64), torch.zeros(1, 5, dtype=torch.float64),
                          torch.tensor([[0.5, 0.5]], dtype=torch.float64), _one)[0, 3],
             torch.tensor(0.25, dtype=torch.float64), "two heads each freeing half of a slot leave 1/4 (a product)")
### END HIDDEN TESTS

# %% [markdown]
# From here on the notebook uses the library's tested versions, `mem.retention_vector` and `mem.usage_update`.

# %% [markdown]
# ## 3. Exercise 2 — the allocation weighting
#
# Where should the next write go? To the least-used slot — but softly, so that gradients flow. Sort the slots by
# usage, ascending: the **free list** $\phi_t$ ($\phi_t[1]$ is the least-used slot). Then
#
# $$a_t[\phi_t[j]] = \left(1 - u_t[\phi_t[j]]\right) \prod_{i=1}^{j-1} u_t[\phi_t[i]] .$$
#
# The least-used slot gets $1 - u$; each following slot gets what the less-used slots "left over". If every slot
# is fully used, $a_t = 0$: there is nowhere to write. For example, usage $[0.4, 0.1, 0.9]$ has free list
# $(1, 0, 2)$ and allocation $[0.6 \cdot 0.1,\; 0.9,\; 0.1 \cdot 0.1 \cdot 0.4] = [0.06, 0.9, 0.004]$.
#
# Write `allocation_weighting(usage)`: `usage: [B, N]` → `[B, N]`, **in slot order**, batched, no Python loop over
# slots. Hint: `torch.sort` (it returns the indices too), an *exclusive* cumulative product (`torch.cumprod` after
# shifting by one), and `Tensor.scatter` to put the values back where they belong. Break ties by the lower slot
# index (`torch.sort(..., stable=True)`). It must not give NaN for an all-zero usage (the initial state).

# %% nbgrader={"schema_version": 3, "grade": false, "solution": true, "locked": false, "task": false, "grade_id": "allocation_weighting"}
def allocation_weighting(usage):
    """a[phi_j] = (1 - u[phi_j]) * prod_{i<j} u[phi_i], phi = slots by ascending usage.

    usage: [B, N] -> [B, N] in slot order
    """
    ### BEGIN SOLUTION
    sorted_usage, free_list = torch.sort(usage, dim=-1, stable=True)
    shifted = torch.cat([torch.ones_like(sorted_usage[:, :1]), sorted_usage[:, :-1]], dim=-1)
    sorted_allocation = (1 - sorted_usage) * torch.cumprod(shifted, dim=-1)
    return torch.zeros_like(usage).scatter(-1, free_list, sorted_allocation)
    ### END SOLUTION


# %% nbgrader={"schema_version": 3, "grade": true, "solution": false, "locked": true, "task": false, "grade_id": "test_allocation_weighting", "points": 3}
# Visible checks: run this cell to test your answer (it reports and carries on when a check fails).
from mem_tutorial.grading.selfcheck import exercise

with exercise("3.2", "allocation_weighting"):
    a = allocation_weighting(torch.tensor([[0.4, 0.1, 0.9]]))
    assert a.shape == (1, 3), f"expected shape [B, N] = [1, 3], got {list(a.shape)}"
    assert torch.allclose(a, torch.tensor([[0.06, 0.9, 0.004]]), atol=1e-6), a
    assert torch.allclose(allocation_weighting(torch.zeros(1, 4)), torch.tensor([[1.0, 0.0, 0.0, 0.0]])), \
        "an empty memory allocates the first slot"
### BEGIN HIDDEN TESTS
from mem_tutorial.grading.checks import assert_close, assert_own_work


def _ref_allocation(u):
    out = torch.zeros_like(u)
    for _b in range(u.shape[0]):
        order = sorted(range(u.shape[1]), key=lambda n: (float(u[_b, n]), n))
        left = 1.0
        for n in order:
            out[_b, n] = (1 - u[_b, n]) * left
            left = left * u[_b, n]
    return out


_g = torch.Generator().manual_seed(302)
_u = torch.rand(4, 7, generator=_g, dtype=torch.float64)
_got = assert_own_work(allocation_weighting, [mem.allocation_weighting], _u)
assert_close(_got, _ref_allocation(_u), "allocation_weighting on a random batch (B=4, N=7): sort by usage first")
assert_close(allocation_weighting(torch.tensor([[0.9, 0.4, 0.1]], dtype=torch.float64)),
             torch.tensor([[0.004, 0.06, 0.9]], dtype=torch.float64),
             "usage [0.9, 0.4, 0.1]: the least-used slot (2) must get 0.9, in slot order")
_z = allocation_weighting(torch.zeros(2, 5, dtype=torch.float64))
assert torch.isfinite(_z).all(), "all-zero usage must not give NaN"
assert_close(_z, torch.tensor([[1.0, 0, 0, 0, 0]] * 2, dtype=torch.float64),
             "all-zero usage: ties go to the lowest slot index")
assert_close(allocation_weighting(torch.ones(1, 3, dtype=torch.float64)), torch.zeros(1, 3, dtype=torch.float64),
             "a full memory (usage 1 everywhere) allocates nothing")
assert_close(_got.sum(-1), 1 - _u.prod(-1), "the allocation must sum to 1 - prod(u)")
_ug = torch.zeros(1, 4, dtype=torch.float64, requires_grad=True)
(allocation_weighting(_ug) * torch.arange(4.0, dtype=torch.float64)).sum().backward()
assert torch.isfinite(_ug.grad).all(), "gradients through an all-zero usage must be finite"
### END HIDDEN TESTS

# %% [markdown]
# From here on: `mem.allocation_weighting`. The write head combines allocation and content with two gates
# (`mem.write_weighting`): $w^w_t = g^w_t\,[\,g^a_t\, a_t + (1 - g^a_t)\, c^w_t\,]$ — allocate a new slot
# ($g^a = 1$), update a slot found by content ($g^a = 0$), or do not write at all ($g^w = 0$).

# %% [markdown]
# ## 4. Exercise 3 — precedence and the temporal link matrix
#
# Allocation writes wherever memory is free, so slot order says nothing about *write* order. The DNC records it.
# The **precedence** $p_t$ is "where the last write went"; the **link matrix** $L_t$ records "slot $i$ was
# written right after slot $j$":
#
# $$p_0 = 0, \qquad p_t = \Big(1 - \sum_i w^w_t[i]\Big)\, p_{t-1} + w^w_t,$$
#
# $$L_0 = 0, \qquad L_t[i, j] = \big(1 - w^w_t[i] - w^w_t[j]\big)\, L_{t-1}[i, j] + w^w_t[i]\; p_{t-1}[j],
#   \qquad L_t[i, i] = 0 .$$
#
# Note $p_{t-1}$ (the *previous* precedence) in the link update: slot $i$, written now, is linked to where the
# previous write went. A slot is never linked to itself. $L$ is $N \times N$ per sequence: the update costs
# $O(B N^2)$ per step, the DNC's most expensive part for large memories.
#
# Write `precedence_update(prev_precedence, write_weights)` (`[B, N]`, `[B, N]` → `[B, N]`) and
# `link_update(prev_link, prev_precedence, write_weights)` (`[B, N, N]`, `[B, N]`, `[B, N]` → `[B, N, N]`, with
# `link[b, i, j]` $= L[i, j]$). Broadcasting (`unsqueeze`) does it without loops.

# %% nbgrader={"schema_version": 3, "grade": false, "solution": true, "locked": false, "task": false, "grade_id": "temporal_link"}
def precedence_update(prev_precedence, write_weights):
    """p_t = (1 - sum_i w[i]) p_{t-1} + w.   [B, N], [B, N] -> [B, N]"""
    ### BEGIN SOLUTION
    return (1 - write_weights.sum(-1, keepdim=True)) * prev_precedence + write_weights
    ### END SOLUTION


def link_update(prev_link, prev_precedence, write_weights):
    """L_t[i,j] = (1 - w[i] - w[j]) L_{t-1}[i,j] + w[i] p_{t-1}[j], zero diagonal.

    prev_link: [B, N, N], prev_precedence: [B, N], write_weights: [B, N] -> [B, N, N]
    """
    ### BEGIN SOLUTION
    w_i = write_weights.unsqueeze(-1)  # [B, N, 1]
    w_j = write_weights.unsqueeze(-2)  # [B, 1, N]
    link = (1 - w_i - w_j) * prev_link + w_i * prev_precedence.unsqueeze(-2)
    eye = torch.eye(link.shape[-1], dtype=link.dtype, device=link.device)
    return link * (1 - eye)
    ### END SOLUTION


# %% nbgrader={"schema_version": 3, "grade": true, "solution": false, "locked": true, "task": false, "grade_id": "test_temporal_link", "points": 3}
# Visible checks: run this cell to test your answer (it reports and carries on when a check fails).
# write slot 2, then slot 0: the link must say "0 came right after 2"

from mem_tutorial.grading.selfcheck import exercise

with exercise("3.3", "precedence_update and link_update"):
    N = 3
    L, p = torch.zeros(1, N, N), torch.zeros(1, N)
    for slot in (2, 0):
        w = F.one_hot(torch.tensor([slot]), N).float()
        L, p = link_update(L, p, w), precedence_update(p, w)
    assert L.shape == (1, N, N) and p.shape == (1, N), (L.shape, p.shape)
    assert torch.allclose(p, torch.tensor([[1.0, 0.0, 0.0]])), p
    assert torch.allclose(L[0], torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])), L
### BEGIN HIDDEN TESTS
from mem_tutorial.grading.checks import assert_close, assert_own_work

_g = torch.Generator().manual_seed(303)
_B, _N = 3, 5
_L = torch.rand(_B, _N, _N, generator=_g, dtype=torch.float64) / _N
_p = torch.softmax(torch.randn(_B, _N, generator=_g, dtype=torch.float64), -1) * 0.8
_w = torch.softmax(torch.randn(_B, _N, generator=_g, dtype=torch.float64), -1) * 0.9
_refL = torch.zeros(_B, _N, _N, dtype=torch.float64)
for _b in range(_B):
    for _i in range(_N):
        for _j in range(_N):
            if _i != _j:
                _refL[_b, _i, _j] = (1 - _w[_b, _i] - _w[_b, _j]) * _L[_b, _i, _j] + _w[_b, _i] * _p[_b, _j]
_refp = (1 - _w.sum(-1, keepdim=True)) * _p + _w
_gotp = assert_own_work(precedence_update, [mem.precedence_update], _p, _w)
assert_close(_gotp, _refp, "precedence_update on a random batch (B=3, N=5)")
_gotL = assert_own_work(link_update, [mem.temporal_link_update], _L, _p, _w)
assert torch.all(_gotL.diagonal(dim1=-2, dim2=-1).abs() < 1e-12), \
    "the link matrix must have a zero diagonal (a slot is never linked to itself)"
assert_close(_gotL, _refL, "link_update on a random batch: row i = written now, column j = previous precedence")
# repeated writes to one slot must not create a self-link
_Lr, _pr = torch.zeros(1, 4, 4, dtype=torch.float64), torch.zeros(1, 4, dtype=torch.float64)
for _ in range(3):
    _wr1 = torch.tensor([[0.0, 1.0, 0.0, 0.0]], dtype=torch.float64)
    _Lr, _pr = link_update(_Lr, _pr, _wr1), precedence_update(_pr, _wr1)
assert float(_Lr[0, 1, 1]) == 0.0, "writing the same slot twice must not link it to itself"
### END HIDDEN TESTS

# %% [markdown]
# From here on: `mem.precedence_update` and `mem.temporal_link_update` (the library's version has a hand-derived
# backward pass, because this $N \times N$ update dominates the DNC's run time).

# %% [markdown]
# ## 5. Exercise 4 — read modes
#
# A read head that read $w^{r,i}_{t-1}$ can follow the links **forwards** (to what was written next) or
# **backwards** (to what was written before):
#
# $$f^i_t = L_t\, w^{r,i}_{t-1}, \qquad b^i_t = L_t^\top\, w^{r,i}_{t-1},$$
#
# and it mixes these with its content weighting $c^{r,i}_t$ through its **read modes** $\pi^i_t$, a softmax over
# three entries in the paper's order (backward, content, forward):
#
# $$w^{r,i}_t = \pi^i_t[1]\, b^i_t + \pi^i_t[2]\, c^{r,i}_t + \pi^i_t[3]\, f^i_t .$$
#
# Write `read_weighting(link, prev_read_weights, content, read_modes)`: `link: [B, N, N]`,
# `prev_read_weights: [B, R, N]`, `content: [B, R, N]`, `read_modes: [B, R, 3]` → `[B, R, N]`.

# %% nbgrader={"schema_version": 3, "grade": false, "solution": true, "locked": false, "task": false, "grade_id": "read_modes"}
def read_weighting(link, prev_read_weights, content, read_modes):
    """w^r = pi[0] * (L^T w) + pi[1] * c + pi[2] * (L w)  (modes: backward, content, forward).

    link: [B, N, N], prev_read_weights: [B, R, N], content: [B, R, N], read_modes: [B, R, 3] -> [B, R, N]
    """
    ### BEGIN SOLUTION
    forward = torch.einsum("bij,brj->bri", link, prev_read_weights)
    backward = torch.einsum("bij,bri->brj", link, prev_read_weights)
    pi = read_modes.unsqueeze(-1)  # [B, R, 3, 1]
    return pi[:, :, 0] * backward + pi[:, :, 1] * content + pi[:, :, 2] * forward
    ### END SOLUTION


# %% nbgrader={"schema_version": 3, "grade": true, "solution": false, "locked": true, "task": false, "grade_id": "test_read_modes", "points": 2}
# Visible checks: run this cell to test your answer (it reports and carries on when a check fails).
# writes in the order 2 -> 0 -> 1; the head read slot 0

from mem_tutorial.grading.selfcheck import exercise

with exercise("3.4", "read_weighting"):
    L = torch.tensor([[[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    prev = torch.tensor([[[1.0, 0.0, 0.0]]])
    c = torch.tensor([[[0.0, 0.0, 0.0]]])
    fwd = read_weighting(L, prev, c, torch.tensor([[[0.0, 0.0, 1.0]]]))
    assert fwd.shape == (1, 1, 3), f"expected shape [B, R, N] = [1, 1, 3], got {list(fwd.shape)}"
    assert torch.allclose(fwd, torch.tensor([[[0.0, 1.0, 0.0]]])), f"forward from slot 0 must reach slot 1, got {fwd}"
    bwd = read_weighting(L, prev, c, torch.tensor([[[1.0, 0.0, 0.0]]]))
    assert torch.allclose(bwd, torch.tensor([[[0.0, 0.0, 1.0]]])), f"backward from slot 0 must reach slot 2, got {bwd}"
### BEGIN HIDDEN TESTS
from mem_tutorial.grading.checks import assert_close, assert_own_work

_g = torch.Generator().manual_seed(304)
_B, _R, _N = 2, 3, 5
_L = torch.rand(_B, _N, _N, generator=_g, dtype=torch.float64) / _N
_wr = torch.softmax(torch.randn(_B, _R, _N, generator=_g, dtype=torch.float64), -1)
_c = torch.softmax(torch.randn(_B, _R, _N, generator=_g, dtype=torch.float64), -1)
_pi = torch.softmax(torch.randn(_B, _R, 3, generator=_g, dtype=torch.float64), -1)
_ref = torch.zeros(_B, _R, _N, dtype=torch.float64)
for _b in range(_B):
    for _r in range(_R):
        _f = _L[_b] @ _wr[_b, _r]
        _bk = _L[_b].T @ _wr[_b, _r]
        _ref[_b, _r] = _pi[_b, _r, 0] * _bk + _pi[_b, _r, 1] * _c[_b, _r] + _pi[_b, _r, 2] * _f
_got = assert_own_work(read_weighting, [mem.read_weighting, mem.directional_weightings], _L, _wr, _c, _pi)
assert_close(_got, _ref, "read_weighting on a random batch (B=2, R=3, N=5), modes (backward, content, forward)")
_only_c = torch.zeros(_B, _R, 3, dtype=torch.float64); _only_c[..., 1] = 1.0
assert_close(read_weighting(_L, _wr, _c, _only_c), _c, "read modes (0, 1, 0) must give the content weighting")
### END HIDDEN TESTS

# %% [markdown]
# From here on: `mem.directional_weightings` (forward and backward) and `mem.read_weighting`.
#
# **Question (written, graded by your instructor).** A model must store items in a memory that cannot hold all
# of them over time, and items are deleted in an order decided by the input (not the order they were written).
# Why does the DNC's allocation (usage, free gates, allocation weighting) handle this better than the NTM's
# location-based shifting? Name one way the NTM can fail.

# %% [markdown] nbgrader={"schema_version": 3, "grade": true, "solution": true, "locked": false, "task": false, "grade_id": "written_allocation", "points": 2}
# Shifting only moves a head relative to where it was: to reach free memory the NTM must walk over the slots one
# step at a time, and nothing tells it which slots are free, because it has no notion of usage; old content
# stays until it is overwritten. Walking round the slots overwrites the *oldest* write, so it overwrites content
# it still needs whenever the deleted item was not the oldest; otherwise it leaves stale copies that later
# confuse content lookup (an old item whose key matches as well as the new one), and it has to learn exact,
# sharp shifts to keep track of its position. The
# DNC keeps a usage per slot, frees a slot explicitly (free gate) right after reading it back, and its
# allocation weighting jumps directly to the least-used slot wherever it is, in one step, with no positional
# bookkeeping; the temporal links then recover the write order even though the slots are scattered. Memory can
# therefore be reused indefinitely with a fixed number of slots.

# %% [markdown]
# ## 6. A walk-through: allocate, free, reuse, follow the links
#
# Before any learning, let us drive the mechanisms by hand on a memory of $N = 4$ slots with one read head.
# We write four times with allocation (each write goes to the least-used slot), read slot 1 back and **free**
# it, then write once more: the new write goes to the freed slot. The link matrix records the write order.

# %%
N, R = 4, 1
usage, ww = torch.zeros(1, N), torch.zeros(1, N)
wr, link, prec = torch.zeros(1, R, N), torch.zeros(1, N, N), torch.zeros(1, N)
# (what, free gate, slot read at this step, write?)
script = [("write", 0.0, None, True)] * 4 + [("read slot 1", 0.0, 1, False), ("free slot 1, write", 1.0, None, True)]
usages, writes = [], []
for t, (what, free, read_slot, do_write) in enumerate(script):
    psi = mem.retention_vector(torch.tensor([[free]]), wr)  # frees what the head read at t-1
    usage = mem.usage_update(usage, ww, psi)  # ww is still the previous step's write
    if do_write:  # allocation gate 1, write gate 1
        ww = mem.write_weighting(mem.allocation_weighting(usage), torch.full((1, N), 1 / N), torch.ones(1),
                                 torch.ones(1))
    else:
        ww = torch.zeros(1, N)
    link = mem.temporal_link_update(link, prec, ww)
    prec = mem.precedence_update(prec, ww)
    wr = F.one_hot(torch.tensor([[read_slot]]), N).float() if read_slot is not None else torch.zeros(1, R, N)
    usages.append(usage[0])
    writes.append(ww[0])
    target = f"slot {int(ww.argmax())}" if ww.sum() > 0 else "-"
    print(f"t={t}  {what:<20} usage {[round(float(x), 3) for x in usage[0]]}  write -> {target}")

fig, axes = plt.subplots(1, 3, figsize=(12, 2.8))
plots.plot_weightings(torch.stack(usages), ax=axes[0], title="usage u_t")
plots.plot_weightings(torch.stack(writes), ax=axes[1], title="write weighting w^w_t")
im = axes[2].imshow(link[0].numpy(), cmap="Greys", vmin=0, vmax=1)
axes[2].set_title("link L[i, j]: i written after j")
axes[2].set_xlabel("j"); axes[2].set_ylabel("i")
fig.tight_layout()
plt.show()

# %% [markdown]
# The first four writes fill slots 0, 1, 2, 3 in turn (ties go to the lowest index) and the memory is full. At
# step 5 the free gate releases slot 1, read at step 4: its usage drops to 0, and the write goes there —
# **reuse**. In the link matrix, the writes 0 → 1 → 2 → 3 made the links L[1, 0], L[2, 1], L[3, 2]; rewriting
# slot 1 erased the links into and out of it and added "1 came after 3" (L[1, 3] = 1). Following the links
# forwards and backwards from slot 3:

# %%
f, b = mem.directional_weightings(link, F.one_hot(torch.tensor([[3]]), N).float())
print("forward from slot 3 :", [round(float(x), 3) for x in f[0, 0]])
print("backward from slot 3:", [round(float(x), 3) for x in b[0, 0]])

# %% [markdown]
# ## 7. The whole DNC
#
# `mem_tutorial.models.dnc` composes these mechanisms with the content weighting and the erase-then-add write of
# Chapter 1. The controller (an LSTM) sees $[x_t; r_{t-1}]$ and emits the interface vector; `parse_interface`
# applies the paper's constraints (oneplus $= 1 + \log(1 + e^x)$ for strengths, sigmoids for gates and the erase
# vector, a softmax over the three read modes). One memory step, in the paper's order:

# %%
import inspect

from mem_tutorial.models.dnc import DNC, interface_size, memory_step

print(inspect.getsource(memory_step).split('"""')[-1])
print("interface size for W=8, R=2:", interface_size(8, 2), "= R*W + 3W + 5R + 3")

# %% [markdown]
# ## 8. Training on the reuse task (load or train)
#
# The task (`mem_tutorial.tasks.reuse.reuse_task`) is a small **key-value store with deletions**, one operation
# per step:
#
# 1. *fill*: 6 items (a key among 8, a random 8-bit value) are stored;
# 2. two *rounds*: each deletes 2–5 **random** live items ("get key $k$": output its value, then it is gone)
#    and stores as many new items (a key that was deleted may come back with a new value);
# 3. *recall*: all 6 live items are asked for, in random order.
#
# The memory has **6 slots**, exactly the number of live items, so every new item must go into a slot freed by a
# retrieval — and which slots those are is decided by the input, **not by the order of the writes**. Input
# channels: store, retrieve, the key (one-hot, 8), the value (8 bits, stores only); the target is the value at
# each retrieval. The store holds 6 × 8 = 48 bits, more than a small controller (32 LSTM units) can keep for
# itself, so the model has to use its memory. One sequence:

# %%
from mem_tutorial.tasks import bits_error, cross_entropy_bits
from mem_tutorial.tasks.reuse import cyclic_writer_answers, reuse_task
from mem_tutorial.train import load_checkpoint, train

TASK = dict(slots=6, rounds=2, min_frees=2, max_frees=5, keys=8, width=8)
DNC_CONFIG = dict(input_size=18, output_size=8, memory_slots=6, word_size=16, read_heads=1, hidden_size=32)
K = TASK["keys"]


def describe(x: torch.Tensor, t: int) -> str:
    """One step of a reuse-task input [T, 2 + K + width] as text."""
    key = int(x[t, 2 : 2 + K].argmax())
    if x[t, 0] > 0:
        return f"store k{key}={''.join(str(int(v)) for v in x[t, 2 + K :])}"
    return f"get k{key}" if x[t, 1] > 0 else "-"


example = reuse_task(1, generator=torch.Generator().manual_seed(3), **TASK)
print(" | ".join(describe(example.inputs[0], t) for t in range(int(example.lengths[0]))))
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 2.4))
ax1.imshow(example.inputs[0].T, aspect="auto", cmap="Greys"); ax1.set_title("input: store, get, key (8), value (8)")
ax2.imshow(example.targets[0].T, aspect="auto", cmap="Greys"); ax2.set_title("target: the value at each get")
for ax in (ax1, ax2):
    ax.set_xlabel("time")
fig.tight_layout()
plt.show()

# %% [markdown]
# **Why position-based reuse fails here.** The NTM's way to reuse memory is to walk its write head round the
# slots (shifts wrap around), so each new item overwrites the *oldest* write. `cyclic_writer_answers` plays that
# strategy perfectly (with perfect reads) on the task:

# %%
probe = reuse_task(2048, generator=torch.Generator().manual_seed(0), **TASK)
ok = cyclic_writer_answers(probe.inputs, TASK["slots"], TASK["keys"])
wrong = (probe.masks.sum(1) - ok.sum(1).float()).mean().item()
print(f"a perfect cyclic writer answers {ok.sum().item() / probe.masks.sum().item():.4g} of the retrievals; "
      f"{wrong:.4g} wrong per sequence, i.e. about {wrong * TASK['width'] / 2:.4g} wrong bits per sequence")

# %% [markdown]
# A short training run (in FAST mode, a few steps: enough to see the loss move, not to solve the task). The
# loss is the binary cross-entropy in bits per sequence.

# %%
steps = mt.pick(fast=15, full=2000)
mt.seed_everything(1)
model = DNC(**DNC_CONFIG).to(device)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
data_gen = torch.Generator().manual_seed(1)


def step(i):
    batch = reuse_task(mt.pick(fast=8, full=32), generator=data_gen, device=device, **TASK)
    logits, _ = model(batch.inputs)
    loss = cross_entropy_bits(logits, batch.targets, batch.masks).mean()
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
    optimizer.step()
    return loss.item()


history = train(step, steps, desc="DNC on the reuse task", log_every=5)
print(f"loss after {steps} steps: {history.last():.4g} bits per sequence")

# %% [markdown]
# **Load or train.** The course ships a DNC trained on this task (`mem_tutorial/checkpoints/dnc_reuse.pt`, made by
# `python benchmarks/dnc.py reuse --model dnc --checkpoint ...`, recipe stored in the checkpoint). Set
# `RETRAIN = True` to train your own in full mode instead (about 900–1,000 steps of 32 sequences at lr 0.01,
# about 2 CPU minutes).

# %%
from pathlib import Path

RETRAIN = False
CHECKPOINT = Path(mt.__file__).parent / "checkpoints" / "dnc_reuse.pt"
trained = DNC(**DNC_CONFIG)
if CHECKPOINT.exists() and not RETRAIN:
    payload = load_checkpoint(CHECKPOINT, trained)
    trained_history = payload["history"]
    print(f"loaded {CHECKPOINT.name}: trained {trained_history.steps[-1]} steps, recipe {payload['extra']['recipe']}")
else:
    trained, trained_history = model, history  # the run above (train longer with RETRAIN in full mode)
    print("no checkpoint: using the model trained above")
trained = trained.to(device).eval()

eval_batch = reuse_task(1024, generator=torch.Generator().manual_seed(99), device=device, **TASK)
with torch.no_grad():
    logits, _ = trained(eval_batch.inputs)
err = bits_error(logits, eval_batch.targets, eval_batch.masks).mean().item()
print(f"trained DNC: {err:.4g} wrong bits per sequence (of {eval_batch.masks.sum(1).mean().item() * TASK['width']:.4g} asked)")

# %% [markdown]
# ## 9. Inside a trained DNC: usage, gates, links, read modes
#
# Run the trained DNC on one sequence with `trace=True`: each step returns the interface (gates, read modes), the
# allocation weighting and the state (usage, link matrix, weightings).

# %%
seq = reuse_task(1, generator=torch.Generator().manual_seed(5), device=device, **TASK)
with torch.no_grad():
    out, _, traces = trained(seq.inputs, trace=True)
T = len(traces)
x0 = seq.inputs[0].cpu()
usage_t = torch.stack([tr.state.usage[0] for tr in traces]).cpu()
alloc_t = torch.stack([tr.allocation[0] for tr in traces]).cpu()
write_t = torch.stack([tr.state.write_weights[0] for tr in traces]).cpu()
read_t = torch.stack([tr.state.read_weights[0, 0] for tr in traces]).cpu()
free_t = torch.stack([tr.interface.free_gates[0] for tr in traces]).cpu()
gates_t = torch.stack([torch.cat([tr.interface.alloc_gate[0], tr.interface.write_gate[0]]) for tr in traces]).cpu()
gets = torch.nonzero(x0[:, 1]).flatten().tolist()

fig, axes = plt.subplots(4, 1, figsize=(10, 8), sharex=True)
plots.plot_weightings(usage_t, ax=axes[0], title="usage u_t (slot × time)")
plots.plot_weightings(alloc_t, ax=axes[1], title="allocation weighting a_t")
plots.plot_weightings(write_t, ax=axes[2], title="write weighting w^w_t")
for r in range(free_t.shape[1]):
    axes[3].plot(free_t[:, r], label=f"free gate, read head {r}")
axes[3].plot(gates_t[:, 0], "--", label="allocation gate")
axes[3].plot(gates_t[:, 1], ":", label="write gate")
axes[3].set_ylim(-0.05, 1.05)
axes[3].legend(fontsize=7, ncol=3)
axes[3].set_title("gates")
for ax in axes:
    for g in gets:
        ax.axvline(g, color="tab:red", lw=0.6, alpha=0.4)
axes[3].set_xlabel("time (red lines: retrievals)")
fig.tight_layout()
plt.show()

# %% [markdown]
# What to look for (in the shipped model): at every store the write gate and the allocation gate are near 1 and
# the write goes where the allocation weighting points; at a retrieval the write gate is near 0 and the read head
# finds the item by content. On the step after a retrieval the free gate is high, so the usage of the slot just
# read drops — and the next store is allocated **exactly there**, wherever that slot is.
#
# **Re-allocation, step by step.** For each retrieval: the slot the read head read (argmax of $w^r_t$), and the
# store that later wrote into that slot. The right panel marks reads (red circles) and writes (black squares):

# %%
events = []
for t in range(T):
    if x0[t, 1] > 0:
        s = int(read_t[t].argmax())
        later = [u for u in range(t + 1, T) if x0[u, 0] > 0 and int(write_t[u].argmax()) == s]
        reuse = f"re-allocated at t={later[0]} ({describe(x0, later[0])})" if later else "not written again"
        events.append((t, s))
        print(f"t={t:2d} {describe(x0, t):<12} read slot {s} (weight {read_t[t, s].item():.3f}) -> slot {s} {reuse}")
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 2.8))
plots.plot_weightings(read_t, ax=ax1, title="read weighting w^r_t")
ax2.imshow(write_t.T.numpy(), aspect="auto", cmap="Greys", vmin=0, vmax=1)
ax2.scatter([t for t, _ in events], [s for _, s in events], s=80, facecolors="none", edgecolors="tab:red",
            label="retrieval reads (and frees) this slot")
stores = [t for t in range(T) if x0[t, 0] > 0]
ax2.scatter(stores, [int(write_t[t].argmax()) for t in stores], marker="s", s=25, color="black", label="store writes")
ax2.set_title("write weighting with reads and writes")
ax2.set_xlabel("time"); ax2.set_ylabel("slot")
ax2.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
fig.tight_layout()
plt.show()

# %% [markdown]
# The link matrix at the end of the sequence (it records the order of the writes, however scattered the slots),
# and the read modes of the head over time (stacked: backward, content, forward). This task is solved by content
# lookup, so expect the content mode to dominate.

# %%
modes_t = torch.stack([tr.interface.read_modes[0] for tr in traces]).cpu()  # [T, R, 3]
fig, axes = plt.subplots(1, 1 + modes_t.shape[1], figsize=(10, 3))
axes[0].imshow(traces[-1].state.link[0].cpu().numpy(), cmap="Greys", vmin=0, vmax=1)
axes[0].set_title(f"link matrix at t = {T - 1}")
axes[0].set_xlabel("j (written before)"); axes[0].set_ylabel("i (written after)")
for r in range(modes_t.shape[1]):
    axes[1 + r].stackplot(range(T), modes_t[:, r].T.numpy(), labels=["backward", "content", "forward"])
    axes[1 + r].set_title(f"read modes, head {r}")
    axes[1 + r].set_xlabel("time")
    axes[1 + r].set_ylim(0, 1)
axes[-1].legend(fontsize=7, loc="lower right")
fig.tight_layout()
plt.show()

mean_modes = modes_t[gets].mean(0)
for r in range(mean_modes.shape[0]):
    print(f"head {r}: mean read modes at retrievals (backward, content, forward) = "
          f"{[round(float(v), 3) for v in mean_modes[r]]}")

# %% [markdown]
# **Step through it yourself.** The slider moves through time; for each step you see the memory, the write and
# allocation weightings, the read weightings, the usage, the gates and the read modes. (The slider needs a live
# kernel; a static view shows step 0.)

# %%
# NBVAL_IGNORE_OUTPUT
from mem_tutorial.viz.widgets import dnc_memory_stepper

dnc_memory_stepper(traces, inputs=seq.inputs.cpu(), targets=seq.targets.cpu(), outputs=out.cpu())

# %% [markdown]
# ## 10. NTM vs DNC at equal memory size
#
# The same task, the same memory (6 slots of 16 numbers), the same LSTM controller (32 units), one read and one
# write head each (the NTM of Chapter 2 with shifts −1, 0, +1), the same recipe (Adam, lr 0.01, batches of 32,
# gradient-norm clip 10) and the same budget of 2,000 steps (`python benchmarks/dnc.py reuse --model ntm|dnc`,
# results in `benchmarks/RESULTS.md`). The learning curves stored with the checkpoint, and the floor of a
# perfect cyclic writer computed above:

# %%
curves = payload["extra"].get("comparison", {}) if CHECKPOINT.exists() and not RETRAIN else {}
fig, ax = plt.subplots(figsize=(7, 3.2))
for name, curve in curves.items():
    ax.plot(curve["steps"], curve["error"], label=name, color="tab:blue" if name.startswith("DNC") else "tab:orange")
if not curves:
    ax.plot(trained_history.steps, trained_history["loss"], label="DNC (this session)")
ax.axhline(0.1, color="grey", ls="--", lw=0.8, label="0.1 bit (solved)")
ax.axhline(wrong * TASK["width"] / 2, color="tab:orange", ls=":", lw=1, label="perfect cyclic writer")
ax.set_yscale("log")
ax.set_xlabel("training step (batch of 32)")
ax.set_ylabel("wrong bits per sequence")
ax.set_title("reuse task: DNC vs NTM, 6 memory slots of 16")
ax.legend(fontsize=7)
plt.show()
for name, curve in curves.items():
    best = min(curve["error"])
    print(f"{name}: final error {curve['error'][-1]:.4g} bits per sequence after {curve['steps'][-1]} steps "
          f"(best {best:.4g})")

# %% [markdown]
# **Reading the curves.** The DNC solves the task in about 900–1,000 steps (3 seeds out of 3); the NTM with the
# same memory, controller and recipe is still making about 18–20 wrong bits per sequence after 2,000 steps (3
# seeds; one seed trained on to 5,000 steps; figures in `benchmarks/RESULTS.md`). The DNC's curve has the shape
# you would expect from its mechanisms: a plateau while it learns to look items up by content, then a sudden drop
# once free gates, allocation and content reads work together — freeing and re-allocating come built in.
#
# The NTM has no way to say "this slot is free now". Its write head can only move relative to where it was
# (shifts) or jump to a slot whose *content* matches a key, and a freed slot holds nothing to match. A perfect
# cyclic writer (dotted line) would still lose the items it overwrites out of turn. And the controller does not
# learn to keep the store itself: 48 bits are a lot for 32 LSTM units. (With 4-bit values and a 64-unit controller,
# the first version of this task, the NTM *did* learn it, in about 1.5× the DNC's steps, by ignoring its memory
# and holding the whole store in the controller: a task must be too big for the controller to test a memory.)

# %% [markdown]
# ## 11. Summary
#
# - The DNC frees memory: **free gates** lower the **usage** of slots just read; the **allocation weighting**
#   (sort by usage, exclusive cumulative product, scatter back) points the write head at the least-used slot.
# - The **write weighting** chooses between allocation and content lookup ($g^a$), or no write ($g^w$).
# - **Precedence** and the **temporal link matrix** remember the order of writes; read heads follow them
#   **forwards** or **backwards**, or look up by **content**, mixed by their **read modes**.
# - The link matrix is $N \times N$ per sequence: $O(B N^2)$ memory and time per step.
# - Allocation reuses exactly the slots that were freed, wherever they are; the NTM's shifting reuses memory only
#   in the order it was written. On a key-value store with random deletions, too big for the controller to hold,
#   the DNC learns in about 1,000 steps what the NTM with the same memory has not learned after 2,000–5,000
#   (Section 10); a fair test of allocation needs more content than the controller can hold.
#
# ## Exercises (not graded)
# 1. Set the free gates to 0 in the walk-through (Section 6). Where does the fifth write go, and why?
# 2. Make the store small enough for the controller: `benchmarks/dnc.py reuse --width 4 --hidden 64 --word 8`
#    (and the same with `--model ntm`), in full mode. Does the NTM now learn it within 2,000 steps? Inspect its
#    weightings (`NTM.trace`): does it use the memory as slots at all? Compare with `cyclic_writer_answers`.
# 3. `mem_tutorial.tasks.graph.graph_traversal_task` describes a random graph edge by edge, then asks for a
#    traversal. Train a DNC on it in full mode (start with 4 nodes, path length 2). Which read modes matter?
# 4. Time one training step for N = 32, 64, 128, 256 (`benchmarks/dnc.py speed --slots ...`). Where does the
#    $O(N^2)$ link matrix start to dominate?
#
# ## References
# - A. Graves et al. *Hybrid computing using a neural network with dynamic external memory.* Nature 538,
#   471–476, 2016. (Methods: interface parameters, dynamic memory allocation, write weighting, temporal memory
#   linkage, read weighting; Extended Data Fig. 1: memory reuse)
# - A. Graves, G. Wayne, I. Danihelka. *Neural Turing Machines.* arXiv:1410.5401, 2014.
# - J. W. Rae et al. *Scaling Memory-Augmented Neural Networks with Sparse Reads and Writes.* NeurIPS 2016.
#   (a sparse link matrix for large N)
# - C. Hsin. *Implementation and Optimization of Differentiable Neural Computers.* Stanford CS224d report, 2016.
