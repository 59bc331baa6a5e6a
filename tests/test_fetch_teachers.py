"""scripts/fetch_teachers.py on a cifar_teachers.tar built here in mdistiller's layout (RepDistiller
files) and an SSKD teacher folder: only the teachers are unpacked (nothing outside --dest), each
gets a teacher.json with its sha256, the accuracy the file records and the top-1 measured on the
CIFAR-100 test set (equal to a plain evaluation loop, flagged when off the paper); a second run
measures nothing again; the SSKD launcher then uses the files instead of training teachers."""
import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import torch

import models

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "fetch_teachers.py")
CIFAR100_NORM = ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761))


def _top1(state_dict, arch, cifar_root):
    """Plain top-1 of the weights on the CIFAR-100 test pickle."""
    with open(os.path.join(cifar_root, "cifar-100-python", "test"), "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    x = torch.tensor(entry["data"], dtype=torch.float32).reshape(-1, 3, 32, 32) / 255
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in CIFAR100_NORM)
    net = models.create(arch, 100)
    net.load_state_dict(state_dict)
    with torch.no_grad():
        logits = net.eval()((x - mean) / std)
    return 100.0 * (logits.argmax(1) == torch.tensor(entry["fine_labels"])).float().mean().item()


def _blob(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


@pytest.fixture
def published(tmp_path):
    torch.manual_seed(0)
    weights = {"resnet56": models.create("resnet56", 100).state_dict(),
               "resnet20": models.create("resnet20", 100).state_dict()}
    tar_path = tmp_path / "cifar_teachers.tar"
    with tarfile.open(tar_path, "w") as tar:
        for name, data in (("cifar_teachers/resnet56_vanilla/ckpt_epoch_240.pth",
                            _blob({"epoch": 240, "model": weights["resnet56"], "accuracy": torch.tensor(72.34)})),
                           ("cifar_teachers/resnet56_vanilla/log.txt", b"not a teacher"),
                           ("../escaped.pth", b"outside")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    sskd = tmp_path / "sskd" / "teacher_resnet20_seed0" / "ckpt"
    sskd.mkdir(parents=True)
    torch.save({"epoch": 231, "state_dict": weights["resnet20"], "acc": 69.06}, sskd / "best.pth")
    return {"tar": str(tar_path), "sskd": str(tmp_path / "sskd"), "weights": weights}


def test_fetch_records_hashes_and_measured_accuracy(tmp_path, published, cifar_root):
    dest = tmp_path / "teachers"
    command = [sys.executable, SCRIPT, "--tar", published["tar"], "--sskd", published["sskd"], "--dest", str(dest),
               "--data-root", cifar_root, "--device", "cpu"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    files = sorted(os.path.relpath(os.path.join(d, f), dest) for d, _, fs in os.walk(dest) for f in fs)
    assert files == ["resnet56_vanilla/ckpt_epoch_240.pth", "resnet56_vanilla/teacher.json",
                     "teacher_resnet20_seed0/ckpt/best.pth", "teacher_resnet20_seed0/ckpt/teacher.json"]
    assert not (tmp_path / "escaped.pth").exists()
    for rel, arch, stored, paper in (("resnet56_vanilla/ckpt_epoch_240.pth", "resnet56", 72.34, 73.44),
                                     ("teacher_resnet20_seed0/ckpt/best.pth", "resnet20", 69.06, None)):
        path = dest / rel
        rec = json.loads((path.parent / "teacher.json").read_text())
        assert rec["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest() and rec["arch"] == arch
        assert rec["stored_accuracy"] == pytest.approx(stored)
        assert rec["measured"]["top1"] == pytest.approx(_top1(published["weights"][arch], arch, cifar_root), abs=0.01)
        assert rec["paper_top1"] == paper and rec["off_paper"] is (paper is not None)
    assert "more than 1 point off the paper" in proc.stdout and f"PRETRAINED_TEACHERS={dest}" in proc.stdout

    before = {p: os.stat(dest / p).st_mtime_ns for p in files}
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "unpacked 0 new" in again.stdout
    assert {p: os.stat(dest / p).st_mtime_ns for p in files} == before   # nothing measured or written again

    # the launcher takes the published teachers and trains none
    out = subprocess.run(["bash", os.path.join(ROOT, "scripts", "sskd_table_same_arch.sh")], capture_output=True,
                         text=True, check=True, env={**os.environ, "DRY_RUN": "1", "PY": sys.executable,
                                                     "PRETRAINED_TEACHERS": str(dest), "ROWS": "KD",
                                                     "PAIRS": "resnet56:resnet20 resnet20:resnet8"}).stdout
    lines = out.splitlines()
    assert not any("train_teacher.py" in line for line in lines)
    assert f"--teacher {dest}/resnet56_vanilla/ckpt_epoch_240.pth" in out
    assert f"--teacher {dest}/teacher_resnet20_seed0/ckpt/best.pth" in out


def test_fetch_refuses_a_tar_without_teachers(tmp_path):
    bad = tmp_path / "other.tar"
    with tarfile.open(bad, "w") as tar:
        info = tarfile.TarInfo("readme.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    proc = subprocess.run([sys.executable, SCRIPT, "--tar", str(bad), "--dest", str(tmp_path / "t")],
                          capture_output=True, text=True)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "no <arch>_vanilla/ckpt_epoch_240.pth" in lines[0]
    np.testing.assert_equal(os.listdir(tmp_path / "t"), [])
