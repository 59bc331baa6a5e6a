"""ImageNet backbones and the teacher-weight loaders (a small synthetic checkpoint per format)."""
import pytest
import torch
import torchvision

import models
from core.checkpoint import CheckpointError
from models.imagenet import same_padding
from models.weights import FORMATS, CheckpointFile, _flat_simclr_to_torchvision, detect_format, load


def load_imagenet_teacher(path, fmt="auto"):
    loaded = load(path, fmt=fmt, side="teacher")
    return loaded.model, loaded.format


def detect_teacher_format(obj):
    return detect_format(CheckpointFile(obj)).name


@pytest.mark.parametrize("name,dim,params", [("resnet18", 512, 11_176_512), ("resnet50", 2048, 23_508_032),
                                             ("mobilenet_v2", 1280, 2_223_872), ("byol_resnet50", 2048, 23_508_032),
                                             ("resnet50x4", 8192, 375_378_176)])
def test_backbone_dims_and_params(name, dim, params):
    with torch.device("meta"):
        net = models.create(name)
    assert net.feat_dim == dim and sum(p.numel() for p in net.parameters()) == params


def test_backbones_keep_torchvision_keys():
    tv = torchvision.models.resnet50().state_dict()
    ours = models.create("resnet50").state_dict()
    assert list(ours) == [k for k in tv if not k.startswith("fc.")]
    assert list(models.create("byol_resnet50").state_dict()) == list(ours)
    tv_mb = torchvision.models.mobilenet_v2().state_dict()
    assert list(models.create("mobilenet_v2").state_dict()) == [k for k in tv_mb if not k.startswith("classifier.")]


def test_features_equal_torchvision_pooled_features():
    torch.manual_seed(0)
    tv = torchvision.models.resnet18().eval()
    ours = models.create("resnet18").eval()
    ours.load_state_dict({k: v for k, v in tv.state_dict().items() if not k.startswith("fc.")})
    x = torch.randn(2, 3, 64, 64)
    tv.fc = torch.nn.Identity()
    torch.testing.assert_close(ours(x), tv(x))
    feats, out = ours(x, is_feat=True)
    assert feats[-1] is out


def test_same_padding_rule():
    assert same_padding(224, 7, 2) == (2, 3)      # stem
    assert same_padding(112, 3, 2) == (0, 1)      # max-pool
    assert same_padding(56, 3, 1) == (1, 1)
    assert same_padding(56, 1, 1) == (0, 0)
    net = models.create("byol_resnet50").eval()
    assert net(torch.randn(1, 3, 64, 64)).shape == (1, 2048)


def _r50_state(seed=0):
    torch.manual_seed(seed)
    return models.create("resnet50").state_dict()


def _layouts(sd):
    fc = {"fc.weight": torch.randn(1000, 2048), "fc.bias": torch.randn(1000)}
    no_counters = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    return {
        "moco": {"epoch": 800, "arch": "resnet50", "state_dict": {
            **{f"module.encoder_q.{k}": v for k, v in sd.items()},
            "module.encoder_q.fc.0.weight": torch.randn(4, 2048), "module.encoder_q.fc.2.weight": torch.randn(2, 4)}},
        "swav": {**{f"module.{k}": v for k, v in sd.items()}, "module.projection_head.0.weight": torch.randn(4, 2048),
                 "module.prototypes.weight": torch.randn(3, 4)},
        "byol": {**no_counters, **fc},
        "byol_ssl_transfer": {"state_dict": {**sd, **fc}},
        "supervised": {**sd, **fc},
    }


def test_teacher_formats_load_strictly(tmp_path):
    sd = _r50_state()
    for fmt, obj in _layouts(sd).items():
        path = str(tmp_path / f"{fmt}.pth")
        torch.save(obj, path)
        auto_ok = fmt in ("moco", "swav")
        net, spec = load_imagenet_teacher(path, "auto" if auto_ok else fmt)
        assert spec.name == fmt and spec.arch == FORMATS[fmt].arch
        got = net.state_dict()
        for k, v in sd.items():
            if not k.endswith("num_batches_tracked"):
                assert torch.equal(got[k], v), (fmt, k)
    assert FORMATS["swav"].input_norm[1] == (0.228, 0.224, 0.225)
    assert FORMATS["simclr_x4"].input_norm is None   # raw [0, 1] input
    assert FORMATS["byol"].arch == "byol_resnet50"


