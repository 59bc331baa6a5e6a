"""Published checkpoint layouts load strictly through one loader; bad files give one clear error."""
import os
import pickle

import pytest
import torch

import models
from core.checkpoint import CheckpointError, load_file, save_atomic
from models import weights


def _fresh(name, seed):
    torch.manual_seed(seed)
    return models.create(name, 100)


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _layouts(src):
    """Each external layout of the weights of `src` (a model)."""
    sd = src.state_dict()
    sskd_sd = dict(sd)
    if "classifier.0.weight" in sskd_sd:  # SSKD's MobileNetV2 names its classifier differently
        sskd_sd = {k.replace("classifier.0.", "classifier."): v for k, v in sd.items()}
    d = src.feat_dim
    head = {"proj_head.0.weight": torch.randn(d, d), "proj_head.0.bias": torch.randn(d),
            "proj_head.2.weight": torch.randn(d, d), "proj_head.2.bias": torch.randn(d)}
    return {
        "repdistiller": {"epoch": 240, "model": sd, "accuracy": 79.4, "optimizer": {"state": {}, "param_groups": []}},
        "mdistiller_teacher": {"model": sd},
        "mdistiller_distiller": {"epoch": 3, "model": {**{f"module.student.{k}": v for k, v in sd.items()},
                                                       **{f"module.teacher.{k}": torch.zeros(1) for k in ("x",)}}},
        "sskd_teacher": {"epoch": 240, "state_dict": sskd_sd, "acc": 79.6},
        "sskd_student": {"epoch": 200, "state_dict": {**{f"backbone.{k}": v for k, v in sskd_sd.items()}, **head},
                         "best_acc": 76.2},
        "dataparallel": {"model": {f"module.{k}": v for k, v in sd.items()}},
        "raw": sd,
    }


@pytest.mark.parametrize("arch", ["resnet8", "wrn_16_1", "MobileNetV2", "ShuffleV1"])
def test_external_layouts_load_strictly(tmp_path, arch):
    """Every layout is detected, its architecture recognised from the keys, and loaded exactly."""
    src = _fresh(arch, 1)
    for layout, obj in _layouts(src).items():
        path = str(tmp_path / f"{layout}.pth")
        torch.save(obj, path)
        assert not _same_weights(src, _fresh(arch, 2))
        loaded = weights.load(path)
        assert loaded.arch == arch and loaded.num_classes == 100, layout
        assert _same_weights(src, loaded.model), layout
        # the architecture may also be given
        assert _same_weights(src, weights.load(path, arch).model), layout


def _count_torch_load(monkeypatch):
    calls = []
    real = torch.load

    def counting(path, *a, **kw):
        calls.append(path)
        return real(path, *a, **kw)
    monkeypatch.setattr(torch, "load", counting)
    return calls


def test_each_load_reads_the_file_once(tmp_path, monkeypatch):
    src = _fresh("resnet8", 1)
    layouts = _layouts(src)
    for layout, obj in layouts.items():
        torch.save(obj, str(tmp_path / f"{layout}.pth"))
    calls = _count_torch_load(monkeypatch)
    for layout in layouts:
        path = str(tmp_path / f"{layout}.pth")
        weights.load(path)
        assert calls == [path], (layout, calls)
        calls.clear()


def test_wrong_architecture_reports_keys(tmp_path):
    path = str(tmp_path / "wrn.pth")
    torch.save({"model": _fresh("wrn_16_2", 0).state_dict()}, path)
    with pytest.raises(CheckpointError) as e:
        weights.load(path, "resnet20")
    msg = str(e.value)
    assert "missing keys" in msg and "layer1.0.conv1.weight" in msg
    assert "unexpected keys" in msg and "block1.layer.0.bn1.weight" in msg
    # same key names, other shapes
    torch.save({"model": _fresh("wrn_40_2", 0).state_dict()}, path)
    with pytest.raises(CheckpointError, match="mis-shaped keys"):
        weights.load(path, "wrn_40_1")


def test_truncated_checkpoint(tmp_path):
    path = str(tmp_path / "t.pth")
    torch.save({"model": _fresh("resnet8", 0).state_dict()}, path)
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or not a PyTorch checkpoint"):
        load_file(path)


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch pwned_marker",))


def test_pickle_that_would_run_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = str(tmp_path / "evil.pth")
    torch.save({"model": {}, "payload": _RunsCode()}, path)
    with pytest.raises(CheckpointError, match="could run code"):
        load_file(path)
    assert not (tmp_path / "pwned_marker").exists()
    # a plain (non-torch) pickle is refused too
    with open(path, "wb") as f:
        pickle.dump(_RunsCode(), f)
    with pytest.raises(CheckpointError):
        load_file(path)
    assert not (tmp_path / "pwned_marker").exists()


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_file(str(tmp_path / "nope.pth"))


def test_save_atomic_keeps_old_file_on_failure(tmp_path):
    path = str(tmp_path / "ckpt" / "last.pth")
    save_atomic({"epoch": 1}, path)

    class Unsaveable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        save_atomic({"epoch": 2, "bad": Unsaveable()}, path)
    assert load_file(path) == {"epoch": 1}
    assert os.listdir(tmp_path / "ckpt") == ["last.pth"]
