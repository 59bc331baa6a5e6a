"""The slurm executor on a real one-node SLURM (started by the test, see slurm_cluster.py): a
teacher and a student cell run as SLURM jobs, the student after the teacher (an afterok
dependency, plus the afterany throttle of --max-running 1); the student is requeued mid-run with
`scontrol requeue`, resumes from its checkpoint and ends bit for bit where the same cells end
when run uninterrupted."""
import json
import os
import subprocess
import sys
import time

import pytest
import torch

from core.checkpoint import load_file
from slurm_cluster import one_node_slurm

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNNER = os.path.join(ROOT, "scripts", "run_table.py")
SPEC = {"dataset": "digits", "pairs": ["resnet14:resnet8"], "rows": ["KD"], "seeds": [0], "epochs": 3,
        "teacher_epochs": 1, "extra_args": ["--save-every", "0"]}


def _wait_for(predicate, seconds, what):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


def test_slurm_grid_with_a_requeued_cell(tmp_path):
    grid_file = tmp_path / "grid.json"
    grid_file.write_text(json.dumps(SPEC))
    out = tmp_path / "out"
    student = out / "resnet14_to_resnet8" / "KD_seed0"
    record = out / "grid" / "cells" / "resnet14_to_resnet8__KD_seed0.json"
    with one_node_slurm(tmp_path / "slurm") as env:
        runner = subprocess.Popen([sys.executable, RUNNER, "grid", str(grid_file), "--out", str(out),
                                   "--executor", "slurm", "--gpus-per-cell", "0", "--cpus-per-cell", "2",
                                   "--time-min", "30", "--max-running", "1"], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, cwd=str(tmp_path))
        try:
            log = student / "log.txt"
            _wait_for(lambda: log.is_file() and "epoch 1/3" in log.read_text(), 600, "the student's first epoch")
            job = json.loads(record.read_text())["job"]
            r = subprocess.run(["scontrol", "requeue", job], env=env, capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
            output, _ = runner.communicate(timeout=900)
        finally:
            if runner.poll() is None:
                runner.kill()
    assert runner.returncode == 0, output[-3000:]
    assert "resuming from" in log.read_text(), log.read_text()
    assert (student / "summary.json").is_file()
    # the same cells, uninterrupted, with the local executor
    ref = tmp_path / "ref"
    done = subprocess.run([sys.executable, RUNNER, "grid", str(grid_file), "--out", str(ref)], capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:]
    for cell in ("teachers/resnet14_seed0", "resnet14_to_resnet8/KD_seed0"):
        a = load_file(str(out / cell / "ckpt" / "last.pth"))["model"]
        b = load_file(str(ref / cell / "ckpt" / "last.pth"))["model"]
        assert all(torch.equal(a[k], b[k]) for k in a), cell
