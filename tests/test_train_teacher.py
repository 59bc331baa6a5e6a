"""train_teacher.py end to end: accuracy on digits, run records, exact resume, bad inputs."""
import json
import os

import pytest
import torch

import engine.trainer
import train_teacher
from core.checkpoint import load_file

FAST = ["--dataset", "digits", "--no-progress", "--save-every", "0"]


def _run(tmp_path, name, *extra):
    return train_teacher.main(FAST + ["--save-dir", str(tmp_path), "--name", name, *extra])


@pytest.mark.slow
def test_digits_teacher_reaches_95(digits_teacher):
    """resnet14, 12 epochs (lr x0.1 after 8 and 10), batch 64, seed 0 (see conftest)."""
    summary = digits_teacher["summary"]
    assert summary["last"]["top1"] >= 95.0, summary
    folder = digits_teacher["folder"]
    for f in ("args.json", "log.txt", "summary.json", "ckpt/last.pth", "ckpt/best.pth"):
        assert (folder / f).is_file(), f
    assert any(n.startswith("events.out.tfevents") for n in os.listdir(folder / "tb"))
    args = json.loads((folder / "args.json").read_text())
    assert args["seed"] == 0 and args["args"]["arch"] == "resnet14" and args["versions"]["torch"]
    assert "git_revision" in args
    on_disk = json.loads((folder / "summary.json").read_text())
    assert on_disk["last"]["top1"] == summary["last"]["top1"] and on_disk["best"]["top1"] >= on_disk["last"]["top1"]
    last = load_file(str(folder / "ckpt" / "last.pth"))
    assert {"model", "optimizer", "scheduler", "rng", "epoch", "best", "arch"} <= set(last)
    assert last["epoch"] == 12 and last["arch"] == "resnet14"
    assert (folder / "log.txt").read_text().count("test top-1") == 12


@pytest.mark.slow
def test_resume_is_bit_exact(tmp_path, monkeypatch):
    common = ["--arch", "resnet8", "--epochs", "4", "--lr-decay-epochs", "2,3", "--seed", "5"]
    straight = _run(tmp_path, "straight", *common)

    # crash during epoch 3 (after its training pass, before its checkpoint)
    real_evaluate = engine.trainer.evaluate
    calls = {"n": 0}

    def crashing_evaluate(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated crash")
        return real_evaluate(*a, **k)

    monkeypatch.setattr(engine.trainer, "evaluate", crashing_evaluate)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, "crashed", *common)
    monkeypatch.setattr(engine.trainer, "evaluate", real_evaluate)
    assert load_file(str(tmp_path / "crashed" / "ckpt" / "last.pth"))["epoch"] == 2
    resumed = _run(tmp_path, "crashed", *common, "--resume")

    a = load_file(str(tmp_path / "straight" / "ckpt" / "last.pth"))
    b = load_file(str(tmp_path / "crashed" / "ckpt" / "last.pth"))
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    assert straight["last"] == resumed["last"] and straight["best"] == resumed["best"]
    assert "resuming from" in (tmp_path / "crashed" / "log.txt").read_text()


def _exit_code_and_message(capsys, fn):
    with pytest.raises(SystemExit) as e:
        fn()
    return e.value.code, capsys.readouterr().err


def test_missing_dataset_folder(tmp_path, capsys):
    code, err = _exit_code_and_message(capsys, lambda: train_teacher.main(
        ["--dataset", "cifar100", "--data-root", str(tmp_path / "data"), "--save-dir", str(tmp_path / "runs")]))
    assert code == 2 and "cifar-100-python" in err and str(tmp_path / "data") in err
    assert not (tmp_path / "runs").exists()


def test_unknown_architecture(tmp_path, capsys):
    code, err = _exit_code_and_message(capsys, lambda: _run(tmp_path, "x", "--arch", "resnet9000"))
    assert code == 2 and "unknown architecture 'resnet9000'" in err
    assert not (tmp_path / "x").exists()


def _snapshot(folder):
    """Every saved file's bytes (run.lock only says which process holds the folder: not a record)."""
    return {p: open(os.path.join(dp, p), "rb").read() for dp, _, files in os.walk(folder) for p in files
            if p != "run.lock"}


@pytest.mark.slow
def test_existing_run_is_never_overwritten(tmp_path, capsys):
    _run(tmp_path, "r", "--arch", "resnet8", "--epochs", "1")
    before = _snapshot(tmp_path / "r")
    code, err = _exit_code_and_message(capsys, lambda: _run(tmp_path, "r", "--arch", "resnet8", "--epochs", "1"))
    assert code == 2 and "already holds a run" in err
    assert _snapshot(tmp_path / "r") == before


@pytest.mark.slow
def test_truncated_or_malicious_resume_checkpoint(tmp_path, capsys):
    _run(tmp_path, "r", "--arch", "resnet8", "--epochs", "1")
    last = tmp_path / "r" / "ckpt" / "last.pth"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 3])
    before = _snapshot(tmp_path / "r")
    code, err = _exit_code_and_message(capsys, lambda: _run(tmp_path, "r", "--arch", "resnet8", "--epochs", "2",
                                                            "--resume"))
    assert code == 2 and "truncated" in err
    assert _snapshot(tmp_path / "r") == before

    class RunsCode:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path}/pwned",))

    torch.save({"model": {}, "epoch": 1, "x": RunsCode()}, str(last))
    before = _snapshot(tmp_path / "r")
    code, err = _exit_code_and_message(capsys, lambda: _run(tmp_path, "r", "--arch", "resnet8", "--epochs", "2",
                                                            "--resume"))
    assert code == 2 and "could run code" in err
    assert not (tmp_path / "pwned").exists() and _snapshot(tmp_path / "r") == before


@pytest.mark.slow
def test_resume_with_other_architecture_reports_keys(tmp_path, capsys):
    _run(tmp_path, "r", "--arch", "resnet8", "--epochs", "1")
    code, err = _exit_code_and_message(capsys, lambda: _run(tmp_path, "r", "--arch", "resnet14", "--epochs", "2",
                                                            "--resume"))
    assert code == 2 and "--arch resnet8 -> resnet14" in err and "--epochs 1 -> 2" in err   # the resume contract
    code, err = _exit_code_and_message(capsys, lambda: _run(tmp_path, "r", "--arch", "resnet14", "--epochs", "2",
                                                            "--resume", "--allow-changed-args"))
    assert code == 2 and "missing keys" in err and "layer1.1.conv1.weight" in err


@pytest.mark.slow
def test_nan_loss_stops_cleanly(tmp_path, capsys):
    _run(tmp_path, "r", "--arch", "resnet8", "--epochs", "1")
    before = _snapshot(tmp_path / "r" / "ckpt")
    code, err = _exit_code_and_message(capsys, lambda: _run(tmp_path, "r", "--arch", "resnet8", "--epochs", "2",
                                                            "--resume", "--lr", "1e30", "--allow-changed-args"))
    assert code == 2 and "non-finite loss in epoch 2" in err
    assert _snapshot(tmp_path / "r" / "ckpt") == before


@pytest.mark.slow
def test_cifar100_format_smoke_run(tmp_path, cifar_root):
    summary = train_teacher.main(["--dataset", "cifar100", "--data-root", cifar_root, "--arch", "resnet8",
                                  "--epochs", "1", "--batch-size", "32", "--save-dir", str(tmp_path),
                                  "--name", "c", "--no-progress"])
    assert summary["num_classes"] == 100 and 0.0 <= summary["last"]["top1"] <= 100.0
    assert (tmp_path / "c" / "ckpt" / "last.pth").is_file()
