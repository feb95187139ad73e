"""NTM and LSTM baseline models: shapes, state, gradients, no NaN in training, checkpoint round trip."""

from __future__ import annotations

import shutil

import pytest
import torch

from mem_tutorial.models.lstm import LSTMBaseline, LSTMState
from mem_tutorial.models.ntm import MEMORY_INIT_CONSTANT, NTM, NTMConfig, NTMState
from mem_tutorial.tasks import copy_task, repeat_copy_task
from mem_tutorial.tasks.training import (
    GRAD_CLIP,
    ConvergenceMonitor,
    clip_gradients,
    evaluate,
    make_optimizer,
    sequence_errors,
    task_loss,
    train_on_task,
)

SMALL = dict(controller_size=16, memory_slots=12, memory_width=6)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny recurrent steps: one intra-op thread is faster, and avoids OpenMP spin-waits on a loaded machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("controller", ["lstm", "feedforward"])
@pytest.mark.parametrize("init", ["constant", "learned", "random"])
def test_forward_backward_shapes(controller, init):
    torch.manual_seed(0)
    m = NTM(NTMConfig(controller=controller, memory_init=init, read_heads=2, write_heads=2, **SMALL))
    batch = copy_task(3, max_len=4, generator=torch.Generator().manual_seed(0))
    logits, state = m(batch.inputs)
    assert logits.shape == (3, batch.inputs.shape[1], 8)
    assert isinstance(state, NTMState)
    assert state.memory.shape == (3, 12, 6) and state.read_weights.shape == (3, 2, 12)
    assert state.write_weights.shape == (3, 2, 12) and state.reads.shape == (3, 2, 6)
    task_loss(logits, batch).backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    torch.testing.assert_close(state.read_weights.sum(-1), torch.ones(3, 2))


def test_initial_state_and_memory_init():
    m = NTM(**SMALL)
    s = m.initial_state(2)
    assert (s.memory == MEMORY_INIT_CONSTANT).all()
    assert (s.read_weights[..., 0] == 1).all() and s.read_weights.sum() == 2
    assert len(s.controller) == 2 and s.controller[0].shape == (2, 16)
    learned = NTM(memory_init="learned", **SMALL)
    assert any(n == "memory_bias" for n, _ in learned.named_parameters())
    g = torch.Generator().manual_seed(0)
    r1 = NTM(memory_init="random", **SMALL).initial_state(2, generator=g).memory
    assert r1.std() > 0.1
    with pytest.raises(ValueError, match="memory_init"):
        NTM(memory_init="zeros")
    with pytest.raises(ValueError, match="odd"):
        NTM(shift_range=4)
    with pytest.raises(ValueError, match="inputs"):
        m(torch.zeros(2, 5, 3))


def test_step_by_step_equals_forward():
    torch.manual_seed(1)
    m = NTM(**SMALL)
    x = copy_task(2, max_len=5, generator=torch.Generator().manual_seed(1)).inputs
    logits, final = m(x)
    state = m.initial_state(2)
    for t in range(x.shape[1]):
        y, state = m.step(x[:, t], state)
        torch.testing.assert_close(y, logits[:, t])
    torch.testing.assert_close(state.memory, final.memory)
    tr = m.trace(x)
    torch.testing.assert_close(tr.logits, logits)
    assert tr.read_weights.shape == (2, x.shape[1], 1, 12) and tr.write_weights.shape == (2, x.shape[1], 1, 12)


def test_batch_elements_are_independent():
    torch.manual_seed(2)
    m = NTM(**SMALL)
    x = copy_task(4, max_len=5, generator=torch.Generator().manual_seed(2)).inputs
    full, _ = m(x)
    one, _ = m(x[1:2])
    torch.testing.assert_close(full[1:2], one, rtol=1e-5, atol=1e-6)


