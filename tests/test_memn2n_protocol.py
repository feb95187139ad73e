"""The benchmark's reporting of MemN2N runs: the paper's protocol picks, per task, the restart with the lowest
training error (or validation error); ``--weights final`` reads the last-epoch model's figures."""

import importlib.util
import json
from pathlib import Path

import pytest

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
