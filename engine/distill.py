"""The Distiller: one module that holds the student, the frozen teacher (a network, cached
features, or none when a teacher itself is trained) and the method, and computes one batch's loss
terms. Its `train()` keeps the teacher and every frozen part in eval mode; `trainable_parameters()`
is exactly what the optimizer gets; it owns the DDP / DataParallel wrapping of student and method."""
import torch
import torch.nn as nn

import losses
import models
from core import distributed
from core.compile import compile_step, mark_step_begin
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


def logits_detached(net):
    """`net`'s forward with its logits cut from the graph, for losses that do not use them: the
    classifier then gets no gradient (None, as in eager autograd) also when the forward is compiled
    (a compiled graph's backward would give it zeros, which weight decay and momentum act on)."""
    def forward(x, is_feat=True, preact=False):
        feats, logits = net(x, is_feat=is_feat, preact=preact)
        return feats, logits.detach()
    return forward


class Distiller(nn.Module):
    """`forward(batch, epoch)` -> (terms, logits): the method's weighted loss terms and the logits
    to score against batch['label'] (None when the student has no classifier). While an init phase
    runs (`begin_phase` / `end_phase`) the forward computes the phase's loss instead.

    `compile_mode` (a torch.compile mode, None for eager) compiles that forward as three regions:
    the teacher's forward, the student's forward and the method's loss (or the init phase's), each
    with its backward through autograd. Separate regions keep a network's graph the same whichever
    method uses it (compiled once, then found in the compile cache) and keep a method's graph
    breaks out of the networks' graphs. The optimizer step stays outside (on CUDA it is the fused
    SGD, one kernel)."""

    def __init__(self, student, method, teacher=None, amp="off", channels_last=False, compile_mode=None):
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
        self._calls = {"method": method}   # DDP / DataParallel wrappers after parallelize()
        self._set_student_calls(student)
        if self.teacher is not None:
            self._calls["teacher"] = self.teacher
        self.compile_mode = compile_mode
        self._compiled = {}   # name -> the compiled form of _calls[name], made at its first call

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
        self._calls["phase"] = phase.loss
        for m in phase.trains:
            if _contains(self.method, m):
                m.requires_grad_(True)

    def end_phase(self):
        del self._calls["phase"]
        self._compiled.pop("phase", None)
        for m in self.phase.trains:
            if _contains(self.method, m):
                m.requires_grad_(False)
        self.phase = None
        self.train(self.training)

    # ------------------------------------------------------------------ parallelism
    def parallelize(self, info, device, sync_bn=False, data_parallel=False):
        """DDP under torchrun (the method too when it has trainable parameters; its buffers, such as
        CRD's memory banks, are kept identical by the method itself), or DataParallel when asked. A
        loss that does not use the student's logits (SimReg) leaves its classifier without gradients,
        which DDP must be told."""
        self._set_student_calls(distributed.wrap(self.student, info, device, sync_bn, data_parallel,
                                                 find_unused_parameters=not self.method.uses_logits))
        if info.enabled and any(p.requires_grad for p in self.method.parameters()):
            self._calls["method"] = distributed.wrap(self.method, info, device, broadcast_buffers=False)
        self._compiled.clear()   # compile the wrappers

    def _set_student_calls(self, wrapped):
        """The student's forward in the main phase (through DDP when parallel) and in init phases
        (outside DDP; their losses never use the logits)."""
        self._calls["student"] = wrapped if self.method.uses_logits else logits_detached(wrapped)
        self._calls["student_in_phase"] = logits_detached(self.student)

    def sync_gradients(self):
        """Average the gradients DDP does not cover (an init phase's parameters) over processes;
        a no-op in one process."""
        if self.phase is not None:
            distributed.average_gradients(self.phase.parameters())

    # ------------------------------------------------------------------ forward
    def _call(self, name):
        """`_calls[name]`, compiled when the distiller compiles."""
        if self.compile_mode is None:
            return self._calls[name]
        if name not in self._compiled:
            self._compiled[name] = compile_step(self._calls[name], self.compile_mode)
        return self._compiled[name]

    def teacher_outputs(self, batch):
        if self.teacher is None:
            return None if self.cached_teacher is None else self.cached_teacher.outputs(batch)
        feats, logits = self._call("teacher")(batch.get("image_t", batch["image"]), is_feat=True,
                                              preact=self.method.teacher_taps_preact)
        return Outputs(feats, logits)

    def student_outputs(self, batch):
        # init phases train outside DDP: their gradients are averaged by sync_gradients
        student = self._call("student" if self.phase is None else "student_in_phase")
        feats, logits = student(batch["image"], is_feat=True, preact=self.method.preact)
        return Outputs(feats, logits)

    def forward(self, batch, epoch):
        if self.compile_mode is not None:
            mark_step_begin(batch["image"].device)
        if self.channels_last:
            batch = {k: to_channels_last(v) if k in ("image", "image_t") else v for k, v in batch.items()}
        with autocast(batch["image"].device, self.amp):
            if self.phase is not None:
                s = self.student_outputs(batch) if self.phase.run_student else None
                return self._call("phase")(s, self.teacher_outputs(batch), batch), None
            s = self.student_outputs(batch)
            # the epoch as a tensor: a compiled method is then not specialised (recompiled) per epoch
            terms = self._call("method")(s, self.teacher_outputs(batch), batch, torch.tensor(epoch))
            return terms, self.method.accuracy_logits(s)

    def classify(self, images):
        """The student's logits (evaluation)."""
        return self.student(images)

    def classify_with_teacher(self, images):
        return self.teacher(images, is_feat=False)


def build_distiller(method_name, student_arch, teacher, teacher_arch, image_shape, num_classes, train_labels, device,
                    *, weights=None, hparams=None, lr=0.05, seed=0, epochs=240, amp="off", channels_last=False,
                    compile_mode=None):
    """What the training scripts train and bench/speed.py times, built in one way: the student, the
    method from both networks' probed tap shapes (the global RNG is drawn in the reference's order:
    the student's init, then the probes, then the method's modules), the Distiller around them.
    Without a teacher (a teacher trained alone) the method is plain CE. Returns (distiller, ctx)."""
    student = models.create(student_arch, num_classes).to(device)
    if teacher is None:
        return Distiller(student, losses.build(method_name, None), amp=amp, channels_last=channels_last,
                         compile_mode=compile_mode), None
    probed = teacher.net if isinstance(teacher, FrozenNet) else teacher
    ctx = losses.Context(
        probe_shapes(student, image_shape, device, False), probe_shapes(probed, image_shape, device, False),
        probe_shapes(student, image_shape, device, True), probe_shapes(probed, image_shape, device, True),
        student_arch, teacher_arch, num_classes, len(train_labels), train_labels, lr=lr, seed=seed, epochs=epochs)
    method = losses.build(method_name, ctx, weights, hparams).to(device)
    return Distiller(student, method, teacher, amp=amp, channels_last=channels_last, compile_mode=compile_mode), ctx
