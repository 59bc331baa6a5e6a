"""The checkpoints people have load (numpy scalars, an `opt` argparse.Namespace, files written by
numpy 1 or 2), and a file whose unpickling would run code is refused, naming the global, and runs
nothing: checkpoints, CIFAR-100 pickles and feature caches alike."""
import argparse
import os
import pickle

import numpy as np
import pytest
import torch

import models
from conftest import write_cifar100_folder
from core.checkpoint import CheckpointError, load_file
from datasets import cifar
from datasets.errors import DatasetError
from datasets.feature_cache import CacheMismatchError, FeatureCache
from models import weights


def _save_as_numpy1(obj, path):
    """torch.save as a numpy < 2 installation writes it (numpy.core.* globals), in the legacy format."""
    torch.save(obj, path, _use_new_zipfile_serialization=False)
    raw = open(path, "rb").read()
    open(path, "wb").write(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))


def _released_layouts(sd):
    opt = argparse.Namespace(model="resnet8", learning_rate=0.05, lr_decay_epochs=[150, 180, 210], dataset="cifar100")
    return {
        "repdistiller_ckpt_epoch": {"epoch": 240, "model": sd, "accuracy": np.float64(79.42),
                                    "optimizer": {"state": {}, "param_groups": []}},
        "repdistiller_last": {"opt": opt, "model": sd, "accuracy": np.float32(79.1)},
        "mdistiller": {"epoch": 240, "model": sd, "best_acc": np.float64(79.4), "dtype": np.dtype("float32")},
        "sskd_teacher": {"epoch": 240, "state_dict": sd, "acc": np.float64(79.6), "stats": np.arange(3)},
    }


@pytest.mark.parametrize("writer", [torch.save, _save_as_numpy1], ids=["numpy2", "numpy1"])
def test_released_cifar_layouts_with_numpy_scalars_and_namespace(tmp_path, writer):
    torch.manual_seed(0)
    src = models.create("resnet8", 100)
    for name, obj in _released_layouts(src.state_dict()).items():
        path = str(tmp_path / f"{name}.pth")
        writer(obj, path)
        loaded = weights.load(path)
        assert loaded.arch == "resnet8", name
        assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), loaded.model.state_dict().values()))
    assert isinstance(load_file(str(tmp_path / "repdistiller_last.pth"))["opt"], argparse.Namespace)


def test_simreg_student_checkpoint_with_opt_namespace(tmp_path):
    torch.manual_seed(0)
    student = models.create("resnet18", 0)
    sd = {**{f"encoder_q.module.{k}": v for k, v in student.state_dict().items()},
          "predict_q.module.0.weight": torch.randn(4, 512), "encoder_t.module.conv1.weight": torch.randn(1)}
    opt = argparse.Namespace(arch="resnet18", teacher_arch="resnet50", mlp_xent="mlp", lr=0.05)
    path = str(tmp_path / "ckpt_epoch_130.pth")
    _save_as_numpy1({"epoch": 130, "state_dict": sd, "opt": opt, "optimizer": {"state": {}, "param_groups": []},
                     "loss": np.float64(0.12)}, path)
    loaded = weights.load(path, "resnet18")
    assert loaded.format.name == "simreg"
    assert all(torch.equal(a, b) for a, b in zip(student.state_dict().values(), loaded.model.state_dict().values()))


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_that_would_run_code_is_refused_naming_the_global(tmp_path):
    marker = tmp_path / "pwned"
    for i, obj in enumerate(({"model": {}, "x": RunsCode(marker)}, {"opt": argparse.Namespace(hook=RunsCode(marker))})):
        path = str(tmp_path / f"evil{i}.pth")
        torch.save(obj, path)
        with pytest.raises(CheckpointError, match="posix.system"):
            load_file(path)
    torch.save({"x": os.path.join}, str(tmp_path / "module.pth"))   # a global outside the allowlist
    with pytest.raises(CheckpointError, match="not a tensor, a plain container or one of the allowlisted"):
        load_file(str(tmp_path / "module.pth"))
    assert not marker.exists()


def test_cifar_pickle_that_would_run_code_is_refused(tmp_path):
    root = write_cifar100_folder(str(tmp_path / "data"), n_train=10, n_test=5)
    marker = tmp_path / "pwned"
    for payload in (RunsCode(marker), np.array([RunsCode(marker)], dtype=object)):   # also inside an object array
        with open(os.path.join(root, "cifar-100-python", "train"), "wb") as f:
            pickle.dump({"data": payload, "fine_labels": [0]}, f, protocol=2)
        with pytest.raises(DatasetError, match="posix.system"):
            cifar.load_split(root, cifar.CIFAR100, train=True)
    assert not marker.exists()


def test_real_cifar_layout_reads(tmp_path):
    """The python-2 era files hold `data` as an ndarray in a protocol-2 pickle: that is what must read."""
    root = write_cifar100_folder(str(tmp_path / "data"), n_train=10, n_test=5)
    images, labels = cifar.load_split(root, cifar.CIFAR100, train=True)
    assert images.shape == (10, 3, 32, 32) and images.dtype == torch.uint8 and labels.tolist() == list(range(10))


def test_feature_cache_holding_objects_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    prefix = str(tmp_path / "feats")
    np.save(prefix + ".npy", np.array([RunsCode(marker)], dtype=object), allow_pickle=True)
    with open(prefix + ".json", "w") as f:
        f.write('{"format": "kdzoo-feature-cache-1", "num_samples": 1, "dim": 1}')
    with pytest.raises(CacheMismatchError, match="not a .npy array"):
        FeatureCache(prefix)
    with open(prefix + ".json", "w") as f:
        f.write('{"format": "kdzoo-feature-cache-1", "num_samples": ')
    with pytest.raises(CacheMismatchError, match="not a JSON index"):
        FeatureCache(prefix)
    assert not marker.exists()
