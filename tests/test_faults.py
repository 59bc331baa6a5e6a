"""Runs that start, stop and restart cleanly: SIGTERM mid-epoch gives a mid-epoch checkpoint that
resumes bitwise equal (in-memory data and image folders), periodic mid-epoch checkpoints change
nothing, a run that died before its first checkpoint can be resumed or restarted, a reused
init-phase cache gives the same bits as a computed one, the run lock, a full disk, file modes."""
import errno
import os
import signal
import stat

import pytest
import torch

import engine.distill
import train_student
import train_teacher
from core.checkpoint import CheckpointError, load_file, save_atomic
from engine.run_folder import RunFolder

from conftest import SMALL_TEACHER

FAST = ["--no-progress", "--save-every", "0"]
TEACHER = SMALL_TEACHER


def _weights(folder):
    ckpt = load_file(os.path.join(folder, "ckpt", "last.pth"))
    return ckpt["model"], ckpt["extra"]["method"]


def _same(a, b):
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    return a == b


def _at_step(monkeypatch, step, action):
    """Run `action()` just before the `step`-th training forward pass of the process."""
    calls = {"n": 0}
    real = engine.distill.Distiller.forward

    def counting(self, batch, epoch):
        if self.phase is None:
            calls["n"] += 1
            if calls["n"] == step:
                action()
        return real(self, batch, epoch)
    monkeypatch.setattr(engine.distill.Distiller, "forward", counting)
    return calls




@pytest.mark.slow
def test_sigterm_mid_epoch_then_resume_is_bit_exact(tmp_path, small_teacher, monkeypatch, capsys):
    reference = small_teacher
    _at_step(monkeypatch, 30, lambda: os.kill(os.getpid(), signal.SIGTERM))   # epoch 2 has 23 steps: step 7 of 2
    with pytest.raises(SystemExit) as stop:
        train_teacher.main(TEACHER + ["--save-dir", str(tmp_path), "--name", "cut"])
    assert stop.value.code == 75 and "SIGTERM" in capsys.readouterr().err
    partial = load_file(str(tmp_path / "cut" / "ckpt" / "last.pth"))["partial"]
    assert (partial["epoch"], partial["step"]) == (2, 7)
    monkeypatch.undo()
    resumed = train_teacher.main(TEACHER + ["--save-dir", str(tmp_path), "--name", "cut", "--resume"])
    assert _same(_weights(reference["folder"])[0], _weights(tmp_path / "cut")[0])
    assert resumed["last"] == reference["summary"]["last"]


@pytest.mark.slow
def test_periodic_mid_epoch_checkpoints_change_nothing(tmp_path, small_teacher):
    args = ["--dataset", "digits", "--method", "crd", "--teacher", small_teacher["ckpt"], "--student", "resnet8",
            "--epochs", "1", "--nce-k", "128", *FAST, "--save-dir", str(tmp_path)]
    train_student.main(args + ["--name", "plain"])
    train_student.main(args + ["--name", "often", "--ckpt-every-minutes", "1e-6"])   # a pause after every step
    assert "mid-epoch checkpoint at step 22" in (tmp_path / "often" / "log.txt").read_text()
    for a, b in zip(_weights(tmp_path / "plain"), _weights(tmp_path / "often")):
        assert _same(a, b)


@pytest.mark.slow
def test_sigterm_mid_epoch_with_image_folder_loader(tmp_path, imagefolder_root, small_teacher, monkeypatch):
    """SimReg on an image folder (worker-free here): per-sample seeded crops resume bit for bit mid-epoch."""
    from conftest import write_imagefolder
    root = write_imagefolder(str(tmp_path / "img"), classes=3, train_per_class=12, size=32)
    args = ["--dataset", "imagenet", "--data-root", root, "--image-size", "32", "--workers", "0", "--method", "simreg",
            "--teacher", small_teacher["ckpt"], "--student", "resnet8", "--epochs", "2", "--batch-size", "8",
            *FAST, "--save-dir", str(tmp_path)]
    train_student.main(args + ["--name", "ref"])
    _at_step(monkeypatch, 6, lambda: os.kill(os.getpid(), signal.SIGUSR1))   # 4 steps per epoch: epoch 2 step 2
    with pytest.raises(SystemExit) as stop:
        train_student.main(args + ["--name", "cut"])
    assert stop.value.code == 75
    assert load_file(str(tmp_path / "cut" / "ckpt" / "last.pth"))["partial"]["step"] == 2
    monkeypatch.undo()
    train_student.main(args + ["--name", "cut", "--resume"])
    for a, b in zip(_weights(tmp_path / "ref"), _weights(tmp_path / "cut")):
        assert _same(a, b)


