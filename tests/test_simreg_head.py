"""SimReg heads and loss against the reference (fixture 'simreg' section)."""
import re

import pytest
import torch

from losses.simreg import simreg_loss
from models.heads import prediction_head
from reference_checks import assert_grad, assert_loss, assert_param_grads, load_reference

REF = load_reference()["simreg"]


def _layout(text):
    """A module's printed layout, the same on every torch >= 2.1: torch 2.14 added BatchNorm's
    `bias` flag to its print-out (older versions omit it), so the default `bias=True` is dropped."""
    return re.sub(r"\s+", " ", text).replace("affine=True, bias=True,", "affine=True,")


@pytest.mark.parametrize("case", ["mlp4", "mlp2", "mlp4_mse_nonorm"])
def test_loss_and_gradients(case):
    rec = REF["cases"][case]
    head = prediction_head(48, 80, layers=rec["n_mlp_layers"])
    head.load_state_dict(rec["predict_q_state"], strict=True)
    head = head.double().train()
    assert _layout(repr(head)) == _layout(rec["predict_q_repr"])
    q = REF["inputs"]["feat_q"].double().requires_grad_()
    pred = head(q)
    torch.testing.assert_close(pred.float(), rec["pred_before_norm"], rtol=1e-5, atol=1e-6)
    loss = simreg_loss(pred, REF["inputs"]["feat_t"].double())   # --mse_nonorm is the same loss
    assert_loss(loss, rec["loss"])
    loss.backward()
    assert_grad(q.grad, rec["grad_inputs"]["feat_q"])
    if rec["grad_params"] is not None:
        assert_param_grads(head, rec["grad_params"]["predict_q"])
    for k, v in rec["bn_buffers_after_forward"].items():
        torch.testing.assert_close(head.state_dict()[k].double(), v.double(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(REF["layouts"]))
def test_imagenet_layouts(name):
    rec = REF["layouts"][name]
    d = {"resnet18": 512, "resnet50": 2048, "mobilenet": 1280}[name.split("_to_")[0]]
    head = prediction_head(d, 2048, layers=int(name[-1]))
    assert {k: tuple(v.shape) for k, v in head.state_dict().items()} == {k: tuple(v) for k, v in rec["param_shapes"].items()}


def test_head_parameter_counts():
    """The reference head layouts and their parameter counts."""
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(prediction_head(512, 2048, 4)) == 3_678_720
    assert count(prediction_head(1280, 2048, 4)) == 15_091_968
    assert count(prediction_head(2048, 8192, 4)) == 58_755_072
    assert count(prediction_head(512, 2048, 2)) == 2_624_512
    assert count(prediction_head(2048, 8192, 1)) == 16_789_504


def test_unnormalised_loss_is_real():
    q, t = torch.randn(4, 8), torch.randn(4, 8)
    assert simreg_loss(q, t) == pytest.approx(simreg_loss(q * 3, t * 5).item(), rel=1e-5)
    assert simreg_loss(q, t, normalize=False) != pytest.approx(simreg_loss(q * 3, t * 5, normalize=False).item())
    with pytest.raises(ValueError):
        prediction_head(8, 8, layers=3)
