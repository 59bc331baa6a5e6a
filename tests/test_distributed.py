"""DDP with 2 CPU processes (gloo) equals one process with the same global batch."""
import json
import os
import re
import socket
import subprocess
import sys

import pytest
import torch

from core.checkpoint import load_file

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _epoch_loss(folder):
    text = (folder / "log.txt").read_text()
    return [float(x) for x in re.findall(r"\| ce ([0-9.]+)", text)]


def test_two_process_ddp_matches_single_process(tmp_path, cifar_root):
    # a BatchNorm-free model: per-process BN statistics would (legitimately) differ from one
    # process's full-batch statistics, everything else must agree
    common = ["train_teacher.py", "--dataset", "cifar100", "--data-root", cifar_root, "--arch", "vgg8_nobn",
              "--epochs", "2", "--batch-size", "40", "--lr", "0.01", "--save-every", "0", "--no-progress",
              "--device", "cpu", "--save-dir", str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, *common, "--name", "single"], cwd=ROOT, check=True, env=env,
                   capture_output=True, text=True)
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), *common, "--name", "ddp"],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "x 2 process(es)" in (tmp_path / "ddp" / "log.txt").read_text()
    single_loss, ddp_loss = _epoch_loss(tmp_path / "single"), _epoch_loss(tmp_path / "ddp")
    assert len(single_loss) == len(ddp_loss) == 2
    for a, b in zip(single_loss, ddp_loss):
        assert abs(a - b) <= 1e-4 * max(1.0, abs(a)), (single_loss, ddp_loss)
    a = load_file(str(tmp_path / "single" / "ckpt" / "last.pth"))["model"]
    b = load_file(str(tmp_path / "ddp" / "ckpt" / "last.pth"))["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


def _torchrun(args, env):
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True)


def test_two_process_feature_cache_equals_single_process(tmp_path, imagefolder_root):
    import numpy as np
    import models
    torch.manual_seed(0)
    teacher = tmp_path / "t.pth"
    torch.save({"arch": "resnet18", "model": models.create("resnet18").state_dict()}, str(teacher))
    common = ["cache_features.py", "--teacher", str(teacher), "--dataset", "imagenet", "--data-root", imagefolder_root,
              "--image-size", "32", "--workers", "0", "--batch-size", "5", "--device", "cpu", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, *common, "--out", str(tmp_path / "single")], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    ddp = _torchrun([*common, "--out", str(tmp_path / "ddp")], env)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    a, b = np.load(str(tmp_path / "single.npy")), np.load(str(tmp_path / "ddp.npy"))
    assert a.shape == b.shape == (24, 512)
    np.testing.assert_allclose(a.astype(np.float32), b.astype(np.float32), rtol=1e-3, atol=1e-3)
    single, ddp = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("single", "ddp"))
    # the same index but for what writing it cost (its wall time, on 1 and 2 processes)
    assert (single.pop("cost")["processes"], ddp.pop("cost")["processes"]) == (1, 2)
    assert ddp == single


def test_two_process_student_run(tmp_path, cifar_root):
    """train_student.py under torchrun: a method with its own trainable modules (ReviewKD's fusion
    modules with their BatchNorms, wrapped in DDP), CRD (memory banks kept identical across processes) and SimReg (its loss leaves
    the student's classifier without gradients)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    teacher = ["train_teacher.py", "--dataset", "cifar100", "--data-root", cifar_root, "--arch", "resnet8",
               "--epochs", "1", "--batch-size", "40", "--device", "cpu", "--no-progress", "--save-dir", str(tmp_path),
               "--name", "t"]
    subprocess.run([sys.executable, *teacher], cwd=ROOT, env=env, check=True, capture_output=True)
    for method in ("reviewkd", "crd", "simreg"):
        run = _torchrun(["train_student.py", "--dataset", "cifar100", "--data-root", cifar_root, "--method", method,
                         "--teacher", str(tmp_path / "t" / "ckpt" / "last.pth"), "--student", "resnet8",
                         "--epochs", "1", "--batch-size", "40", "--nce-k", "64", "--device", "cpu", "--no-progress",
                         "--save-dir", str(tmp_path), "--name", f"s_{method}"], env)
        assert run.returncode == 0, run.stderr[-3000:]
        assert "x 2 process(es)" in (tmp_path / f"s_{method}" / "log.txt").read_text()
        summary = json.loads((tmp_path / f"s_{method}" / "summary.json").read_text())
        assert summary["processes"] == 2 and summary["wall_seconds"] >= summary["train_seconds"] > 0
