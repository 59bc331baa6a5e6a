"""Fault injection: runs on digits killed with SIGKILL at seeded random moments (teacher, CRD with
its memory bank, SSKD with its head phase, SimReg) resume to the end and end bitwise equal to the
uninterrupted run; a kill during a checkpoint write leaves the previous checkpoint loadable."""
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import ROOT, build_once
from core.checkpoint import load_file

pytestmark = pytest.mark.slow

TRIALS_PER_CONFIG = 3
SEED = 20261203


def _configs(teacher):
    common = ["--dataset", "digits", "--batch-size", "64", "--no-progress", "--save-every", "0"]
    return {
        "teacher": ["train_teacher.py", *common, "--arch", "resnet8", "--epochs", "2"],
        "crd": ["train_student.py", *common, "--method", "crd", "--teacher", teacher, "--student", "resnet8",
                "--epochs", "2", "--nce-k", "256"],
        "sskd": ["train_student.py", *common, "--method", "sskd", "--teacher", teacher, "--student", "resnet8",
                 "--epochs", "2", "--t-epochs", "1"],
        "simreg": ["train_student.py", *common, "--method", "simreg", "--teacher", teacher, "--student", "resnet8",
                   "--epochs", "2"],
    }


def _command(cfg, save_dir, init_cache):
    cmd = [sys.executable, os.path.join(ROOT, cfg[0]), *cfg[1:], "--save-dir", save_dir, "--name", "run"]
    return cmd + (["--init-cache", init_cache] if cfg[0] == "train_student.py" else [])


def _weights(folder):
    ckpt = load_file(os.path.join(folder, "ckpt", "last.pth"))
    return {"model": ckpt["model"], "method": ckpt["extra"]["method"], "epoch": ckpt["epoch"]}


def _equal(a, b):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, torch.Tensor):
        return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    return a == b


def _where(folder):
    ckpt_dir = os.path.join(folder, "ckpt")
    if os.path.isfile(os.path.join(ckpt_dir, "last.pth")):
        return f"after epoch {load_file(os.path.join(ckpt_dir, 'last.pth'))['epoch']}"
    if os.path.isfile(os.path.join(ckpt_dir, "init.pth")):
        return "after the init phase, before the first epoch checkpoint"
    if os.path.isfile(os.path.join(folder, "args.json")):
        return "before the first checkpoint"
    return "before the run folder was written"


# the moments a run passes, each marked by the file it writes then (after `started`, its imports)
MILESTONES = (("started", "args.json"), ("init phase", os.path.join("ckpt", "init.pth")),
              ("epoch 1", os.path.join("ckpt", "last.pth")))


def _passed(run_folder, seen, t0):
    """Record in `seen` the time (since t0) at which each milestone's file is first found."""
    for name, rel in MILESTONES:
        if name not in seen and os.path.exists(os.path.join(run_folder, rel)):
            seen[name] = time.time() - t0


