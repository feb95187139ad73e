"""The benchmark's reporting of MemN2N runs: the paper's protocol picks, per task, the restart with the lowest
training error (or validation error); ``--weights final`` reads the last-epoch model's figures."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("memn2n_babi_bench", ROOT / "benchmarks" / "memn2n_babi.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(seed, test, valid, train, final=None):
    run = {"seed": seed, "per_task": dict(test), "valid_error": dict(valid), "train_error": dict(train),
           "best_epoch": {t: 100 for t in test}}
    if final is not None:
        run["final"] = final
    return run


def _means(table: str) -> list[str]:
    row = next(line for line in table.splitlines() if line.startswith("| **mean**"))
    return [cell.strip().strip("*") for cell in row.strip("|").split("|")[1:]]


def test_protocol_picks_each_task_by_training_and_by_validation_error(bench):
    # task 1: seed 0 has the lower training error, seed 1 the lower validation error; task 2 the other way round
    runs = [_run(0, {1: 0.10, 2: 0.50}, {1: 0.30, 2: 0.05}, {1: 0.01, 2: 0.20}),
            _run(1, {1: 0.30, 2: 0.20}, {1: 0.10, 2: 0.40}, {1: 0.05, 2: 0.00})]
    seed0, seed1, median, by_train, by_valid = _means(bench.protocol_table(runs, None))
    assert (seed0, seed1) == ("30.0", "25.0")
    assert by_train == "15.0"  # task 1 from seed 0 (10 %), task 2 from seed 1 (20 %)
    assert by_valid == "40.0"  # task 1 from seed 1 (30 %), task 2 from seed 0 (50 %)
    assert median == "27.5"


def test_protocol_weights_final_reads_the_last_epoch_model(bench, tmp_path, capsys):
    final0 = {"per_task": {"1": 0.02}, "valid_error": {"1": 0.0}, "train_error": {"1": 0.0}}
    final1 = {"per_task": {"1": 0.08}, "valid_error": {"1": 0.1}, "train_error": {"1": 0.1}}
    report = {"mode": "single", "variant": "en-10k",
              "runs": [_run(0, {"1": 0.5}, {"1": 0.5}, {"1": 0.5}, final0),
                       _run(1, {"1": 0.4}, {"1": 0.4}, {"1": 0.4}, final1)]}
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    assert bench.main(["protocol", "--files", str(path)]) == 0
    assert _means(capsys.readouterr().out)[3] == "40.0"  # best-validation weights: seed 1
    assert bench.main(["protocol", "--files", str(path), "--weights", "final"]) == 0
    assert _means(capsys.readouterr().out)[3] == "2.0"  # last-epoch models: seed 0 has the lower training error
    del report["runs"][0]["final"]
    path.write_text(json.dumps(report))
    with pytest.raises(SystemExit):
        bench.main(["protocol", "--files", str(path), "--weights", "final"])
    assert "no last-epoch figures" in capsys.readouterr().err


def _fake_babi(folder: Path, tasks=(1, 2), stories=30) -> Path:
    """A tiny bAbI-format release folder (outside a ``tasks_1-20_v1-2`` tree, so no checksums): task-1 style
    stories "X went to the P. ... Where is X?" under the names of ``tasks``."""
    from mem_tutorial.data.babi import TASK_NAMES

    import random

    rng = random.Random(0)
    people, places = ["Mary", "John", "Sandra", "Daniel"], ["kitchen", "garden", "office", "hallway", "bathroom"]
    (folder / "en").mkdir(parents=True)
    for task in tasks:
        for split in ("train", "test"):
            lines = []
            for _ in range(stories):
                where = {}
                for i in range(1, 5):
                    who, place = rng.choice(people), rng.choice(places)
                    where[who] = place
                    lines.append(f"{i} {who} went to the {place}.")
                who = rng.choice(sorted(where))
                lines.append(f"5 Where is {who}? \t{where[who]}\t1")
            (folder / "en" / f"qa{task}_{TASK_NAMES[task]}_{split}.txt").write_text("\n".join(lines) + "\n")
    return folder


def test_joint_run_records_the_last_epoch_model(bench, tmp_path, capsys):
    data_dir = _fake_babi(tmp_path / "babi")
    out = tmp_path / "joint.json"
    argv = ["joint", "--tasks", "1", "2", "--seeds", "0", "1", "--ls-epochs", "1", "--epochs", "3",
            "--dim", "8", "--data-dir", str(data_dir), "--out", str(out)]
    assert bench.main(argv) == 0
    report = json.loads(out.read_text())
    for run in report["runs"]:
        final, history = run["final"], run["history"]
        assert set(final["per_task"]) == {"1", "2"}
        assert final["best_epoch"] == history["steps"][-1] == 4  # 1 LS + 3 softmax epochs
        assert final["valid_error"] == history["metrics"]["valid_error"][-1]
        if run["best_epoch"] == final["best_epoch"]:  # best-validation epoch is the last: the same model
            assert final["per_task"] == run["per_task"]
    capsys.readouterr()
    assert bench.main(["protocol", "--files", str(out), "--weights", "final"]) == 0
    table = capsys.readouterr().out
    train_errors = [run["history"]["metrics"]["train_error"][-1] for run in report["runs"]]
    pick = min(range(2), key=lambda i: train_errors[i])
    expected = 100 * sum(report["runs"][pick]["final"]["per_task"].values()) / 2
    assert _means(table)[3] == f"{expected:.1f}"  # best of 2 on the last epoch's training error


def test_last_epoch_figures_come_from_the_last_weights_not_the_restored_ones(bench, tmp_path, monkeypatch):
    from mem_tutorial.data import babi
    from mem_tutorial.models import memn2n as M

    data = babi.load_babi([1, 2], data_dir=_fake_babi(tmp_path / "babi"))
    cfg = M.paper_config(data, joint=True, embedding_dim=8)
    last_model = M.MemN2N(cfg, copies=2)
    evaluated = []
    real_evaluate = M.evaluate_copies

    def spy(model, *args, **kwargs):
        evaluated.append({k: v.clone() for k, v in model.state_dict().items()})
        return real_evaluate(model, *args, **kwargs)

    monkeypatch.setattr(bench.M, "evaluate_copies", spy)
    history = {"steps": [7], "metrics": {"valid_error": [0.25], "train_error": [0.5]}}
    report = {"runs": [{"seed": s, "history": history} for s in range(2)]}
    bench.add_last_epoch(report, cfg, {"epoch": 7, "state": last_model.state_dict()}, data)
    assert len(evaluated) == 1
    assert all(torch.equal(evaluated[0][k], v) for k, v in last_model.state_dict().items())
    tests = real_evaluate(last_model, [data.test] * 2)
    for s, run in enumerate(report["runs"]):
        assert run["final"]["per_task"] == M.per_task_error(tests[s]["correct"], data.test.tasks)
        assert run["final"]["best_epoch"] == 7 and run["final"]["train_error"] == 0.5
        assert run["final"]["valid_error"] == 0.25
