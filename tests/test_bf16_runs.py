"""bfloat16 autocast on the CPU trains to the float32 accuracy: one digits run per method family
(KD, CRD, SSKD), trained until the accuracy has settled, ends within 1.5 points of the same run in
float32.

On a CPU without native bfloat16 the runs compute their convolutions through
`cpu_bf16.bf16_convolutions()` (the native kernel's arithmetic at float32 speed; torch's own
fallback would make the three runs take an hour of both cores); the session header says which.
The first test checks that emulation against torch's bfloat16 convolution."""
import contextlib
import os

import pytest
import torch
import torch.nn.functional as F

import train_student
from cpu_bf16 import EmulatedBf16Convolutions, bf16_convolutions

COMMON = ["--student", "resnet8", "--dataset", "digits", "--no-progress", "--save-every", "0"]
TEN = ["--epochs", "10", "--lr-decay-epochs", "6,8"]
FAMILIES = {"kd": ["--method", "kd", *TEN],
            "crd": ["--method", "crd", "--nce-k", "256", "--epochs", "20", "--lr-decay-epochs", "14,18"],  # slower
            # four rotated views per image: an epoch holds four times the steps, so fewer epochs settle it
            "sskd": ["--method", "sskd", "--t-epochs", "2", "--epochs", "8", "--lr-decay-epochs", "6,7"]}


def float32_run(shared_runs, teacher, family):
    """The float32 run of a family, trained once per session (test_train_student's KD and SSKD
    tests read it too)."""
    return shared_runs("student", f"{family}_float32", COMMON + FAMILIES[family] + ["--teacher", teacher])


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_emulated_convolution_is_torch_bf16(channels_last):
    """Forward and both gradients agree with torch's own bfloat16 convolution to one rounding."""
    g = torch.Generator().manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(4, 6, 9, 9, generator=g).bfloat16().contiguous(memory_format=fmt)
    w = (torch.randn(8, 6, 3, 3, generator=g) / 4).bfloat16().contiguous(memory_format=fmt)
    b = torch.randn(8, generator=g).bfloat16()
    grad = torch.randn(4, 8, 5, 5, generator=g).bfloat16()
    results = []
    for mode in (None, EmulatedBf16Convolutions()):
        leaves = [t.clone().requires_grad_() for t in (x, w, b)]
        with mode or contextlib.nullcontext():
            out = F.conv2d(leaves[0], leaves[1], leaves[2], stride=2, padding=1)
            out.backward(grad)
        results.append([out.detach()] + [t.grad for t in leaves])
        if mode is not None:
            assert mode.calls == 2   # the forward and the backward went through the emulation
    for what, want, got in zip(("output", "input grad", "weight grad", "bias grad"), *results):
        assert got.dtype == want.dtype == torch.bfloat16, what
        torch.testing.assert_close(got.float(), want.float(), rtol=2 ** -7, atol=2 ** -7 * want.abs().max().item(),
                                   msg=lambda m: f"{what}: {m}")


@pytest.mark.slow
# KD beside test_train_student's KD-beats-CE test, which reads the same float32 run
@pytest.mark.parametrize("family", [pytest.param(f, marks=[pytest.mark.xdist_group("kd_float32")] if f == "kd" else [])
                                    for f in sorted(FAMILIES)])
def test_bf16_run_ends_near_float32(family, digits_teacher, shared_runs, tmp_path):
    off = float32_run(shared_runs, digits_teacher["ckpt"], family)
    # the float32 run's init phase (SSKD's teacher head) is reused, as when both ran in one folder
    init_cache = os.path.join(os.path.dirname(off["folder"]), "init_cache")
    with bf16_convolutions():
        bf16 = train_student.main(COMMON + FAMILIES[family] + [
            "--teacher", digits_teacher["ckpt"], "--save-dir", str(tmp_path), "--name", "bf16", "--amp", "bf16",
            "--init-cache", init_cache])
    top1 = {"off": off["summary"]["last"]["top1"], "bf16": bf16["last"]["top1"]}
    assert top1["off"] > 85, top1   # settled: the comparison is not within the early epochs' noise
    assert abs(top1["bf16"] - top1["off"]) <= 1.5, top1
