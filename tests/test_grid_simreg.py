"""A SimReg grid through scripts/run_table.py on digits: a row trained from cached teacher features
(cache_features.py first) and a live-teacher row, caching and training under torchrun (2 CPU
processes each), each followed by its k-NN and linear-probe
cells; the report's 1-NN and linear numbers are the run folders' summary.json values, its cost
counts every cell, and running the grid again starts nothing."""
import csv
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNNER = os.path.join(ROOT, "scripts", "run_table.py")

pytestmark = pytest.mark.slow


def test_simreg_grid_caches_trains_and_evaluates(tmp_path, digits_teacher):
    rows = [{"teacher": digits_teacher["ckpt"], "format": "ours", "student": "resnet8", "cached": cached,
             "name": name} for name, cached in (("cached", True), ("live", False))]
    spec = {"kind": "simreg", "dataset": "digits", "rows": rows, "epochs": 1, "batch_size": 64, "nproc": 2,
            "train_args": ["--save-every", "0"], "linear_args": ["--epochs", "2", "--eval-every", "1"]}
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps(spec))
    out = tmp_path / "out"
    command = [sys.executable, RUNNER, "grid", str(grid), "--out", str(out), "--workers", "2"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "7 done" in proc.stdout   # 1 cache + 2 x (train, k-NN, linear)

    prefix = out / "teacher_feats" / "ours_digits_train"
    assert (prefix.parent / (prefix.name + ".json")).is_file()
    cached_args = json.loads((out / "simreg" / "cached_seed0" / "args.json").read_text())
    assert cached_args["args"]["teacher_feats"] == str(prefix) and cached_args["args"]["teacher"] is None
    report = {r["row"]: r for r in csv.DictReader(open(out / "report.csv"))}
    assert set(report) == {"cached", "live"}
    for name in ("cached", "live"):
        s = json.loads((out / "simreg" / f"{name}_seed0" / "summary.json").read_text())
        assert float(report[name]["nn1_mean"]) == pytest.approx(s["knn"]["top1"]["1"])
        assert float(report[name]["linear_mean"]) == pytest.approx(s["linear"]["last"]["top1"])
        assert s["linear"]["epochs"] == 2 and s["processes"] == 2   # trained under torchrun
        # the row's cost: the training cell's whole wall time and its evaluation cells'
        evaluations = (s["knn"]["wall_seconds"] + s["linear"]["wall_seconds"]) / 3600
        assert evaluations > 0 and s["knn"]["processes"] == s["linear"]["processes"] == 1
        assert float(report[name]["hours"]) == pytest.approx(s["wall_seconds"] * 2 / 3600 + evaluations, abs=1e-4)
    cache_cost = json.loads((prefix.parent / (prefix.name + ".json")).read_text())["cost"]
    assert cache_cost["processes"] == 2 and cache_cost["wall_seconds"] > 0
    md = (out / "report.md").read_text()
    assert "| cached | t/ckpt/last.pth" not in md and "| live | last.pth → resnet8 |" in md

    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "start " not in again.stdout and "7 done" in again.stdout