def _to_flat(sd):
    """torchvision-style ResNet-50 names -> SimReg's flat TF names (the inverse rule, written out)."""
    order = []
    for stage, n in enumerate((3, 4, 6, 3), 1):
        for b in range(n):
            if b == 0:
                order.append((f"layer{stage}.0.downsample.0", f"layer{stage}.0.downsample.1"))
            order += [(f"layer{stage}.{b}.conv{i}", f"layer{stage}.{b}.bn{i}") for i in (1, 2, 3)]
    names = {"conv1": "conv2d", "bn1": "batch_normalization"}
    for i, (conv, bn) in enumerate(order, 1):
        names[conv], names[bn] = f"conv2d_{i}", f"batch_normalization_{i}"
    return {f"{names[k.rpartition('.')[0]]}.{k.rpartition('.')[2]}": v for k, v in sd.items()}


def test_flat_simclr_mapping():
    """The flat TF naming maps onto the torchvision-style layout (values checked at width 1, where
    the structure is the same; keys and shapes at width 4 on the meta device)."""
    sd = _r50_state(1)
    flat = _to_flat(sd)
    assert "conv2d_52.weight" in flat and "conv2d_53.weight" not in flat
    mapped = _flat_simclr_to_torchvision({**flat, "fc.weight": torch.zeros(1), "fc.bias": torch.zeros(1)})
    assert mapped.keys() == sd.keys() and all(torch.equal(mapped[k], sd[k]) for k in sd)
    assert detect_teacher_format({"state_dict": flat}) == "simclr_x4_flat"
    with torch.device("meta"):
        x4 = models.create("resnet50x4").state_dict()
    mapped = _flat_simclr_to_torchvision(_to_flat(x4))
    assert {k: v.shape for k, v in mapped.items()} == {k: v.shape for k, v in x4.items()}
    assert x4["conv1.weight"].shape == (256, 3, 7, 7) and x4["layer4.2.bn3.weight"].shape == (8192,)


def test_unknown_and_ambiguous_formats(tmp_path):
    path = str(tmp_path / "x.pth")
    torch.save({"encoder.weight": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="unknown teacher checkpoint format"):
        load_imagenet_teacher(path)
    torch.save(_r50_state(), path)
    with pytest.raises(CheckpointError, match="--teacher-format"):
        load_imagenet_teacher(path)
    torch.save({"state_dict": {f"module.encoder_q.{k}": v for k, v in _r50_state().items()
                               if not k.startswith("layer4.2")}}, path)
    with pytest.raises(CheckpointError, match="missing keys"):
        load_imagenet_teacher(path)


def test_simclr_x4_converter_layout_is_recognised():
    sd = {"conv1.weight": torch.zeros(256, 3, 7, 7), "layer4.0.conv1.weight": torch.zeros(1),
          "fc.weight": torch.zeros(1000, 8192), "fc.bias": torch.zeros(1000)}
    assert detect_teacher_format({"state_dict": sd}) == "simclr_x4"
    assert set(FORMATS["simclr_x4"].keys(CheckpointFile({"state_dict": sd}), None)) == {"conv1.weight",
                                                                                        "layer4.0.conv1.weight"}


def test_imagenet100_subset():
    """SimReg's subset: the classes at the seed-1234 indices of the sorted 1000, relabelled 0..99."""
    import numpy as np
    from datasets.imagenet import keep_classes
    from datasets.imagenet_constants import IMAGENET100_INDICES

    class FakeFolder:
        root = "/x"
        classes = [f"n{i:08d}" for i in range(1000)]
        class_to_idx = {c: i for i, c in enumerate(classes)}
        samples = [(f"/x/{c}/a.JPEG", i) for i, c in enumerate(classes)] * 2
        targets = [y for _, y in samples]

    np.random.seed(1234)
    assert sorted(np.random.permutation(1000)[:100].tolist()) == list(IMAGENET100_INDICES)
    ds = keep_classes(FakeFolder(), IMAGENET100_INDICES)
    assert len(ds.classes) == 100 and len(ds.samples) == 200 and ds.targets == [y for _, y in ds.samples]
    assert ds.classes[0] == "n00000021" and ds.class_to_idx["n00000990"] == 99
    assert all(ds.classes[y] in p for p, y in ds.samples)


def test_registry_names_every_backbone():
    """models.IMAGENET_BACKBONES (the names the registry builds lazily) and models/imagenet.py's
    BACKBONES (the builders) name the same networks."""
    import models
    from models.imagenet import BACKBONES
    assert set(models.IMAGENET_BACKBONES) == set(BACKBONES)
    assert type(models.create("resnet18")).__name__ == "ResNetBackbone"
