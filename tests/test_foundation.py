"""Runtime switches, training loop, checkpoints, plots, grading checks, Chapter 1 task and model."""

import os

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

import mem_tutorial
import mem_tutorial.memory as mem
from mem_tutorial import runtime
from mem_tutorial.grading.checks import assert_close, assert_distribution, assert_own_work
from mem_tutorial.models.associative import AssociativeMemory
from mem_tutorial.tasks.kv_recall import kv_recall_batch
from mem_tutorial.train import History, load_checkpoint, save_checkpoint, train
from mem_tutorial.viz import plots


# ---- FAST switch, device, seeding ------------------------------------------------------------------------
@pytest.mark.parametrize("value,expected", [("1", True), ("true", True), ("TRUE", True), ("0", False),
                                            ("false", False), ("", False), (" yes ", True), ("off", False)])
def test_fast_mode_values(monkeypatch, value, expected):
    monkeypatch.setenv("MEM_TUTORIAL_FAST", value)
    assert runtime.fast_mode() is expected
    assert runtime.pick(fast="small", full="paper") == ("small" if expected else "paper")


def test_fast_mode_unset_is_full(monkeypatch):
    monkeypatch.delenv("MEM_TUTORIAL_FAST", raising=False)
    assert runtime.fast_mode() is False


@pytest.mark.parametrize("bad", ["2", "fast", "tru", "1.0"])
def test_fast_mode_rejects_anything_else(monkeypatch, bad):
    monkeypatch.setenv("MEM_TUTORIAL_FAST", bad)
    with pytest.raises(ValueError, match="MEM_TUTORIAL_FAST"):
        runtime.fast_mode()


def test_device_is_reported_once(monkeypatch, capsys):
    monkeypatch.delenv("MEM_TUTORIAL_DEVICE", raising=False)
    monkeypatch.setattr(runtime, "_reported_device", None)
    d1 = runtime.get_device()
    d2 = runtime.get_device()
    assert d1 == d2
    assert capsys.readouterr().out.count("using device") == 1
    assert runtime.get_device("cpu", verbose=False).type == "cpu"


def test_seed_everything_repeats_random_streams():
    threads = torch.get_num_threads()
    try:
        runtime.seed_everything(3)
        a = (torch.rand(3), __import__("numpy").random.rand(), __import__("random").random())
        runtime.seed_everything(3)
        b = (torch.rand(3), __import__("numpy").random.rand(), __import__("random").random())
        assert torch.equal(a[0], b[0]) and a[1:] == b[1:]
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(False)


# ---- training loop and checkpoints ------------------------------------------------------------------------
def test_train_records_history_and_reduces_loss():
    torch.manual_seed(0)
    w = torch.zeros(3, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.1)
    target = torch.tensor([1.0, -2.0, 0.5])

    def step(i):
        loss = ((w - target) ** 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return {"loss": loss.item(), "norm": w.norm().item()}

    h = train(step, 50, log_every=5, live_plot=False)
    assert h.steps[0] == 0 and h.steps[-1] == 49
    assert h["loss"][-1] < 1e-2 * h["loss"][0]
    assert len(h["norm"]) == len(h.steps)
    h2 = train(step, 10, history=h, live_plot=False)  # continues the step count
    assert h2.steps[-1] == 59


def test_train_stops_on_non_finite_loss():
    with pytest.raises(FloatingPointError, match="step 3"):
        train(lambda i: float("nan") if i == 3 else 1.0, 10, live_plot=False)


def test_train_early_stop():
    h = train(lambda i: 1.0 / (i + 1), 100, stop=lambda hist: hist.last() < 0.1, live_plot=False)
    assert h.steps[-1] == 10


def test_history_smoothing_and_roundtrip():
    h = History()
    for i, v in enumerate([4.0, 2.0, 0.0, 2.0]):
        h.log(i, loss=v)
    assert h.smoothed("loss", 2) == [4.0, 3.0, 1.0, 1.0]
    assert History.from_dict(h.to_dict()).metrics == h.metrics


def test_checkpoint_roundtrip_records_config_and_version(tmp_path):
    model = AssociativeMemory(4, 4, 8)
    h = History()
    h.log(0, loss=1.0)
    path = save_checkpoint(tmp_path / "m.pt", model, {"key_bits": 4, "value_bits": 4, "word_size": 8}, h, note="x")
    fresh = AssociativeMemory(4, 4, 8)
    payload = load_checkpoint(path, fresh)
    assert payload["config"]["word_size"] == 8
    assert payload["library_version"] == mem_tutorial.__version__
    assert payload["extra"] == {"note": "x"}
    assert payload["history"].metrics == h.metrics
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b)


