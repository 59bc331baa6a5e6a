"""SimReg end to end on a tiny generated ImageFolder: training with a live teacher, feature
caching and cached training, k-NN and linear evaluation, and bad inputs."""
import json
import os

import numpy as np
import pytest
import torch

import cache_features
import eval_knn
import eval_linear
import models
import train_student
from conftest import write_imagefolder
from datasets import imagenet as imagenet_data
from core.checkpoint import load_file

SMALL = ["--dataset", "imagenet", "--image-size", "32", "--workers", "0", "--no-progress"]


@pytest.fixture
def teacher_ckpt(tmp_path):
    """A teacher in our own checkpoint layout (a ResNet-18 backbone with random weights)."""
    torch.manual_seed(0)
    path = tmp_path / "teacher.pth"
    torch.save({"arch": "resnet18", "model": models.create("resnet18").state_dict(), "epoch": 0}, str(path))
    return str(path)


def _student(tmp_path, root, teacher_args, name, *extra):
    return train_student.main(SMALL + ["--data-root", root, "--method", "simreg", "--student", "resnet18",
                                       "--epochs", "2", "--batch-size", "8", "--save-dir", str(tmp_path / "runs"),
                                       "--name", name, *teacher_args, *extra])


@pytest.mark.slow
def test_simreg_live_teacher_then_knn_and_linear(tmp_path, imagefolder_root, teacher_ckpt):
    summary = _student(tmp_path, imagefolder_root, ["--teacher", teacher_ckpt], "live")
    assert summary["method"] == "simreg" and np.isfinite(summary["last"]["train_loss"])
    ckpt = load_file(str(tmp_path / "runs" / "live" / "ckpt" / "last.pth"))
    assert "predict_q.7.weight" in ckpt["extra"]["method"] and ckpt["extra"]["method"]["predict_q.7.weight"].shape == (512, 1024)
    assert not any(k.startswith("fc.") for k in ckpt["model"])   # the backbone only (head dropped at eval)
    assert ckpt["scheduler"]["kind"] == "cosine"
    path = str(tmp_path / "runs" / "live" / "ckpt" / "last.pth")
    knn = eval_knn.main(["--checkpoint", path, "--dataset", "imagenet", "--data-root", imagefolder_root,
                         "--image-size", "32", "--workers", "0", "--k", "1,5", "--backend", "torch"])
    assert set(knn) == {"1", "5"} and all(0 <= v <= 100 for v in knn.values())
    run = tmp_path / "runs" / "live"
    assert (run / "knn" / "nn_1_acc_epoch_002.txt").is_file()
    lin = eval_linear.main(["--checkpoint", path, "--dataset", "imagenet", "--data-root", imagefolder_root,
                            "--image-size", "32", "--workers", "0", "--epochs", "3", "--use-cache", "--batch-size", "8",
                            "--no-progress", "--eval-every", "1"])
    assert 0 <= lin["last"]["top1"] <= 100 and lin["best"]["top1"] >= lin["last"]["top1"]
    merged = json.loads((run / "summary.json").read_text())
    assert merged["knn"]["top1"]["1"] == knn["1"] and merged["linear"]["last"] == lin["last"]
    caches = [n for n in os.listdir(run / "linear") if n.startswith("train_feats_") and n.endswith(".json")]
    assert len(caches) == 1
    # a linear probe without the cache (augmented images through the backbone) also runs
    lin2 = eval_linear.main(["--checkpoint", path, "--dataset", "imagenet", "--data-root", imagefolder_root,
                             "--image-size", "32", "--workers", "0", "--epochs", "1", "--batch-size", "8",
                             "--no-progress", "--save", str(tmp_path / "lin_nocache")])
    assert 0 <= lin2["last"]["top1"] <= 100


@pytest.mark.slow
def test_linear_cache_is_keyed_to_the_checkpoint(tmp_path, imagefolder_root, teacher_ckpt):
    common = ["--dataset", "imagenet", "--data-root", imagefolder_root, "--image-size", "32", "--workers", "0",
              "--epochs", "1", "--use-cache", "--batch-size", "8", "--no-progress", "--save", str(tmp_path / "lin")]
    eval_linear.main(["--checkpoint", teacher_ckpt, *common])
    other = tmp_path / "other.pth"
    torch.manual_seed(1)
    torch.save({"arch": "resnet18", "model": models.create("resnet18").state_dict()}, str(other))
    eval_linear.main(["--checkpoint", str(other), *common])
    caches = sorted(n for n in os.listdir(tmp_path / "lin") if n.endswith(".json") and n.startswith("train_feats_"))
    assert len(caches) == 2   # one per checkpoint: the second never read the first's features
    metas = [json.loads((tmp_path / "lin" / n).read_text())["source"]["checkpoint_sha256"] for n in caches]
    assert metas[0] != metas[1]