@pytest.mark.slow
def test_run_killed_before_first_checkpoint_resumes_or_restarts(tmp_path, small_teacher, monkeypatch):
    reference = small_teacher

    def die():
        raise KeyboardInterrupt   # as a kill in epoch 1: args.json and log written, no checkpoint
    for how in (["--resume"], []):
        name = f"died{len(how)}"
        _at_step(monkeypatch, 5, die)
        with pytest.raises(KeyboardInterrupt):
            train_teacher.main(TEACHER + ["--save-dir", str(tmp_path), "--name", name])
        monkeypatch.undo()
        assert (tmp_path / name / "args.json").is_file() and not (tmp_path / name / "ckpt" / "last.pth").exists()
        args_before = (tmp_path / name / "args.json").read_bytes()
        train_teacher.main(TEACHER + ["--save-dir", str(tmp_path), "--name", name, *how])
        assert (tmp_path / name / "args.json").read_bytes() == args_before
        assert "restarted from scratch" in (tmp_path / name / "log.txt").read_text()
        assert _same(_weights(reference["folder"])[0], _weights(tmp_path / name)[0])


@pytest.mark.slow
@pytest.mark.xdist_group("sskd_runs")   # beside the fixture's other users: none waits on another worker
def test_init_cache_reuse_is_bit_identical(sskd_runs):
    """SSKD: the teacher-head phase computed in one run and reused by the next: the same weights."""
    computed, reused = sskd_runs["computed"]["folder"], sskd_runs["reused"]["folder"]
    assert "reused" in open(os.path.join(reused, "log.txt")).read()
    for a, b in zip(_weights(computed), _weights(reused)):
        assert _same(a, b)


@pytest.mark.slow
@pytest.mark.xdist_group("sskd_runs")
def test_kill_after_init_phase_resumes_bit_exact(tmp_path, sskd_runs, monkeypatch):
    """Stopped after the head phase (its init.pth written), resumed with its own fresh init cache,
    the run ends as the uninterrupted one (sskd_runs' computed run) ends."""
    args = sskd_runs["args"] + ["--save-dir", str(tmp_path), "--name", "cut", "--init-cache", str(tmp_path / "c2")]

    def die():
        raise KeyboardInterrupt
    _at_step(monkeypatch, 3, die)
    with pytest.raises(KeyboardInterrupt):
        train_student.main(args)
    monkeypatch.undo()
    assert (tmp_path / "cut" / "ckpt" / "init.pth").is_file()
    train_student.main(args + ["--resume"])
    for a, b in zip(_weights(sskd_runs["computed"]["folder"]), _weights(tmp_path / "cut")):
        assert _same(a, b)


@pytest.mark.slow
def test_second_process_on_a_run_folder_is_refused(tmp_path, capsys):
    folder = tmp_path / "busy"
    with RunFolder(str(folder)):
        with pytest.raises(SystemExit) as e:
            train_teacher.main(TEACHER + ["--save-dir", str(tmp_path), "--name", "busy"])
        err = capsys.readouterr().err
        assert e.value.code == 2 and "is in use by pid" in err and len(err.strip().splitlines()) == 1
    # the lock goes with its holder: the next process takes the folder
    train_teacher.main(TEACHER + ["--save-dir", str(tmp_path), "--name", "busy", "--epochs", "1"])


