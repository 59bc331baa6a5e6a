"""Pieces of a distillation run that do not depend on the method: the frozen teacher (a network or
a feature cache), tap-shape probing, the student/teacher forward step, and the init-phase runner."""
import torch
import torch.nn as nn

from engine.distributed import average_gradients
from engine.loops import train_one_epoch
from engine.schedule import set_lr
from losses.base import Outputs


class FrozenTeacher(nn.Module):
    """A teacher that is in eval mode, without gradients, by construction: `train()` cannot
    switch it back and its forward runs under no_grad. `input_norm` = ((student mean, std),
    (teacher mean, std or None)) re-normalises the student's input for a teacher trained with other
    constants (None: raw [0, 1] pixels, SimCLR)."""

    def __init__(self, net, input_norm=None):
        super().__init__()
        self.net = net
        self.net.requires_grad_(False)
        self.adapter = None
        if input_norm is not None and input_norm[0] != input_norm[1]:
            (mean_s, std_s), (mean_t, std_t) = input_norm
            scale, shift = torch.tensor(std_s), torch.tensor(mean_s)
            if mean_t is not None:   # x_t = (x * std_s + mean_s - mean_t) / std_t
                scale, shift = scale / torch.tensor(std_t), (shift - torch.tensor(mean_t)) / torch.tensor(std_t)
            self.register_buffer("in_scale", scale.view(1, -1, 1, 1))
            self.register_buffer("in_shift", shift.view(1, -1, 1, 1))
            self.adapter = True
        super().train(False)

    def train(self, mode=True):
        return super().train(False)

    @torch.no_grad()
    def forward(self, x, is_feat=True, preact=False):
        if self.adapter:
            x = x * self.in_scale + self.in_shift
        return self.net(x, is_feat=is_feat, preact=preact)


class CachedTeacher:
    """Teacher features looked up by dataset index in a feature cache: no teacher network is built."""

    def __init__(self, cache):
        self.cache = cache
        self.dim = cache.dim

    def outputs(self, batch):
        return Outputs([self.cache.lookup(batch["index"])], None)


@torch.no_grad()
def probe_shapes(net, image_shape, device, preact):
    """Tap shapes from one eval-mode forward pass on a random batch of 2 (as the reference)."""
    if isinstance(net, CachedTeacher):
        return [(2, net.dim)]
    was_training = net.training
    net.eval()
    feats, _ = net(torch.randn(2, *image_shape, device=device), is_feat=True, preact=preact)
    net.train(was_training)
    return [tuple(f.shape) for f in feats]


def forward_pair(student, teacher, batch, preact):
    """Student outputs on batch['image'] and teacher outputs on batch['image_t'] (the teacher's own
    view, when the pairing gives it one) or on the same images, or from the feature cache."""
    x = batch["image"]
    feats_s, logits_s = student(x, is_feat=True, preact=preact)
    if isinstance(teacher, CachedTeacher):
        return Outputs(feats_s, logits_s), teacher.outputs(batch)
    feats_t, logits_t = teacher(batch.get("image_t", x), is_feat=True, preact=preact)
    return Outputs(feats_s, logits_s), Outputs(feats_t, logits_t)


def run_init_phase(phase, student, teacher, method, loader, test_loader, momentum, weight_decay, record,
                   show_progress=True):
    """The reference's init stage: a fresh SGD over the phase's parameters at the phase's lr; the
    student in eval mode except `student_train_modules`; the teacher frozen."""
    optimizer = torch.optim.SGD(phase.parameters, lr=phase.lr_at(1), momentum=momentum,
                                weight_decay=weight_decay)

    def step(batch):
        if phase.run_student:
            s, t = forward_pair(student, teacher, batch, method.preact)
        else:
            feats_t, logits_t = teacher(batch.get("image_t", batch["image"]), is_feat=True, preact=method.preact)
            s, t = None, Outputs(feats_t, logits_t)
        return phase.loss(s, t, batch), None

    for epoch in range(1, phase.epochs + 1):
        set_lr(optimizer, phase.lr_at(epoch))
        student.eval()
        for m in phase.student_train_modules:
            m.train()
        for m in phase.aux_modules:
            m.train()
        stats = train_one_epoch(step, loader, optimizer, epoch, desc=f"init {phase.name}",
                                show_progress=show_progress,
                                before_step=lambda: average_gradients(phase.parameters))
        extra = phase.evaluate(teacher, test_loader) if phase.evaluate else {}
        record.log(f"init {phase.name} epoch {epoch}/{phase.epochs} lr {phase.lr_at(epoch):.5g} | "
                   + " ".join(f"{k} {v:.4f}" for k, v in {**stats, **extra}.items()))
        record.scalars({**stats, **extra}, epoch, prefix=f"init_{phase.name}/")
    if phase.on_end:
        phase.on_end()
