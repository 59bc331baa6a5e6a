"""scripts/run_table.py with the local executor on a tiny digits grid (2 pairs x 3 rows x 2 seeds,
one epoch): two concurrent cells finish the grid; a runner killed with SIGKILL mid-grid and
started again completes it without training a finished cell again, and every cell ends bit for
bit as in the uninterrupted grid; a failed cell fails only the cells that need it."""
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import build_once
from core.checkpoint import load_file

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNNER = os.path.join(ROOT, "scripts", "run_table.py")
GRID = {"dataset": "digits", "pairs": ["resnet14:resnet8", "resnet8:resnet8"], "rows": ["student", "KD", "CRD"],
        "seeds": [0, 1], "epochs": 1, "teacher_epochs": 1, "extra_args": ["--save-every", "0"],
        "overrides": {"CRD": ["--nce-k", "64"]}}
N_CELLS = 2 + 2 * 3 * 2


def _grid_file(tmp, spec=GRID):
    path = os.path.join(str(tmp), "grid.json")
    with open(path, "w") as f:
        json.dump(spec, f)
    return path


def _runner(grid_file, out, *extra):
    return [sys.executable, RUNNER, "grid", grid_file, "--out", str(out), "--workers", "2", *extra]


def _summaries(out):
    found = {}
    for dirpath, _, files in os.walk(out):
        rel = os.path.relpath(dirpath, out)
        if "summary.json" in files and rel.split(os.sep)[0] not in ("grid", "init_cache"):
            found[rel] = os.path.join(dirpath, "summary.json")
    return found


def _under_way(out):
    """Student cells whose run folder is open (log.txt written) and not finished."""
    found = []
    for dirpath, _, files in os.walk(out):
        if "log.txt" in files and "summary.json" not in files and "_to_" in dirpath:
            found.append(dirpath)
    return found


@pytest.fixture(scope="session")
def straight(tmp_path_factory):
    """The uninterrupted grid, run once per session (its three users may run on any worker)."""
    def build(tmp):
        tmp.mkdir()
        t0 = time.time()
        done = subprocess.run(_runner(_grid_file(tmp), tmp / "out"), capture_output=True, text=True, timeout=900)
        return {"out": str(tmp / "out"), "returncode": done.returncode, "stdout": done.stdout,
                "stderr": done.stderr, "seconds": time.time() - t0}
    made = build_once(tmp_path_factory, "grid_straight", build)
    return {**made, "out": pathlib.Path(made["out"])}


def test_tiny_grid_with_two_concurrent_cells(straight):
    out = straight["out"]
    assert straight["returncode"] == 0, straight["stdout"][-2000:] + straight["stderr"][-2000:]
    assert len(_summaries(out)) == N_CELLS
    assert f"{N_CELLS} done" in straight["stdout"]
    manifest = json.load(open(out / "grid" / "manifest.json"))
    assert len(manifest["cells"]) == N_CELLS and manifest["runs"][0]["executor"] == "local"
    # teachers first: every student's log starts after its teacher's summary was written
    status = subprocess.run(_runner(_grid_file(out.parent), out, "--status"), capture_output=True, text=True)
    assert status.returncode == 0 and f"{N_CELLS} done" in status.stdout


def test_sigkilled_runner_restarts_and_finishes_exactly(straight, tmp_path):
    out = tmp_path / "out"
    grid_file = _grid_file(tmp_path)
    runner = subprocess.Popen(_runner(grid_file, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    # both teachers and a few students done, and a student under way (its run folder opened)
    while not (len(_summaries(out)) >= 4 and _under_way(out)) and time.time() < deadline:
        time.sleep(0.2)
    runner.send_signal(signal.SIGKILL)
    runner.wait()
    finished = {k: os.stat(p).st_mtime_ns for k, p in _summaries(out).items()}
    assert 4 <= len(finished) < N_CELLS
    again = subprocess.run(_runner(grid_file, out), capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    after = _summaries(out)
    assert len(after) == N_CELLS
    for k, mtime in finished.items():   # not trained again
        assert os.stat(after[k]).st_mtime_ns == mtime, k
    assert any("(resume)" in line for line in again.stdout.splitlines()), again.stdout
    for k in after:   # every cell, interrupted or not, ends as in the uninterrupted grid
        a = load_file(str(straight["out"] / k / "ckpt" / "last.pth"))["model"]
        b = load_file(str(out / k / "ckpt" / "last.pth"))["model"]
        assert all(torch.equal(a[n], b[n]) for n in a), k


def test_a_failed_cell_fails_only_what_needs_it(tmp_path):
    spec = dict(GRID, pairs=["resnet14:resnet8", "nosuchnet:resnet8"], rows=["KD"], seeds=[0], overrides={})
    out = tmp_path / "out"
    proc = subprocess.run(_runner(_grid_file(tmp_path, spec), out), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1
    assert os.path.isfile(out / "resnet14_to_resnet8" / "KD_seed0" / "summary.json")
    lines = {line.split()[0]: line for line in proc.stdout.splitlines() if line.startswith(("teachers/", "nosuch"))}
    assert "failed" in lines["teachers/nosuchnet_seed0"] and "nosuchnet" in lines["teachers/nosuchnet_seed0"]
    assert "not run: needs teachers/nosuchnet_seed0" in lines["nosuchnet_to_resnet8/KD_seed0"]
    assert "done" in lines["teachers/resnet14_seed0"]


def test_report_equals_the_summaries(straight):
    from PIL import Image
    out = straight["out"]
    for ext in ("md", "csv", "png"):
        assert os.path.isfile(out / f"report.{ext}"), ext
    png = Image.open(out / "report.png")
    png.load()
    assert png.size[1] == 400 and png.size[0] >= 600
    import csv
    import statistics
    rows = {(r["pair"], r["row"]): r for r in csv.DictReader(open(out / "report.csv"))}
    assert len(rows) == 2 + 2 * 3   # two teachers, 2 pairs x 3 rows
    for (pair, row), r in rows.items():
        seeds = [0] if pair == "teachers" else [0, 1]
        folders = [out / pair / (f"{row}_seed{k}") for k in seeds]
        summaries = [json.load(open(f / "summary.json")) for f in folders]
        assert float(r["last_mean"]) == pytest.approx(statistics.mean(s["last"]["top1"] for s in summaries))
        assert float(r["best_mean"]) == pytest.approx(statistics.mean(s["best"]["top1"] for s in summaries))
        assert int(r["n"]) == len(seeds)
    md = (out / "report.md").read_text()
    assert "Protocol: grid" in md and "resnet14_to_resnet8 | KD |" in md