def test_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable"):
        load_checkpoint(bad)
    torch.save({"a": torch.zeros(1)}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="not a mem_tutorial checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")


# ---- plots (headless) ---------------------------------------------------------------------------------
def test_plots_headless():
    import matplotlib.pyplot as plt

    ax = plots.plot_memory(torch.rand(5, 3))
    plots.plot_weightings(torch.rand(7, 5))
    plots.plot_weighting(torch.rand(5))
    h = History()
    h.log(0, loss=1.0)
    plots.plot_history(h)
    with pytest.raises(ValueError, match=r"\[N, W\]"):
        plots.plot_memory(torch.rand(2, 5, 3))
    plt.close("all")
    assert ax is not None


def test_widget_builds_headless():
    pytest.importorskip("ipywidgets")
    from mem_tutorial.viz.widgets import content_addressing_explorer

    box = content_addressing_explorer(torch.randn(6, 4))
    slot, beta = box.children[0].children
    beta.value = 50.0  # drives the callback without a browser
    slot.value = 3


# ---- grading checks --------------------------------------------------------------------------------------
def test_assert_close_messages():
    with pytest.raises(AssertionError, match="expected shape"):
        assert_close(torch.zeros(2), torch.zeros(3), "x")
    with pytest.raises(AssertionError, match="NaN"):
        assert_close(torch.tensor([float("nan")]), torch.zeros(1), "x")
    with pytest.raises(AssertionError, match="largest difference"):
        assert_close(torch.ones(2), torch.zeros(2), "x")
    with pytest.raises(AssertionError, match="does not sum to 1"):
        assert_distribution(torch.ones(2, 3), "w")


def test_assert_own_work_detects_library_calls_however_imported():
    from mem_tutorial.memory.addressing import cosine_similarity as renamed

    M, k = torch.randn(2, 3, 4), torch.randn(2, 4)

    def own(memory, key):
        return (memory @ key.unsqueeze(-1)).squeeze(-1) / (memory.norm(dim=-1) * key.norm(dim=-1, keepdim=True))

    def via_alias(memory, key):
        return renamed(memory, key)

    def via_module(memory, key):
        return mem.cosine_similarity(memory, key)

    assert assert_own_work(own, [mem.cosine_similarity], M, k).shape == (2, 3)
    for cheat in (via_alias, via_module, mem.cosine_similarity):
        with pytest.raises(AssertionError, match="library"):
            assert_own_work(cheat, [mem.cosine_similarity], M, k)
    # the check does not leave a profiler installed
    import sys

    assert sys.getprofile() is None


# ---- Chapter 1 task and model -------------------------------------------------------------------------------
def test_kv_recall_batch_is_seeded_and_consistent():
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a, b = kv_recall_batch(16, 6, generator=g1), kv_recall_batch(16, 6, generator=g2)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    rows = torch.arange(16)
    assert torch.equal(a.query, a.keys[rows, a.index]) and torch.equal(a.target, a.values[rows, a.index])
    # keys within an episode are distinct
    assert all(len({tuple(r.tolist()) for r in ep}) == 6 for ep in a.keys)
    with pytest.raises(ValueError):
        kv_recall_batch(2, 300, key_bits=8)


def test_associative_memory_learns_quickly():
    runtime.seed_everything(0, threads=None)
    model = AssociativeMemory(8, 8, 32)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    for _ in range(400):
        b = kv_recall_batch(32, 8, generator=g)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(b.keys, b.values, b.query), b.target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.use_deterministic_algorithms(False)
    b = kv_recall_batch(500, 8, generator=g)
    with torch.no_grad():
        acc = ((model(b.keys, b.values, b.query) > 0).float() == b.target).all(-1).float().mean()
    assert acc > 0.8
    # the same weights hold more pairs than seen in training (parameters independent of memory size)
    b = kv_recall_batch(4, 32, generator=g)
    assert model(b.keys, b.values, b.query).shape == (4, 8)
