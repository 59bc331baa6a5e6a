"""One training step per method on CPU, through the Distiller train_student.py uses: finite loss,
teacher untouched, exactly `trainable_parameters()` updated; init phases train what they declare."""

import pytest
import torch

import losses
import models
from datasets import ImageSet, InMemoryLoader
from engine.distill import Distiller, FrozenNet, probe_shapes
from engine.init_phase import run_init_phase
from engine.run_folder import RunFolder

N_CLASSES = 10
N_DATA = 20000   # enough other-class samples for CRD's default 16384 negatives


def _setup(method_name, student="resnet8", teacher="resnet14", hp=None, seed=0, n_data=48):
    torch.manual_seed(seed)
    t_net = models.create(teacher, N_CLASSES)
    s_net = models.create(student, N_CLASSES)
    labels = torch.arange(n_data) % N_CLASSES
    shape = (3, 32, 32)
    ctx = losses.Context(probe_shapes(s_net, shape, "cpu", False), probe_shapes(t_net, shape, "cpu", False),
                         probe_shapes(s_net, shape, "cpu", True), probe_shapes(t_net, shape, "cpu", True),
                         student, teacher, N_CLASSES, n_data, labels)
    method = losses.build(method_name, ctx, hparams={"nce_k": 16, "init_epochs": 1, "t_epochs": 1, **(hp or {})})
    images = torch.randint(0, 256, (n_data, 3, 32, 32), dtype=torch.uint8)
    data = ImageSet("random", images, labels, N_CLASSES, (0.5,) * 3, (0.25,) * 3)
    return Distiller(s_net, method, FrozenNet(t_net)), ctx, data


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.fixture(scope="module")
def big_data():
    labels = torch.arange(N_DATA) % N_CLASSES
    return labels, torch.randint(0, 256, (N_DATA, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", sorted(losses.METHODS))
def test_one_step_with_registry_defaults(name, big_data):
    """Built from the registry with nothing but its declared defaults, one step of each method
    runs; the teacher is untouched and exactly trainable_parameters() move."""
    labels, images = big_data
    torch.manual_seed(0)
    t_net, s_net = models.create("resnet14", N_CLASSES), models.create("resnet8", N_CLASSES)
    shape = (3, 32, 32)
    ctx = losses.Context(probe_shapes(s_net, shape, "cpu", False), probe_shapes(t_net, shape, "cpu", False),
                         probe_shapes(s_net, shape, "cpu", True), probe_shapes(t_net, shape, "cpu", True),
                         "resnet8", "resnet14", N_CLASSES, N_DATA, labels)
    method = losses.build(name, ctx)
    cls = type(method)
    assert method.hp == {h.name: cls.default_value(h, ("resnet14", "resnet8")) for h in cls.declared_hparams()}
    distiller = Distiller(s_net, method, FrozenNet(t_net))
    teacher = distiller.teacher
    teacher_before = _snapshot(teacher)
    data = ImageSet("random", images, labels, N_CLASSES, (0.5,) * 3, (0.25,) * 3)
    batch = next(iter(InMemoryLoader(data, 8, train=True, views=method.views)))
    params = distiller.trainable_parameters()
    optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    distiller.train()
    terms, scored = distiller(batch, 1)
    loss = sum(terms.values())
    assert torch.isfinite(loss) and loss.requires_grad
    assert (scored is None) == (not method.trains_classifier)
    assert scored is None or len(scored) == len(batch["label"])
    everything = list(s_net.parameters()) + list(method.parameters())
    before = {id(p): p.detach().clone() for p in everything}
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    # the teacher: frozen, in eval mode, no gradients, state unchanged (BN statistics included)
    assert not teacher.training and not teacher.net.training
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    after = _snapshot(teacher)
    assert all(torch.equal(teacher_before[k], after[k]) for k in after)
    # exactly what trainable_parameters() gives is trainable, and only that moves
    in_optimizer = {id(p) for p in params}
    assert in_optimizer == {id(p) for p in everything if p.requires_grad}
    for p in everything:
        if id(p) not in in_optimizer:
            assert torch.equal(before[id(p)], p), f"{name}: a parameter outside the optimizer changed"
    assert not (set(map(id, teacher.parameters())) & in_optimizer)
    changed = [p for p in params if not torch.equal(before[id(p)], p)]
    assert changed, f"{name}: nothing was updated"
    assert set(terms) >= ({"ce"} if method.w.ce else set())


def test_method_parameters_in_optimizer():
    """Adaptors of methods that train them are trainable; frozen parts (FT paraphraser, SSKD teacher
    head, AB connector after init) are not, and the distiller keeps them in eval mode."""
    expected_trainable = {"hint": "regressor", "correlation": "embed_s", "vid": "vid", "crd": "embed_t",
                          "factor": "translator", "sskd": "head_s"}
    expected_frozen = {"factor": "paraphraser", "sskd": "head_t", "abound": "connector"}
    for name, attr in expected_trainable.items():
        distiller, _, _ = _setup(name)
        assert all(p.requires_grad for p in getattr(distiller.method, attr).parameters()), name
    for name, attr in expected_frozen.items():
        distiller, _, _ = _setup(name, hp={"init_epochs": 1})
        part = getattr(distiller.method, attr)
        assert not any(p.requires_grad for p in part.parameters()), name
        distiller.train()
        assert distiller.method.training and (not part.training or not list(part.parameters())), name


@pytest.mark.parametrize("name", ["abound", "factor", "fsp", "sskd"])
def test_init_phase(name, tmp_path):
    distiller, ctx, data = _setup(name)
    student, method, teacher = distiller.student, distiller.method, distiller.teacher
    phase = method.init_phase(student, ctx)
    student_before, method_before = _snapshot(student), _snapshot(method)
    teacher_before = _snapshot(teacher)
    loader = InMemoryLoader(data, 16, train=True, views=phase.views)
    test_loader = InMemoryLoader(data, 16, train=False, views=phase.views)
    run = RunFolder(str(tmp_path / "run"), show_progress=False)
    run_init_phase(distiller, phase, loader, test_loader, 0.9, 5e-4, run)
    changed_student = [k for k, v in student.state_dict().items() if not torch.equal(v, student_before[k])]
    changed_method = [k for k, v in method.state_dict().items() if not torch.equal(v, method_before[k])]
    assert all(torch.equal(v, teacher_before[k]) for k, v in teacher.state_dict().items())
    if name in ("abound", "fsp"):   # the student's feature modules are trained, its classifier is not
        assert any(k.startswith("layer1") for k in changed_student)
        assert not any(k.startswith("fc.") for k in changed_student)
    else:                           # FT's paraphraser and SSKD's teacher head train alone
        assert not changed_student
    if name == "abound":
        assert not changed_method   # resnet8 -> resnet14: identical tap shapes, identity connector
    elif name == "factor":
        assert changed_method and all(k.startswith("paraphraser.") for k in changed_method)
        assert not any(p.requires_grad for p in method.paraphraser.parameters())
    elif name == "sskd":
        assert changed_method and all(k.startswith("head_t.") for k in changed_method)
        assert not any(p.requires_grad for p in method.head_t.parameters())
    assert "init" in (tmp_path / "run" / "log.txt").read_text()


def test_ab_wrn_student_keeps_final_bn_in_eval_during_init(tmp_path):
    """The reference quirk: only get_feat_modules() train in the init phase; a WRN's final BN
    (re-applied by its f3 pre-activation tap) keeps its running statistics."""
    distiller, ctx, data = _setup("abound", student="wrn_16_1", teacher="wrn_16_1")
    student = distiller.student
    phase = distiller.method.init_phase(student, ctx)
    bn_before = student.bn1.running_mean.clone()
    run_init_phase(distiller, phase, InMemoryLoader(data, 16, train=True), InMemoryLoader(data, 16, train=False),
                   0.9, 5e-4, RunFolder(str(tmp_path / "r"), show_progress=False))
    assert torch.equal(student.bn1.running_mean, bn_before)
    assert not torch.equal(student.block2.layer[0].bn1.running_mean, torch.zeros_like(bn_before[:16]))


def test_sskd_views_are_rotations_before_crop():
    """With no crop, the 4 views of an image are its 0/90/180/270-degree rotations (after the one
    shared flip), exactly as SSKD's data set returns them (fixture x_views)."""
    import os
    from datasets import augment
    ref = torch.load(os.path.join(os.path.dirname(__file__), "fixtures", "distill_reference_wrn.pt"),
                     weights_only=True)["sskd"]["data"]
    raw = ref["raw_uint8_hwc"].permute(0, 3, 1, 2).contiguous()
    flipped = torch.where(ref["flipped"][:, None, None, None], raw.flip(3), raw)
    views = augment.rotation_views(flipped)
    got = augment.normalize(views, ref["mean"], ref["std"]).view(6, 4, 3, 32, 32)
    torch.testing.assert_close(got, ref["x_views"], rtol=0, atol=1e-6)
    # training views: the flip is shared by the four views of an image and each view is cropped
    # independently; with pad 0 the crop is the identity, so views stay exact rotations
    g = torch.Generator().manual_seed(1)
    offsets, flips = augment.draw_crop_flip(24, 0, g)
    train_views = augment.rotation_views(raw, flips[:6], offsets, pad=0).view(6, 4, 3, 32, 32)
    for i in range(6):
        base = train_views[i, 0]
        assert torch.equal(base, raw[i]) or torch.equal(base, raw[i].flip(2))
        for k in range(1, 4):
            assert torch.equal(train_views[i, k], torch.rot90(base, k, dims=(1, 2)))
    # with padding, the crops of one image's views differ (independent offsets)
    offsets, _ = augment.draw_crop_flip(24, 4, g)
    padded = augment.rotation_views(raw, flips[:6], offsets, pad=4).view(6, 4, 3, 32, 32)
    assert padded.shape == (6, 4, 3, 32, 32)
    same_offset = (offsets.view(6, 4, 2) == offsets.view(6, 4, 2)[:, :1]).all(-1).all(-1)
    assert not same_offset.all()
