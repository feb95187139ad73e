"""The DNC model: interface constraints, one memory step against the paper's equations, shapes, stability."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from mem_tutorial.memory import COSINE_EPS
from mem_tutorial.models.dnc import DNC, DNCState, Interface, interface_size, memory_step, oneplus, parse_interface

D = torch.float64


def test_interface_size_matches_the_paper():
    # R*W read keys, R read strengths, W write key, 1 write strength, W erase, W write vector, R free gates,
    # 1 allocation gate, 1 write gate, 3R read modes
    for W, R in [(16, 4), (20, 1), (3, 2)]:
        assert interface_size(W, R) == R * W + R + W + 1 + W + W + R + 1 + 1 + 3 * R


def test_parse_interface_constraints():
    B, W, R = 5, 6, 3
    xi = torch.randn(B, interface_size(W, R), dtype=D) * 10
    it = parse_interface(xi, W, R)
    assert isinstance(it, Interface)
    assert it.read_keys.shape == (B, R, W) and it.write_key.shape == (B, W)
    assert torch.all(it.read_strengths >= 1) and torch.all(it.write_strength >= 1)
    assert it.read_strengths.shape == (B, R) and it.write_strength.shape == (B,)
    for gate in (it.erase, it.free_gates, it.alloc_gate, it.write_gate):
        assert torch.all((gate >= 0) & (gate <= 1))
    assert it.free_gates.shape == (B, R) and it.alloc_gate.shape == (B, 1) and it.write_gate.shape == (B, 1)
    assert it.read_modes.shape == (B, R, 3)
    torch.testing.assert_close(it.read_modes.sum(-1), torch.ones(B, R, dtype=D))
    with pytest.raises(ValueError, match="xi"):
        parse_interface(torch.zeros(B, interface_size(W, R) + 1), W, R)


def test_oneplus():
    x = torch.tensor([-50.0, 0.0, 3.0], dtype=D)
    torch.testing.assert_close(oneplus(x), 1 + torch.log1p(torch.exp(x)))


def _random_state(B, N, W, R, H, g):
    def simplex(*shape):
        x = torch.rand(*shape, dtype=D, generator=g)
        return x / x.sum(-1, keepdim=True) * 0.9

    link = simplex(B, N, N) * 0.5
    link = link * (1 - torch.eye(N, dtype=D))
    return DNCState(
        h=torch.randn(B, H, dtype=D, generator=g), c=torch.randn(B, H, dtype=D, generator=g),
        memory=torch.randn(B, N, W, dtype=D, generator=g), usage=torch.rand(B, N, dtype=D, generator=g),
        link=link, precedence=simplex(B, N), read_weights=simplex(B, R, N), write_weights=simplex(B, N),
        read_vectors=torch.randn(B, R, W, dtype=D, generator=g),
    )


def _ref_content(M, k, beta):  # M [N, W], k [W]; the library's named epsilon under each norm's square root
    sim = (M @ k) / (torch.sqrt((M * M).sum(-1) + COSINE_EPS) * torch.sqrt((k * k).sum() + COSINE_EPS))
    return torch.softmax(beta * sim, -1)


def test_memory_step_against_the_equations():
    """One step written out from Graves et al. 2016, Methods, for each batch element separately."""
    B, N, W, R, H = 3, 6, 4, 2, 5
    g = torch.Generator().manual_seed(7)
    s = _random_state(B, N, W, R, H, g)
    it = parse_interface(torch.randn(B, interface_size(W, R), dtype=D, generator=g), W, R)
    new, alloc = memory_step(s, it)
    for b in range(B):
        psi = torch.ones(N, dtype=D)
        for i in range(R):
            psi = psi * (1 - it.free_gates[b, i] * s.read_weights[b, i])
        u = (s.usage[b] + s.write_weights[b] - s.usage[b] * s.write_weights[b]) * psi
        order = sorted(range(N), key=lambda n: float(u[n]))
        a = torch.zeros(N, dtype=D)
        running = 1.0
        for n in order:
            a[n] = (1 - u[n]) * running
            running = running * u[n]
        cw = _ref_content(s.memory[b], it.write_key[b], it.write_strength[b])
        ww = it.write_gate[b] * (it.alloc_gate[b] * a + (1 - it.alloc_gate[b]) * cw)
        M = s.memory[b] * (1 - torch.outer(ww, it.erase[b])) + torch.outer(ww, it.write_vector[b])
        L = (1 - ww[:, None] - ww[None, :]) * s.link[b] + ww[:, None] * s.precedence[b][None, :]
        L = L * (1 - torch.eye(N, dtype=D))
        p = (1 - ww.sum()) * s.precedence[b] + ww
        for i in range(R):
            f = L @ s.read_weights[b, i]
            bw = L.T @ s.read_weights[b, i]
            c = _ref_content(M, it.read_keys[b, i], it.read_strengths[b, i])
            pi = it.read_modes[b, i]
            wr = pi[0] * bw + pi[1] * c + pi[2] * f
            torch.testing.assert_close(new.read_weights[b, i], wr)
            torch.testing.assert_close(new.read_vectors[b, i], M.T @ wr)
        torch.testing.assert_close(new.usage[b], u)
        torch.testing.assert_close(alloc[b], a)
        torch.testing.assert_close(new.write_weights[b], ww)
        torch.testing.assert_close(new.memory[b], M)
        torch.testing.assert_close(new.link[b], L)
        torch.testing.assert_close(new.precedence[b], p)
    assert new.h is s.h and new.c is s.c


def test_forward_shapes_state_and_trace():
    B, T, X, Y, N, W, R, H = 2, 5, 3, 4, 7, 5, 3, 11
    model = DNC(X, Y, N, W, R, H)
    y, state = model(torch.randn(B, T, X))
    assert y.shape == (B, T, Y)
    assert isinstance(state, DNCState)
    expected = dict(h=(B, H), c=(B, H), memory=(B, N, W), usage=(B, N), link=(B, N, N), precedence=(B, N),
                    read_weights=(B, R, N), write_weights=(B, N), read_vectors=(B, R, W))
    for name, shape in expected.items():
        assert getattr(state, name).shape == shape, name
    y2, state2, traces = model(torch.randn(B, T, X), trace=True)
    assert len(traces) == T and traces[0].allocation.shape == (B, N)
    # the state can be carried on to the next chunk of a sequence
    y3, _ = model(torch.randn(B, 2, X), state=state2)
    assert y3.shape == (B, 2, Y)
    # step() gives the same output as forward() for the first step
    x = torch.randn(B, 1, X)
    y_fwd, _ = model(x)
    y_step, _, _ = model.step(x[:, 0], model.initial_state(B))
    torch.testing.assert_close(y_fwd[:, 0], y_step)
    with pytest.raises(ValueError, match="x: expected shape"):
        model(torch.randn(B, T, X + 1))


def test_module_holds_parameters_only():
    model = DNC(3, 3, 5, 4, 2, 8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model(torch.randn(2, 4, 3))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert set(dict(model.named_buffers())) == set()


def test_gradcheck_through_two_steps():
    torch.manual_seed(0)
    model = DNC(3, 2, 4, 3, 2, 5).double()
    x = torch.randn(2, 2, 3, dtype=D, requires_grad=True)
    # memory must be non-zero for content addressing to be well conditioned; start from a random state
    g = torch.Generator().manual_seed(3)
    s = _random_state(2, 4, 3, 2, 5, g)
    s = s._replace(usage=torch.tensor([[0.1, 0.5, 0.3, 0.9], [0.7, 0.2, 0.4, 0.05]], dtype=D))

    def f(x):
        return model(x, state=s)[0]

    assert torch.autograd.gradcheck(f, (x,), atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_training_from_zero_state_stays_finite(seed):
    torch.manual_seed(seed)
    model = DNC(6, 6, memory_slots=8, word_size=6, read_heads=2, hidden_size=16)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(6):
        x = torch.randint(0, 2, (4, 5, 6)).float()
        y, state = model(x)
        loss = F.binary_cross_entropy_with_logits(y, x)
        opt.zero_grad()
        loss.backward()
        for p in model.parameters():
            assert torch.isfinite(p.grad).all()
        opt.step()
    assert torch.isfinite(loss)
    assert torch.all(state.link.diagonal(dim1=-2, dim2=-1) == 0)
    assert torch.all((state.usage >= 0) & (state.usage <= 1))


def test_zero_input_and_zero_memory_give_finite_gradients():
    model = DNC(4, 4, 6, 5, 2, 8)
    x = torch.zeros(3, 4, 4, requires_grad=True)
    y, _ = model(x)
    y.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_float64_and_config_roundtrip():
    model = DNC(3, 2, 4, 3, 2, 5)
    clone = DNC(**model.config())
    clone.load_state_dict(model.state_dict())
    x = torch.randn(1, 3, 3)
    torch.testing.assert_close(model(x)[0], clone(x)[0])
    y, state = model.double()(x.double())
    assert y.dtype == D and state.link.dtype == D


# ---------------------------------------------------------------- Chapter 3 tasks
def _replay_reuse(batch, slots, keys, width):
    """Replay a reuse_task batch operation by operation with a Python dict (independent of the generator)."""
    stats = {"retrievals": 0, "oldest": 0, "stale_keys": 0}
    for k in range(batch.inputs.shape[0]):
        x, n = batch.inputs[k], int(batch.lengths[k])
        store: dict[int, tuple[list[float], int]] = {}  # key -> (value, time written)
        deleted: set[int] = set()
        for t in range(x.shape[0]):
            op_store, op_retrieve = float(x[t, 0]), float(x[t, 1])
            key_vec, value = x[t, 2 : 2 + keys], x[t, 2 + keys :]
            if t >= n:  # padding: nothing at all
                assert x[t].abs().sum() == 0 and batch.targets[k, t].abs().sum() == 0 and batch.masks[k, t] == 0
                continue
            assert op_store + op_retrieve == 1 and key_vec.sum() == 1, "exactly one operation and one key per step"
            key = int(key_vec.argmax())
            if op_store:
                assert key not in store, "a store uses a key that is not live"
                assert batch.masks[k, t] == 0 and batch.targets[k, t].abs().sum() == 0
                stats["stale_keys"] += key in deleted
                store[key] = (value.tolist(), t)
            else:
                assert key in store, "a retrieval asks for a live key"
                assert value.abs().sum() == 0 and batch.masks[k, t] == 1
                assert batch.targets[k, t].tolist() == store[key][0], "the target is the value stored under the key"
                if len(store) == slots and t < n - slots:  # a deletion in a round, memory full
                    stats["retrievals"] += 1
                    stats["oldest"] += store[key][1] == min(w for _, w in store.values())
                del store[key]
                deleted.add(key)
            assert len(store) <= slots, "never more live items than slots"
        assert not store, "the final recall empties the store"
    return stats


@pytest.mark.parametrize("slots,rounds,min_frees,max_frees,keys,width", [(6, 2, 2, 5, 8, 4), (3, 3, 2, 3, 3, 2),
                                                                        (5, 0, 1, 1, 5, 3)])
def test_reuse_task_is_a_consistent_key_value_store(slots, rounds, min_frees, max_frees, keys, width):
    from mem_tutorial.tasks.reuse import live_items, reuse_task

    b = reuse_task(64, slots=slots, rounds=rounds, min_frees=min_frees, max_frees=max_frees, keys=keys, width=width,
                   generator=torch.Generator().manual_seed(slots))
    B, T, C = b.inputs.shape
    assert C == 2 + keys + width and b.targets.shape == (B, T, width) and b.masks.shape == (B, T)
    assert T == int(b.lengths.max())
    _replay_reuse(b, slots, keys, width)
    live = live_items(b.inputs)
    assert live.min() >= 0 and live.max() == slots
    assert (live.gather(1, (b.lengths - 1).unsqueeze(1)) == 0).all()
    # retrievals = the fill's items + one per deletion; each round deletes min_frees..max_frees items
    deletions = b.masks.sum(1) - slots
    assert (deletions >= rounds * min_frees).all() and (deletions <= rounds * max_frees).all()
    assert torch.equal(b.lengths.float(), 2 * b.masks.sum(1))
    assert torch.equal(b.masks, b.inputs[..., 1])


def test_reuse_task_frees_out_of_write_order_and_reuses_keys():
    from mem_tutorial.tasks.reuse import reuse_task

    b = reuse_task(256, generator=torch.Generator().manual_seed(0))  # defaults: 6 slots, 8 keys, 4 bits
    stats = _replay_reuse(b, 6, 8, 4)
    # a cyclic writer reuses the oldest slot; the task deletes the oldest live item only ~1/6 of the time
    assert stats["retrievals"] > 200 and stats["oldest"] / stats["retrievals"] < 0.3
    assert stats["stale_keys"] > 100, "keys come back with new values (a stale copy gives a wrong answer)"


def test_cyclic_writer_baseline():
    from mem_tutorial.tasks.reuse import cyclic_writer_answers, reuse_task

    # hand-checked: 2 slots, keys a=0, b=1, c=2. store a (slot 0), store b (slot 1), retrieve b (ok),
    # store c (slot 0: overwrites a, still live), retrieve a (wrong), retrieve c (ok)
    K = 3
    ops = [(0, 0), (0, 1), (1, 1), (0, 2), (1, 0), (1, 2)]
    x = torch.zeros(1, len(ops), 2 + K + 1)
    for t, (op, key) in enumerate(ops):
        x[0, t, op] = 1
        x[0, t, 2 + key] = 1
    assert cyclic_writer_answers(x, 2, K)[0].tolist() == [False, False, True, False, False, True]
    # with no deletion rounds the cyclic writer is perfect; with rounds it is not
    b = reuse_task(64, rounds=0, generator=torch.Generator().manual_seed(0))
    assert cyclic_writer_answers(b.inputs, 6, 8).sum() == b.masks.sum()
    b = reuse_task(256, generator=torch.Generator().manual_seed(0))
    assert cyclic_writer_answers(b.inputs, 6, 8).sum() < 0.9 * b.masks.sum()


def test_reuse_task_is_seeded_and_checks_its_arguments():
    from mem_tutorial.tasks.reuse import reuse_task

    b1 = reuse_task(5, generator=torch.Generator().manual_seed(3))
    b2 = reuse_task(5, generator=torch.Generator().manual_seed(3), device="cpu")
    assert all(torch.equal(x, y) for x, y in zip(b1, b2))
    assert not torch.equal(b1.inputs, reuse_task(5, generator=torch.Generator().manual_seed(4)).inputs)
    with pytest.raises(ValueError, match="frees"):
        reuse_task(2, slots=2, max_frees=3)
    with pytest.raises(ValueError, match="keys"):
        reuse_task(2, slots=4, max_frees=3, keys=3)
    with pytest.raises(ValueError, match="slots"):
        reuse_task(2, slots=0)


def test_graph_traversal_task_answers_follow_the_edges():
    from mem_tutorial.tasks.graph import graph_traversal_task

    V, E, Dg, P = 5, 3, 2, 4
    b = graph_traversal_task(6, nodes=V, out_degree=Dg, labels=E, path_length=P,
                             generator=torch.Generator().manual_seed(1))
    M = V * Dg
    assert b.inputs.shape == (6, M + 1 + P, 2 * V + E + 2) and b.targets.shape == (6, M + 1 + P, V)
    for k in range(6):
        edges = {}
        for t in range(M):
            x = b.inputs[k, t]
            edges[(int(x[:V].argmax()), int(x[V : V + E].argmax()))] = int(x[V + E : 2 * V + E].argmax())
        assert len(edges) == M  # distinct labels per node
        node = int(b.inputs[k, M, :V].argmax())
        for t in range(M + 1, M + 1 + P):
            node = edges[(node, int(b.inputs[k, t, V : V + E].argmax()))]
            assert int(b.targets[k, t].argmax()) == node and b.targets[k, t].sum() == 1
        assert b.masks[k].sum() == P


def test_memory_stepper_widget_draws_headless():
    pytest.importorskip("ipywidgets")
    import matplotlib

    matplotlib.use("Agg")
    from mem_tutorial.viz.widgets import dnc_memory_stepper

    model = DNC(3, 2, 4, 3, 2, 5)
    x = torch.randn(1, 4, 3)
    y, _, traces = model(x, trace=True)
    box = dnc_memory_stepper(traces, inputs=x, targets=torch.zeros(1, 4, 2), outputs=y)
    box.draw(3)
    with pytest.raises(ValueError, match="traces"):
        dnc_memory_stepper([])


def test_shipped_checkpoint_loads_and_solves_the_reuse_task():
    from pathlib import Path

    import mem_tutorial
    from mem_tutorial.tasks import bits_error
    from mem_tutorial.tasks.reuse import reuse_task
    from mem_tutorial.train import load_checkpoint

    path = Path(mem_tutorial.__file__).parent / "checkpoints" / "dnc_reuse.pt"
    assert path.stat().st_size < 1_000_000
    payload = load_checkpoint(path)
    model = DNC(**payload["config"])
    load_checkpoint(path, model)
    task = payload["extra"]["task"]
    assert model.memory_slots == task["slots"], "the memory holds exactly the live items: freed slots must be reused"
    assert {"DNC", "NTM"} <= set(payload["extra"]["comparison"])
    batch = reuse_task(64, generator=torch.Generator().manual_seed(123), **task)
    with torch.no_grad():
        err = bits_error(model(batch.inputs)[0], batch.targets, batch.masks).mean()
    assert err < 0.1, f"shipped DNC makes {float(err):.3f} wrong bits per sequence"
