"""ReviewKD against the authors' code (tests/fixtures/reviewkd_reference.pt, written by
tests/fixtures/make_reviewkd_records.py from mdistiller's and dvlab's ReviewKD): the ABF stack is
initialised to the same state dict (same keys, same values under the same seed), the loss and its
gradients equal in float64, and the ABF shapes for every CIFAR pair equal dvlab's build_review_kd."""
import contextlib
import copy

import pytest
import torch

import losses
import models
from engine.distill import probe_shapes
from losses import Context, LossWeights, MethodError
from models import Outputs

REF = torch.load(__file__.rsplit("/", 1)[0] + "/fixtures/reviewkd_reference.pt", weights_only=True)
RTOL = 1e-6
STEM = (3, 1, 2, 2)   # feat[0], which ReviewKD does not use


def close(got, want):
    torch.testing.assert_close(got.detach().double(), want.double(), rtol=RTOL, atol=1e-12 * want.abs().max().item())


def shapes(maps, pooled):
    return [STEM] + [tuple(m.shape) for m in maps] + [tuple(pooled.shape)]


def build(rec):
    s_shapes = shapes(rec["student_maps"], rec["student_pooled"])
    t_shapes = shapes(rec["teacher_maps"], rec["teacher_pooled"])
    ctx = Context(s_shapes, t_shapes, s_shapes, t_shapes, "student", "teacher", rec["logits_s"].shape[1])
    torch.manual_seed(rec["seed"])
    return losses.build("reviewkd", ctx, None, {"reviewkd_weight": rec["weight"]}).double()


@pytest.mark.parametrize("layout", sorted(REF["loss"]))
def test_abf_state_dict_is_the_authors(layout):
    rec = REF["loss"][layout]
    state = {k.removeprefix("abfs."): v for k, v in build(rec).state_dict().items()}
    assert list(state) == list(rec["abf_state"])
    for key, want in rec["abf_state"].items():
        assert torch.equal(state[key], want), key


@pytest.mark.parametrize("layout", sorted(REF["loss"]))
def test_loss_and_gradients_equal_mdistiller(layout):
    rec = REF["loss"][layout]
    for epoch, want in rec["epochs"].items():
        method = build(rec).train()
        leaves = [t.clone().requires_grad_() for t in rec["student_maps"] + [rec["student_pooled"]]]
        s = Outputs([torch.zeros(STEM, dtype=torch.float64)] + leaves, rec["logits_s"])
        t = Outputs([torch.zeros(STEM, dtype=torch.float64)] + rec["teacher_maps"] + [rec["teacher_pooled"]], None)
        terms = method(s, t, {"label": rec["target"]}, torch.tensor(epoch))
        assert set(terms) == {"ce", "reviewkd"}
        close(terms["ce"], want["loss_ce"])
        close(terms["reviewkd"], want["loss_kd"])
        if "grad_abf" in want:
            params = dict(method.abfs.named_parameters())
            grads = torch.autograd.grad(terms["reviewkd"], leaves + list(params.values()))
            for got, expected in zip(grads, want["grad_student_taps"]):
                close(got, expected)
            for name, got in zip(params, grads[len(leaves):]):
                close(got, want["grad_abf"][name])


# dvlab's model names for ours
DVLAB_NAMES = {"resnet20": "resnet20", "resnet32": "resnet32", "resnet56": "resnet56", "resnet110": "resnet110",
               "resnet8x4": "resnet8x4", "resnet32x4": "resnet32x4", "wrn_16_2": "wrn-16-2", "wrn_40_1": "wrn-40-1",
               "wrn_40_2": "wrn-40-2", "vgg8": "vgg8", "vgg13": "vgg13", "ResNet50": "ResNet50",
               "MobileNetV2": "mobile", "ShuffleV1": "shufflev1", "ShuffleV2": "shufflev2"}
PAIRS = [pair.split(":") for pair in sorted(REF["dvlab_shapes"])]


@pytest.fixture(scope="module")
def tap_shapes():
    """{arch: (post-ReLU tap shapes, pre-activation tap shapes)} on a CIFAR batch, probed once."""
    made = {}
    for arch in {a for pair in PAIRS for a in pair}:
        ours = next(k for k, v in DVLAB_NAMES.items() if v == arch)
        torch.manual_seed(0)
        net = models.create(ours, 100)
        made[arch] = (ours, probe_shapes(net, (3, 32, 32), "cpu", False), probe_shapes(net, (3, 32, 32), "cpu", True))
    return made


