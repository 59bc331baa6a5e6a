"""The Distiller: one module that holds the student, the frozen teacher (a network, cached
features, or none when a teacher itself is trained) and the method, and computes one batch's loss
terms. Its `train()` keeps the teacher and every frozen part in eval mode; `trainable_parameters()`
is exactly what the optimizer gets; it owns the DDP / DataParallel wrapping of student and method."""
import torch
import torch.nn as nn

from core import distributed
from core.precision import autocast, to_channels_last
from models import Outputs
from models.common import Renormalize
from models.weights import DATA_NORM


class FrozenNet(nn.Module):
    """A network without gradients whose forward runs under no_grad: the teacher, or a backbone
    being evaluated. `net_norm` is the normalisation it was trained with (weights.DATA_NORM: the
    data's own, None: raw [0, 1] pixels), `data_norm` the data's (mean, std): the batch is
    re-normalised when they differ."""

    def __init__(self, net, data_norm=None, net_norm=DATA_NORM):
        super().__init__()
        self.net = net.requires_grad_(False).eval()
        same = net_norm == DATA_NORM or (net_norm is not None and tuple(map(tuple, net_norm)) == data_norm)
        self.renorm = None if same else Renormalize(data_norm, net_norm)
        self.eval()

    @torch.no_grad()
    def forward(self, x, is_feat=True, preact=False):
        if self.renorm is not None:
            x = self.renorm(x)
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
    if isinstance(net, FrozenNet):
        net = net.net
    was_training = net.training
    net.eval()
    feats, _ = net(torch.randn(2, *image_shape, device=device), is_feat=True, preact=preact)
    net.train(was_training)
    return [tuple(f.shape) for f in feats]


def _frozen(module):
    params = list(module.parameters())
    return bool(params) and not any(p.requires_grad for p in params)


def _contains(module, part):
    return any(m is part for m in module.modules())


class Distiller(nn.Module):
    """`forward(batch, epoch)` -> (terms, logits): the method's weighted loss terms and the logits
    to score against batch['label'] (None when the student has no classifier). While an init phase
    runs (`begin_phase` / `end_phase`) the forward computes the phase's loss instead."""

    def __init__(self, student, method, teacher=None, amp="off", channels_last=False):
        super().__init__()
        self.student, self.method = student, method
        self.teacher = teacher if isinstance(teacher, nn.Module) else None
        self.cached_teacher = teacher if isinstance(teacher, CachedTeacher) else None
        self.amp = amp
        self.channels_last = channels_last
        if channels_last:   # 4-D parameters and buffers in NHWC order; the batches follow in forward
            for m in (student, method, self.teacher):
                if m is not None:
                    m.to(memory_format=torch.channels_last)
        self.phase = None
        self._calls = {"student": student, "method": method}   # DDP / DataParallel wrappers after parallelize()

    # ------------------------------------------------------------------ modes and parameters
    def train(self, mode=True):
        self.training = mode
        self.method.train(mode)
        if self.phase is None:
            self.student.train(mode)
        else:   # the reference's init stage: the student in eval except the modules the phase trains
            self.student.eval()
            for m in self.phase.trains:
                if not _contains(self.method, m):   # e.g. the student's get_feat_modules()
                    m.train(mode)
        for m in self.method.modules():
            if m is not self.method and _frozen(m):
                m.eval()
        if self.teacher is not None:
            self.teacher.eval()
        return self

    def trainable_parameters(self):
        """What the optimizer gets: the phase's parameters during an init phase, else every
        trainable parameter of student and method."""
        if self.phase is not None:
            return self.phase.parameters()
        return [p for m in (self.student, self.method) for p in m.parameters() if p.requires_grad]

    def begin_phase(self, phase):
        """Enter an init phase: the method's modules it trains become trainable for its duration."""
        self.phase = phase
        for m in phase.trains:
            if _contains(self.method, m):
                m.requires_grad_(True)

    def end_phase(self):
        for m in self.phase.trains:
            if _contains(self.method, m):
                m.requires_grad_(False)
        self.phase = None
        self.train(self.training)

    # ------------------------------------------------------------------ parallelism
    def parallelize(self, info, device, sync_bn=False, data_parallel=False):
        """DDP under torchrun (the method too when it has trainable parameters; its buffers, such as
        CRD's memory banks, are kept identical by the method itself), or DataParallel when asked."""
        self._calls["student"] = distributed.wrap(self.student, info, device, sync_bn, data_parallel)
        if info.enabled and any(p.requires_grad for p in self.method.parameters()):
            self._calls["method"] = distributed.wrap(self.method, info, device, broadcast_buffers=False)

    def sync_gradients(self):
        """Average the gradients DDP does not cover (an init phase's parameters) over processes;
        a no-op in one process."""
        if self.phase is not None:
            distributed.average_gradients(self.phase.parameters())

    # ------------------------------------------------------------------ forward
    def teacher_outputs(self, batch):
        if self.teacher is None:
            return None if self.cached_teacher is None else self.cached_teacher.outputs(batch)
        feats, logits = self.teacher(batch.get("image_t", batch["image"]), is_feat=True, preact=self.method.preact)
        return Outputs(feats, logits)

    def student_outputs(self, batch, student=None):
        feats, logits = (student or self._calls["student"])(batch["image"], is_feat=True, preact=self.method.preact)
        return Outputs(feats, logits)

    def forward(self, batch, epoch):
        if self.channels_last:
            batch = {k: to_channels_last(v) if k in ("image", "image_t") else v for k, v in batch.items()}
        with autocast(batch["image"].device, self.amp):
            if self.phase is not None:   # init phases train outside DDP: gradients are averaged by sync_gradients
                s = self.student_outputs(batch, self.student) if self.phase.run_student else None
                return self.phase.loss(s, self.teacher_outputs(batch), batch), None
            s = self.student_outputs(batch)
            terms = self._calls["method"](s, self.teacher_outputs(batch), batch, epoch)
            return terms, self.method.accuracy_logits(s)

    def classify(self, images):
        """The student's logits (evaluation)."""
        return self.student(images)

    def classify_with_teacher(self, images):
        return self.teacher(images, is_feat=False)