@pytest.mark.slow
def test_cache_features_and_cached_training(tmp_path, imagefolder_root, teacher_ckpt):
    prefix = str(tmp_path / "cache" / "teacher_train")
    cache_features.main(["--teacher", teacher_ckpt, "--dataset", "imagenet", "--data-root", imagefolder_root,
                         "--image-size", "32", "--workers", "0", "--batch-size", "5", "--out", prefix, "--no-progress"])
    meta = json.loads(open(prefix + ".json").read())
    feats = np.load(prefix + ".npy", mmap_mode="r")
    assert feats.dtype == np.float16 and feats.shape == (24, 512) and meta["num_samples"] == 24
    assert meta["files"][0].endswith("n00000000_train_0.JPEG") and meta["crop"] == "resize37_center32"
    assert meta["source"]["kind"] == "teacher" and len(meta["source"]["sha256"]) == 64
    # the cached rows are the teacher's centre-crop features
    teacher = models.create("resnet18")
    teacher.load_state_dict(load_file(teacher_ckpt)["model"])
    ds = imagenet_data.build_imagefolder(imagefolder_root, "train", imagenet_data.eval_transform(32))
    x, _, _ = ds[3]
    with torch.no_grad():
        want = teacher.eval()(x[None])[0]
    torch.testing.assert_close(torch.from_numpy(np.asarray(feats[3], dtype=np.float32)), want, rtol=2e-3, atol=2e-3)
    summary = _student(tmp_path, imagefolder_root, ["--teacher-feats", prefix], "cached")
    assert summary["teacher_arch"].startswith("cached") and np.isfinite(summary["last"]["train_loss"])


def _fails(capsys, fn):
    with pytest.raises(SystemExit) as e:
        fn()
    return e.value.code, capsys.readouterr().err


def test_imagefolder_without_val(tmp_path, teacher_ckpt, capsys):
    root = write_imagefolder(str(tmp_path / "noval"), with_val=False)
    code, err = _fails(capsys, lambda: _student(tmp_path, root, ["--teacher", teacher_ckpt], "x"))
    assert code == 2 and "val" in err and "ImageFolder" in err


def test_unknown_teacher_format(tmp_path, imagefolder_root, capsys):
    path = tmp_path / "weird.pth"
    torch.save({"encoder.weight": torch.zeros(3)}, str(path))
    code, err = _fails(capsys, lambda: _student(tmp_path, imagefolder_root, ["--teacher", str(path)], "x"))
    assert code == 2 and "unknown teacher checkpoint format" in err


@pytest.mark.slow
def test_cache_from_another_dataset(tmp_path, imagefolder_root, teacher_ckpt, capsys):
    prefix = str(tmp_path / "cache" / "t")
    cache_features.main(["--teacher", teacher_ckpt, "--dataset", "imagenet", "--data-root", imagefolder_root,
                         "--image-size", "32", "--workers", "0", "--out", prefix, "--no-progress"])
    other = write_imagefolder(str(tmp_path / "other"), classes=2)
    code, err = _fails(capsys, lambda: _student(tmp_path, other, ["--teacher-feats", prefix], "x"))
    assert code == 2 and "feature cache" in err and "written for imagenet/train (24 samples)" in err


def test_view_pairing():
    from PIL import Image
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 48, 3), dtype=np.uint8))
    torch.manual_seed(0)
    student, teacher = imagenet_data.simreg_views("weak_weak", True, 32)(img)
    assert student.shape == (3, 32, 32) and teacher is None          # one shared view
    student, teacher = imagenet_data.simreg_views("weak_strong", False, 32)(img)
    assert teacher.shape == student.shape and not torch.equal(student, teacher)
    for _ in range(10):   # the strong pipeline's PIL blur runs (the reference's crashes)
        imagenet_data.simreg_views("strong_strong", False, 32)(img)


@pytest.mark.slow
def test_strong_pairs_train_with_gpu_decode(tmp_path, imagefolder_root, teacher_ckpt):
    """--decode gpu with separate weak (teacher) and strong (student) views trains SimReg as the PIL
    path does: the same draws, so the first epoch's losses agree up to the kernels' rounding. (One
    epoch: later the two trajectories drift apart chaotically, by 0.2 % to 1.9 % at epoch 2
    depending on the thread count.)"""
    runs = {decode: _student(tmp_path, imagefolder_root, ["--teacher", teacher_ckpt], f"strong_{decode}",
                             "--aug", "weak_strong", "--no-single-aug", "--decode", decode, "--epochs", "1")
            for decode in ("cpu", "gpu")}
    cpu, gpu = runs["cpu"]["last"]["train_loss"], runs["gpu"]["last"]["train_loss"]
    # measured 0.10 % (one thread) and 0.16 % (two) apart; on the GPU path one shared view instead of
    # two is 0.54 % off the PIL run, weak views instead of strong ones 0.39 %
    assert np.isfinite(gpu) and abs(gpu - cpu) < 0.0025 * abs(cpu), (cpu, gpu)