@pytest.mark.parametrize("student,teacher", PAIRS, ids=[":".join(p) for p in PAIRS])
def test_abf_shapes_equal_dvlab_build_review_kd(student, teacher, tap_shapes):
    want = REF["dvlab_shapes"][f"{student}:{teacher}"]
    s_arch, s_post, s_pre = tap_shapes[student]
    t_arch, t_post, t_pre = tap_shapes[teacher]
    method = losses.build("reviewkd", Context(s_post, t_post, s_pre, t_pre, s_arch, t_arch, 100))
    levels = list(method.abfs)[::-1]   # shallowest first, as dvlab's lists
    n = len(want["in_channels"])       # dvlab's zip reads only as many shapes as levels
    assert [abf.conv1[0].in_channels for abf in levels] == want["in_channels"]
    assert [abf.conv2[0].out_channels for abf in levels] == want["out_channels"]
    assert method.sizes[::-1] == want["shapes"][:n]
    assert method.out_sizes[::-1] == want["out_shapes"][:n]
    assert all(abf.conv1[0].out_channels == min(512, want["in_channels"][-1]) for abf in levels)


def test_pair_weights_and_errors():
    rec = REF["loss"]["equal"]
    s_shapes = shapes(rec["student_maps"], rec["student_pooled"])
    ctx = Context(s_shapes, s_shapes, s_shapes, s_shapes, "ShuffleV2", "resnet32x4", 7)
    assert losses.build("reviewkd", ctx).hp["reviewkd_weight"] == 8.0
    ctx.teacher_arch, ctx.student_arch = "resnet56", "resnet20"
    assert losses.build("reviewkd", ctx).hp["reviewkd_weight"] == 0.6
    ctx.teacher_arch = "vgg13"
    assert losses.build("reviewkd", ctx).hp["reviewkd_weight"] == 1.0
    with pytest.raises(MethodError, match="--reviewkd-warmup 0"):
        losses.build("reviewkd", ctx, None, {"reviewkd_warmup": 0})
    deeper = s_shapes[:1] + [(3, 4, 8, 8)] + s_shapes[1:]
    with pytest.raises(MethodError, match="level by level"):
        losses.build("reviewkd", Context(s_shapes, deeper, s_shapes, deeper, "a", "b", 7))
    assert losses.method_class("reviewkd").standard_weights == LossWeights(ce=1.0, kd=0.0, distill=1.0)


@pytest.mark.parametrize("name", ["dkd", "reviewkd", "dist"])
def test_later_methods_in_bf16_channels_last_match_float32(name):
    """One batch of DKD, ReviewKD and DIST under bf16 autocast with NHWC tensors gives the float32
    NCHW loss terms to bfloat16 precision (on a CPU without native bfloat16, its convolutions as
    the native kernel computes them: tests/cpu_bf16.py)."""
    from cpu_bf16 import bf16_convolutions
    from engine.distill import Distiller, FrozenNet
    torch.manual_seed(0)
    student, teacher = models.create("resnet8", 10), models.create("resnet14", 10)
    with torch.no_grad():   # logits of a trained net's size (a few units), not init's near-uniform ones
        student.fc.weight.mul_(20.0)
        teacher.fc.weight.mul_(40.0)
    shape = (3, 32, 32)
    ctx = Context(probe_shapes(student, shape, "cpu", False), probe_shapes(teacher, shape, "cpu", False),
                  probe_shapes(student, shape, "cpu", True), probe_shapes(teacher, shape, "cpu", True),
                  "resnet8", "resnet14", 10)
    method = losses.build(name, ctx)
    batch = {"image": torch.randn(16, *shape, generator=torch.Generator().manual_seed(1)),
             "label": torch.arange(16) % 10}
    terms = {}
    for mode in ("off", "bf16"):
        twin = [copy.deepcopy(m) for m in (student, method, teacher)]
        distiller = Distiller(twin[0], twin[1], FrozenNet(twin[2]), amp=mode, channels_last=mode == "bf16").train()
        with bf16_convolutions() if mode == "bf16" else contextlib.nullcontext():
            terms[mode], _ = distiller(batch, 30)
    assert set(terms["off"]) == set(terms["bf16"]) == {"ce", name}
    for k, want in terms["off"].items():
        got = terms["bf16"][k].float()
        assert torch.isfinite(got) and abs(got - want) <= 0.03 * abs(want), (k, got.item(), want.item())