def test_lstm_baseline_interface():
    torch.manual_seed(0)
    m = LSTMBaseline(hidden_size=16, layers=2)
    batch = copy_task(3, max_len=4, generator=torch.Generator().manual_seed(0))
    logits, state = m(batch.inputs)
    assert logits.shape == batch.targets.shape and isinstance(state, LSTMState)
    y, s = m.step(batch.inputs[:, 0], m.initial_state(3))
    torch.testing.assert_close(y, logits[:, 0])
    task_loss(logits, batch).backward()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_nan_in_200_training_steps(seed):
    torch.manual_seed(seed)
    m = NTM(controller_size=32, memory_slots=16, memory_width=8)
    run = train_on_task(m, "copy", batch_size=2, max_sequences=400, seed=seed, lr=3e-3, stop_after=None,
                        task_kwargs={"max_len": 3}, log_every=1)
    assert len(run.history["loss"]) == 200
    assert all(torch.isfinite(torch.tensor(run.history["loss"])))
    assert all(torch.isfinite(p).all() for p in m.parameters())
    assert run.history.smoothed("loss", 20)[-1] < run.history["loss"][0]


def test_no_nan_repeat_copy_rmsprop():
    torch.manual_seed(0)
    m = NTM(input_size=10, output_size=9, controller_size=16, memory_slots=16, memory_width=8)
    run = train_on_task(m, repeat_copy_task, batch_size=2, max_sequences=100, optimizer="rmsprop", stop_after=None,
                        task_kwargs={"max_len": 3, "max_repeats": 3})
    assert all(torch.isfinite(torch.tensor(run.history["loss"])))


def test_anneal_on_converge_lowers_the_learning_rate_once():
    torch.manual_seed(0)
    m = NTM(**SMALL)
    opt = make_optimizer(m, "adam", 1e-3)
    # threshold far above any cost: "converged" as soon as the first window (4 sequences) is full
    run = train_on_task(m, "copy", batch_size=2, max_sequences=12, optimizer=opt, window=4, threshold=1e9,
                        stop_after=None, anneal_on_converge=0.1, task_kwargs={"max_len": 2})
    assert run.monitor.converged_at == 4
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-4)  # once, not at every later step
    opt2 = make_optimizer(m, "adam", 1e-3)
    train_on_task(m, "copy", batch_size=2, max_sequences=12, optimizer=opt2, window=4, threshold=-1.0,
                  stop_after=None, anneal_on_converge=0.1, task_kwargs={"max_len": 2})
    assert opt2.param_groups[0]["lr"] == pytest.approx(1e-3)  # never converged: unchanged


def test_clipping_and_optimizers():
    m = NTM(**SMALL)
    for p in m.parameters():
        p.grad = torch.full_like(p, 100.0)
    clip_gradients(m)
    assert all(p.grad.abs().max() <= GRAD_CLIP for p in m.parameters())
    rms = make_optimizer(m, "rmsprop")
    assert isinstance(rms, torch.optim.RMSprop) and rms.defaults["lr"] == 1e-4 and rms.defaults["momentum"] == 0.9
    assert isinstance(make_optimizer(m, "adam"), torch.optim.Adam)
    with pytest.raises(ValueError, match="optimizer"):
        make_optimizer(m, "sgd")


def test_convergence_monitor():
    mon = ConvergenceMonitor(window=4, threshold=0.5)
    mon.update(torch.tensor([3.0, 0.0, 0.0]))
    assert mon.converged_at is None  # window not full
    mon.update(torch.tensor([0.0, 0.0, 0.0]))
    assert mon.converged_at == 6  # checked once per update: after 6 sequences the last 4 are all 0
    mon.update(torch.tensor([4.0]))
    assert mon.relapsed_at == 7


def test_evaluate_and_checkpoint_roundtrip(tmp_path):
    from mem_tutorial.train import load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    m = NTM(**SMALL)
    before = evaluate(m, "copy", sequences=10, task_kwargs={"max_len": 4})
    path = save_checkpoint(tmp_path / "ntm.pt", m, m.config.to_dict())
    m2 = NTM(NTMConfig(**load_checkpoint(path)["config"]))
    load_checkpoint(path, m2)
    assert evaluate(m2, "copy", sequences=10, task_kwargs={"max_len": 4}) == before