@pytest.mark.slow
def test_stale_lock_of_a_killed_process_is_taken_over(tmp_path):
    import subprocess
    import sys
    import time
    from conftest import ROOT
    holder = subprocess.Popen([sys.executable, "-c", f"import sys, time; sys.path.insert(0, {ROOT!r}); "
                               f"from engine.run_folder import RunFolder; r = RunFolder({str(tmp_path / 'x')!r}); "
                               f"print('locked', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(Exception, match="in use by pid"):
        RunFolder(str(tmp_path / "x"))
    holder.kill()
    holder.wait()
    time.sleep(0.1)
    RunFolder(str(tmp_path / "x")).close()


@pytest.mark.slow
def test_full_disk_keeps_previous_checkpoint(tmp_path, monkeypatch, capsys):
    train_teacher.main(TEACHER + ["--epochs", "1", "--save-dir", str(tmp_path), "--name", "r"])
    last = tmp_path / "r" / "ckpt" / "last.pth"
    before = last.read_bytes()
    real_save = torch.save

    def full(obj, f, *a, **kw):
        if hasattr(f, "write"):
            f.write(b"partial bytes")
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(SystemExit) as e:
        train_teacher.main(TEACHER + ["--save-dir", str(tmp_path), "--name", "r", "--resume",
                                      "--allow-changed-args"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1
    assert f"no space left on device while writing {last}; the previous checkpoint is intact" in err
    assert last.read_bytes() == before
    assert not [n for n in os.listdir(last.parent) if n.startswith(".tmp_")]
    # the same with the error torch's zip writer raises on a full disk
    monkeypatch.setattr(torch, "save", lambda *a, **k: (_ for _ in ()).throw(
        RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file data/0: "
                     "file write failed")))
    monkeypatch.setattr("shutil.disk_usage", lambda p: type("U", (), {"free": 0})())
    with pytest.raises(CheckpointError, match="no space left on device"):
        save_atomic({"x": 1}, str(last))
    monkeypatch.setattr(torch, "save", real_save)


@pytest.mark.slow
def test_records_and_checkpoints_are_world_readable(tmp_path):
    old = os.umask(0o022)
    try:
        train_teacher.main(TEACHER + ["--epochs", "1", "--save-dir", str(tmp_path), "--name", "r"])
    finally:
        os.umask(old)
    for name in ("args.json", "summary.json", "ckpt/last.pth", "ckpt/best.pth"):
        assert stat.S_IMODE(os.stat(tmp_path / "r" / name).st_mode) == 0o644, name


def test_read_only_folder_is_one_clear_error(tmp_path, monkeypatch):
    def read_only(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")
    monkeypatch.setattr("tempfile.mkstemp", read_only)
    with pytest.raises(CheckpointError, match="the file system is read-only while writing .*x.pth; nothing was written"):
        save_atomic({"x": 1}, str(tmp_path / "x.pth"))


@pytest.mark.slow
def test_evaluation_results_are_reused_kept_beside_or_overwritten(tmp_path, capsys):
    import json

    import eval_knn
    train_teacher.main(TEACHER + ["--epochs", "1", "--save-dir", str(tmp_path), "--name", "r"])
    ckpt = str(tmp_path / "r" / "ckpt" / "last.pth")
    base = ["--checkpoint", ckpt, "--dataset", "digits", "--workers", "0"]
    first = eval_knn.main(["--checkpoint", ckpt, "--workers", "0", "-k", "1"])   # --dataset: the one it records
    summary = tmp_path / "r" / "summary.json"
    assert json.loads(summary.read_text())["knn"]["dataset"] == "digits"
    saved = summary.read_bytes()
    capsys.readouterr()
    assert eval_knn.main(base + ["-k", "1"]) == first and "already evaluated" in capsys.readouterr().out
    other = eval_knn.main(base + ["-k", "1,3"])   # other settings: kept beside, the run's result stays
    assert summary.read_bytes() == saved and "keeps its earlier knn result" in capsys.readouterr().out
    beside = [n for n in os.listdir(tmp_path / "r" / "knn") if n.startswith("summary_")]
    assert len(beside) == 1
    assert json.loads((tmp_path / "r" / "knn" / beside[0]).read_text())["knn"]["top1"] == other
    eval_knn.main(base + ["-k", "1,3", "--overwrite"])
    assert set(json.loads(summary.read_text())["knn"]["top1"]) == {"1", "3"}
