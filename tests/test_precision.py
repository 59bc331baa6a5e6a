"""Precision and layout modes compute what float32 NCHW computes: channels_last gives the same
outputs and gradients for every CIFAR architecture and the fused SGD the same update."""
import pytest
import torch

import models
import train_student
from core.optim import fused_available, sgd
from core.precision import autocast, make_grad_scaler, precision_name
from core.errors import UserError


def _close(a, b, rtol=1e-5):
    scale = max(a.abs().max().item(), 1e-12)
    torch.testing.assert_close(b, a, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("arch", sorted(models.CIFAR_MODELS))
def test_channels_last_matches_nchw(arch):
    """In float64, so that what is compared is the computation, not float32 rounding: NHWC kernels
    sum in another order, which in float32 moves outputs of deep random-init networks by up to
    ~5e-4 of their norm (ResNet101) and makes near-zero gradients (conv biases before BatchNorm)
    incomparable elementwise."""
    torch.manual_seed(0)
    nchw = models.create(arch, 10).double()
    nhwc = models.create(arch, 10).double()
    nhwc.load_state_dict(nchw.state_dict())
    nhwc.to(memory_format=torch.channels_last)
    x = torch.randn(4, 3, 32, 32, dtype=torch.float64)
    outs = []
    for net, images in ((nchw, x), (nhwc, x.contiguous(memory_format=torch.channels_last))):
        net.train()
        feats, logits = net(images, is_feat=True)
        (logits.square().sum() + sum(f.mean() for f in feats)).backward()
        outs.append((feats, logits, torch.cat([p.grad.flatten() for p in net.parameters()])))
    (f0, l0, g0), (f1, l1, g1) = outs
    _close(l0, l1)
    for a, b in zip(f0, f1):
        _close(a, b)
    _close(g0, g1)


def test_fused_sgd_is_the_same_update():
    assert fused_available()
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(8, 8)) for _ in range(3)]
    twins = [torch.nn.Parameter(p.detach().clone()) for p in params]
    plain = sgd(params, 0.1, 0.9, 5e-4, "cpu")
    fused = torch.optim.SGD(twins, lr=0.1, momentum=0.9, weight_decay=5e-4, fused=True)   # what CUDA runs get
    assert not plain.defaults.get("fused")
    for _ in range(5):
        grads = [torch.randn(8, 8) for _ in params]
        for p, q, g in zip(params, twins, grads):
            p.grad, q.grad = g.clone(), g.clone()
        plain.step()
        fused.step()
    for p, q in zip(params, twins):
        _close(p.detach(), q.detach(), rtol=1e-6)


def test_precision_modes():
    assert precision_name(True) == "fp16" and precision_name(False) == "off"
    assert not make_grad_scaler("cpu", "bf16").is_enabled() and not make_grad_scaler("cpu", "fp16").is_enabled()
    with autocast("cpu", "bf16"):
        assert (torch.randn(2, 2) @ torch.randn(2, 2)).dtype == torch.bfloat16
    with pytest.raises(UserError, match="needs a CUDA device"):
        autocast("cpu", "fp16")
    assert train_student.parse_args(["--amp"]).amp == "fp16"   # the earlier switch still means float16
    assert train_student.parse_args(["--amp", "bf16", "--channels-last"]).channels_last