def _reference(cfg, root):
    """The uninterrupted run of a config, timed: when its process passes each milestone and when
    it ends."""
    t0 = time.time()
    proc = subprocess.Popen(_command(cfg, str(root), str(root / "init_cache")),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    seen = {}
    while proc.poll() is None:
        _passed(str(root / "run"), seen, t0)
        time.sleep(0.02)
    assert proc.returncode == 0 and "started" in seen, seen
    return {"folder": str(root / "run"), "seconds": time.time() - t0, "milestones": seen,
            "init_cache": str(root / "init_cache")}


def _kill_point(ref, fraction):
    """A moment `fraction` of the way through the reference run after its imports, as (the last
    milestone before it, seconds after that milestone): a trial waits for its own process to pass
    that milestone, so a machine busier or idler than when the reference ran moves the kill by at
    most a part of one epoch, instead of past the run's end."""
    started = ref["milestones"]["started"]
    moment = started + fraction * (ref["seconds"] - started)
    name, at = max(((n, t) for n, t in ref["milestones"].items() if t <= moment), key=lambda m: m[1])
    return name, moment - at


@pytest.fixture(scope="session")
def references(small_teacher, tmp_path_factory):
    """One uninterrupted run per config for the whole session (trials on any worker share it)."""
    configs = _configs(small_teacher["ckpt"])
    return lambda name: build_once(tmp_path_factory, f"kill_reference_{name}",
                                   lambda root: _reference(configs[name], root))


def _kill_fractions(config):
    """Where in the run each trial kills, as a share of the time after the imports: seeded per
    config, the same draws for every runner."""
    rng = random.Random(f"{SEED}-{config}")
    return [rng.uniform(0.0, 0.9) for _ in range(TRIALS_PER_CONFIG)]


TRIALS = [(config, trial) for config in ("teacher", "crd", "sskd", "simreg") for trial in range(TRIALS_PER_CONFIG)]


# a config's trials on one worker: its reference is built by the first, never waited for by another worker
@pytest.mark.parametrize("config,trial", [pytest.param(c, t, marks=pytest.mark.xdist_group(f"kill_{c}"))
                                          for c, t in TRIALS], ids=[f"{c}-{t}" for c, t in TRIALS])
def test_sigkill_then_resume_is_bit_exact(config, trial, references, small_teacher, tmp_path, capsys):
    cfg = _configs(small_teacher["ckpt"])[config]
    ref = references(config)
    save_dir = str(tmp_path / "trial")
    # odd trials share the uninterrupted run's init cache: a reused init phase must change nothing
    init_cache = ref["init_cache"] if trial % 2 else os.path.join(save_dir, "init_cache")
    cmd = _command(cfg, save_dir, init_cache)
    milestone, delay = _kill_point(ref, _kill_fractions(config)[trial])
    for _ in range(6):   # a run that finished before its kill is started again with a shorter delay
        shutil.rmtree(save_dir, ignore_errors=True)
        t0 = time.time()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
        seen = {}
        while milestone not in seen and proc.poll() is None:
            _passed(os.path.join(save_dir, "run"), seen, t0)
            time.sleep(0.02)
        time.sleep(delay)
        killed = proc.poll() is None
        if killed:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        if killed:
            break
        delay *= 0.6
    assert killed, f"{config} trial {trial}: the run always finished before its kill"
    where = _where(os.path.join(save_dir, "run"))
    for _ in range(3):   # continue (from a checkpoint, or from scratch) until it finishes
        started = os.path.isfile(os.path.join(save_dir, "run", "args.json"))
        done = subprocess.run(cmd + (["--resume"] if started else []), capture_output=True, text=True, cwd=ROOT)
        if done.returncode == 0:
            break
    assert done.returncode == 0, done.stderr[-2000:]
    assert _equal(_weights(os.path.join(save_dir, "run")), _weights(ref["folder"])), (config, trial, where)
    with capsys.disabled():
        print(f"\n{config} trial {trial}: SIGKILL {delay:.1f}s after {milestone}, {where}; resumed bit-exact")


WRITER = """
import sys, time, torch
sys.path.insert(0, {root!r})
from core.checkpoint import save_atomic
step = 0
while True:
    step += 1
    save_atomic({{"step": step, "w": torch.full((4_000_000,), float(step))}}, {path!r})
"""


def test_kill_during_checkpoint_writes_keeps_previous_loadable(tmp_path):
    path = str(tmp_path / "ckpt" / "last.pth")
    rng = random.Random(SEED)
    steps = []
    for trial in range(4):
        proc = subprocess.Popen([sys.executable, "-c", WRITER.format(root=ROOT, path=path)])
        deadline = time.time() + 60
        while not os.path.exists(path) and time.time() < deadline:   # at least one complete checkpoint
            time.sleep(0.05)
        time.sleep(rng.uniform(0.05, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        ckpt = load_file(path)
        assert torch.equal(ckpt["w"], torch.full((4_000_000,), float(ckpt["step"])))
        steps.append(ckpt["step"])
    assert steps == sorted(steps)
    # what the killed writers left behind is removed by the next process that locks the folder
    from engine.run_folder import RunFolder
    leftovers = [n for n in os.listdir(tmp_path / "ckpt") if n.startswith(".tmp_")]
    with RunFolder(str(tmp_path), resume=True):
        pass
    assert not [n for n in os.listdir(tmp_path / "ckpt") if n.startswith(".tmp_")], leftovers
