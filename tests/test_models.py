"""The model zoo matches the reference structure recorded in the manifest."""
import json
import os

import pytest
import torch

import models

with open(os.path.join(os.path.dirname(__file__), "fixtures", "cifar_models_manifest.json")) as _f:
    _M = json.load(_f)
ALL = {**_M["archs"], **_M["sskd_only"], **_M["unregistered"]}


@pytest.mark.parametrize("name", sorted(ALL))
def test_matches_manifest(name):
    rec = ALL[name]
    torch.manual_seed(0)
    net = models.create(name, num_classes=100)
    assert [[k, list(v.shape)] for k, v in net.state_dict().items()] == rec["state_dict"]
    assert sum(p.numel() for p in net.parameters()) == rec["num_params"]
    x = torch.randn(2, 3, 32, 32)
    net.train()
    for preact in (False, True):
        feats, logits = net(x, is_feat=True, preact=preact)
        key = "preact_true" if preact else "preact_false"
        assert [list(f.shape) for f in feats] == rec["feat_shapes"][key]
        assert list(logits.shape) == rec["logits_shape"]
        assert feats[-1].shape[1] == net.feat_dim
    # the logits do not depend on the flags
    torch.testing.assert_close(net.eval()(x), net(x, is_feat=True, preact=True)[1])
    if "count" in rec["get_bn_before_relu"]:
        assert len(net.get_bn_before_relu()) == rec["get_bn_before_relu"]["count"]
    else:
        with pytest.raises(NotImplementedError) as e:
            net.get_bn_before_relu()
        assert str(e.value) in rec["get_bn_before_relu"]["error"]


def test_registry_covers_reference_names():
    for name in list(_M["archs"]) + list(_M["sskd_only"]):
        assert name in models.names()
    with pytest.raises(models.UnknownModelError, match="unknown architecture 'resnet7'"):
        models.create("resnet7")


def test_preact_semantics():
    """post = ReLU(pre) for the ResNets; WRN taps are raw sums and pre = BN(tap)."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    net = models.create("resnet20").train()
    post, _ = net(x, is_feat=True)
    pre, _ = net(x, is_feat=True, preact=True)
    for a, b in zip(post[1:4], pre[1:4]):
        torch.testing.assert_close(a, torch.relu(b))
    wrn = models.create("wrn_16_2").eval()
    post, _ = wrn(x, is_feat=True)
    pre, _ = wrn(x, is_feat=True, preact=True)
    assert (post[1] < 0).any()
    torch.testing.assert_close(pre[3], wrn.bn1(post[3]))


def test_low_lr_archs():
    assert models.default_lr("MobileNetV2") == 0.01
    assert models.default_lr("ShuffleV2") == 0.01
    assert models.default_lr("resnet32x4") == 0.05
