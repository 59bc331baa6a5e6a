import os
import pickle
import sys

import numpy as np
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

torch.set_num_threads(min(2, torch.get_num_threads()))


def write_cifar100_folder(root, n_train=200, n_test=100, seed=0):
    """A small CIFAR-100 folder in torchvision's exact on-disk format (latin1-compatible pickles
    with 'data' N x 3072 uint8, 'fine_labels', 'coarse_labels', 'filenames')."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, "cifar-100-python")
    os.makedirs(folder, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        labels = (np.arange(n) % 100).tolist()
        # class-dependent colour so that the data are learnable at all
        base = (np.array(labels)[:, None] * 2.5).astype(np.uint8)
        data = np.clip(base + rng.integers(0, 40, size=(n, 3072)), 0, 255).astype(np.uint8)
        entry = {"filenames": [f"img_{i}.png" for i in range(n)], "batch_label": f"{split} batch",
                 "fine_labels": labels, "coarse_labels": [l // 5 for l in labels], "data": data}
        with open(os.path.join(folder, split), "wb") as f:
            pickle.dump(entry, f, protocol=2)
    with open(os.path.join(folder, "meta"), "wb") as f:
        pickle.dump({"fine_label_names": [f"c{i}" for i in range(100)],
                     "coarse_label_names": [f"s{i}" for i in range(20)]}, f, protocol=2)
    return root


@pytest.fixture
def cifar_root(tmp_path):
    return write_cifar100_folder(str(tmp_path / "data"))


@pytest.fixture(scope="session")
def manifest():
    import json
    with open(os.path.join(FIXTURES, "cifar_models_manifest.json")) as f:
        return json.load(f)


@pytest.fixture(scope="session")
def digits_teacher(tmp_path_factory):
    """A digits teacher trained once per test session through train_teacher.py (resnet14, 12 epochs)."""
    import train_teacher
    root = tmp_path_factory.mktemp("teacher")
    summary = train_teacher.main(["--dataset", "digits", "--arch", "resnet14", "--epochs", "12",
                                  "--lr-decay-epochs", "8,10", "--save-dir", str(root), "--name", "t",
                                  "--no-progress", "--save-every", "0"])
    return {"summary": summary, "folder": root / "t", "ckpt": str(root / "t" / "ckpt" / "last.pth")}


def write_imagefolder(root, classes=3, train_per_class=8, val_per_class=4, size=40, with_val=True, seed=0):
    """A tiny ImageNet-style folder: <root>/{train,val}/<wnid>/<name>.JPEG, real JPEG files."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    splits = [("train", train_per_class)] + ([("val", val_per_class)] if with_val else [])
    for split, n in splits:
        for c in range(classes):
            folder = os.path.join(root, split, f"n{c:08d}")
            os.makedirs(folder, exist_ok=True)
            for i in range(n):
                base = np.array([(c * 80) % 256, (c * 150) % 256, (c * 40 + 60) % 256], dtype=np.int64)
                pixels = np.clip(base + rng.integers(-40, 40, size=(size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(os.path.join(folder, f"n{c:08d}_{split}_{i}.JPEG"), quality=90)
    return root


@pytest.fixture
def imagefolder_root(tmp_path):
    return write_imagefolder(str(tmp_path / "imagenet"))