def test_sequence_errors_matches_evaluate_and_is_model_independent():
    torch.manual_seed(0)
    m1, m2 = NTM(**SMALL), NTM(**SMALL)
    kw = dict(sequences=7, batch_size=3, seed=5, task_kwargs={"max_len": 4})
    e1, ce1 = sequence_errors(m1, "copy", **kw)
    assert e1.shape == (7,) and ce1.shape == (7,)
    assert (e1 >= 0).all() and (e1 == e1.round()).all()
    r = evaluate(m1, "copy", **kw)
    assert r["bits_error"] == pytest.approx(e1.mean().item())
    assert r["perfect"] == pytest.approx((e1 == 0).float().mean().item())
    assert r["worst"] == e1.max().item()
    # the sequences depend on the seed only: a perfect "model" that echoes the targets scores 0 on them all

    class Oracle(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))
            self.batches = []

        def forward(self, inputs):
            self.batches.append(inputs)
            return torch.zeros(inputs.shape[0], inputs.shape[1], 8), None

    o1, o2 = Oracle(), Oracle()
    sequence_errors(o1, "copy", **kw)
    sequence_errors(o2, "copy", **kw)
    assert all(torch.equal(a, b) for a, b in zip(o1.batches, o2.batches)) and len(o1.batches) == 3
    # training mode is restored
    m2.train()
    sequence_errors(m2, "copy", **kw)
    assert m2.training
    m2.eval()
    sequence_errors(m2, "copy", **kw)
    assert not m2.training
    with pytest.raises(ValueError):
        sequence_errors(m1, "copy", sequences=0)


def test_with_memory_slots_keeps_weights():
    torch.manual_seed(0)
    m = NTM(**SMALL)
    same = m.with_memory_slots(SMALL["memory_slots"])
    x = copy_task(2, max_len=4, generator=torch.Generator().manual_seed(0)).inputs
    assert torch.equal(m(x)[0], same(x)[0])
    big = m.with_memory_slots(40)
    assert big.config.memory_slots == 40 and m.config.memory_slots == SMALL["memory_slots"]
    logits, state = big(x)
    assert state.memory.shape == (2, 40, SMALL["memory_width"]) and torch.isfinite(logits).all()
    for a, b in zip(m.parameters(), big.parameters()):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()  # copied, not shared
    with pytest.raises(ValueError, match="learned"):
        NTM(**SMALL, memory_init="learned").with_memory_slots(40)


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("clang++") is None,
                    reason="torch.compile on CPU needs a C++ compiler")
def test_compiled_step_matches_eager_and_compiles_once_per_mode():
    """compile_step() gives the eager forward, weightings and gradients, and sequences of any length reuse the
    same three graphs (the first step, a chunk, a later step: the inputs are re-laid out so that every slice has
    the same strides whatever T).

    Backend ``aot_eager`` (dynamo capture + AOTAutograd: what compile_step adds); inductor's code generation costs
    minutes of CPU on a cold cache, so CI skips it — ``MEM_TUTORIAL_COMPILE_BACKEND=inductor`` runs it."""
    import os

    from torch._dynamo.utils import counters

    torch.manual_seed(0)
    eager = NTM(**SMALL)
    compiled = NTM(**SMALL)
    compiled.load_state_dict(eager.state_dict())
    compiled.compile_step(chunk=3, backend=os.environ.get("MEM_TUTORIAL_COMPILE_BACKEND", "aot_eager"))
    torch._dynamo.reset()
    counters.clear()
    gen = torch.Generator().manual_seed(0)
    for max_len in (2, 5, 3, 6):  # different T; batch 1 (size-1 strides are where recompiles hide)
        batch = copy_task(1, max_len=max_len, generator=gen)
        for m in (eager, compiled):
            m.zero_grad()
            task_loss(m(batch.inputs)[0], batch).backward()
        a, b = eager.trace(batch.inputs), compiled.trace(batch.inputs)
        for x, y in ((a.logits, b.logits), (a.read_weights, b.read_weights), (a.write_weights, b.write_weights)):
            torch.testing.assert_close(y, x, atol=1e-5, rtol=1e-5)
        for (name, a), b in zip(eager.named_parameters(), compiled.parameters()):
            torch.testing.assert_close(b.grad, a.grad, atol=1e-5, rtol=1e-4, msg=name)
    # T = 2L + 1 = 1 + 3 chunks + 0-2 single steps: graphs for step 0 (no grad in its state), a chunk, a step
    assert counters["stats"]["unique_graphs"] <= 3, dict(counters["stats"])
    assert eager._compiled_steps is None and compiled.with_memory_slots(20)._compiled_steps is None
    with pytest.raises(ValueError, match="chunk"):
        NTM(**SMALL).compile_step(chunk=0)
