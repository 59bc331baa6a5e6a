"""Distil a student from a frozen teacher with any method of the RepDistiller zoo, CRD or SSKD
(`--method`), on CIFAR-100 or digits. Defaults are the reference recipe: 240 epochs, batch 64,
SGD lr 0.05 (0.01 for MobileNetV2/ShuffleV1/ShuffleV2 students), momentum 0.9, wd 5e-4, x0.1 after
epochs 150/180/210; loss = gamma CE + alpha KD + beta L_method with each method's standard weights
unless -r/-a/-b are given."""
import argparse
import hashlib
import json
import os

import torch

import losses
import models
from datasets import InMemoryLoader, build_image_sets
from datasets.cifar100 import DatasetNotFoundError
from engine.checkpoint import CheckpointError, load_file, load_state_dict_strict, save_atomic
from engine.distill import FrozenTeacher, forward_pair, probe_shapes, run_init_phase
from engine.fit import Trainer
from engine.logging import ExistingRunError, RunRecord
from engine.loops import NonFiniteLossError, evaluate
from engine.runtime import (UserError, add_data_args, add_run_args, exit_on_user_error, pick_device,
                            seed_everything)
from engine.schedule import make_schedule, parse_milestones
from losses import MethodError
from models.weights import infer_cifar_arch, load_cifar_checkpoint, unwrap_state_dict


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_data_args(p)
    p.add_argument("--method", "--distill", dest="method", default="kd", help=", ".join(sorted(losses.METHODS)))
    p.add_argument("--teacher", "--path-t", dest="teacher", required=True,
                   help="teacher checkpoint: ours, RepDistiller's, SSKD's or mdistiller's layout")
    p.add_argument("--teacher-arch", default=None,
                   help="teacher architecture when the checkpoint does not record it (else inferred from its keys)")
    p.add_argument("--student", "--model-s", dest="student", default="resnet8x4")
    w = p.add_argument_group("loss weights (default: the method's standard values)")
    w.add_argument("-r", "--gamma", type=float, default=None, help="cross-entropy weight")
    w.add_argument("-a", "--alpha", type=float, default=None, help="KD weight")
    w.add_argument("-b", "--beta", type=float, default=None, help="method weight (SSKD: scales tf and ss)")
    w.add_argument("--kd-T", type=float, default=4.0, help="KD temperature")
    m = p.add_argument_group("method hyper-parameters")
    m.add_argument("--hint-layer", type=int, default=2, choices=[0, 1, 2, 3, 4])
    m.add_argument("--feat-dim", type=int, default=128, help="CRD / CC embedding width")
    m.add_argument("--nce-k", type=int, default=16384, help="CRD negatives per sample")
    m.add_argument("--nce-t", type=float, default=0.07)
    m.add_argument("--nce-m", type=float, default=0.5)
    m.add_argument("--init-epochs", type=int, default=30, help="AB / FT / FSP init phase")
    m.add_argument("--tf-T", type=float, default=4.0)
    m.add_argument("--ss-T", type=float, default=0.5)
    m.add_argument("--ratio-tf", type=float, default=1.0)
    m.add_argument("--ratio-ss", type=float, default=0.75)
    m.add_argument("--tf-weight", type=float, default=2.7)
    m.add_argument("--ss-weight", type=float, default=10.0)
    m.add_argument("--t-epochs", type=int, default=60, help="SSKD teacher-head phase")
    m.add_argument("--t-lr", type=float, default=0.05)
    m.add_argument("--t-milestones", default="30,45")
    m.add_argument("--init-cache", default=None,
                   help="folder where init-phase results are saved and reused (default <save-dir>/init_cache)")
    o = p.add_argument_group("optimisation")
    o.add_argument("--epochs", type=int, default=240)
    o.add_argument("--batch-size", type=int, default=64)
    o.add_argument("--lr", type=float, default=None, help="default 0.05, 0.01 for MobileNetV2/ShuffleV1/ShuffleV2")
    o.add_argument("--lr-decay-epochs", default="150,180,210")
    o.add_argument("--lr-decay-rate", type=float, default=0.1)
    o.add_argument("--momentum", type=float, default=0.9)
    o.add_argument("--weight-decay", type=float, default=5e-4)
    o.add_argument("--eval-batch-size", type=int, default=256)
    add_run_args(p, default_save_dir="./save/students")
    args = p.parse_args(argv)
    if args.lr is None:
        args.lr = models.default_lr(args.student)
    if args.init_cache is None:
        args.init_cache = os.path.join(args.save_dir, "init_cache")
    return args


def load_teacher(args, num_classes, device):
    obj = load_file(args.teacher)
    arch = args.teacher_arch or (obj.get("arch") if isinstance(obj, dict) else None)
    if arch is None:
        arch, _ = infer_cifar_arch(unwrap_state_dict(obj))
        if arch is None:
            raise UserError(f"cannot tell the teacher architecture of {args.teacher}: pass --teacher-arch")
    net = models.create(arch, num_classes)
    load_cifar_checkpoint(net, args.teacher, prefer="teacher")
    return arch, FrozenTeacher(net.to(device))


def file_digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def method_hparams(args):
    keys = ("kd_T", "hint_layer", "feat_dim", "nce_k", "nce_t", "nce_m", "init_epochs", "tf_T", "ss_T", "ratio_tf",
            "ratio_ss", "tf_weight", "ss_weight", "t_epochs", "t_lr", "lr", "seed")
    hp = {k: getattr(args, k) for k in keys}
    hp["t_milestones"] = parse_milestones(args.t_milestones)
    return hp


@exit_on_user_error(DatasetNotFoundError, models.UnknownModelError, CheckpointError, ExistingRunError,
                    NonFiniteLossError, MethodError)
def main(argv=None):
    args = parse_args(argv)
    weights = losses.resolve_weights(args.method, args.gamma, args.alpha, args.beta)
    if args.name is None:
        teacher_dir = os.path.dirname(os.path.abspath(args.teacher))
        if os.path.basename(teacher_dir) == "ckpt":   # our layout: <run>/ckpt/last.pth
            teacher_dir = os.path.dirname(teacher_dir)
        args.name = (f"S-{args.student}_T-{os.path.basename(teacher_dir)}_"
                     f"{args.dataset}_{args.method}_r-{weights.ce:g}_a-{weights.kd:g}_b-{weights.distill:g}_{args.trial}")
    folder = os.path.join(args.save_dir, args.name)
    init_path = os.path.join(folder, "ckpt", "init.pth")
    resume_from_init = args.resume and not os.path.isfile(os.path.join(folder, "ckpt", "last.pth")) \
        and os.path.isfile(init_path)
    record = RunRecord(folder, resume=args.resume and not resume_from_init)
    device = pick_device(args.device)
    train_set, test_set = build_image_sets(args.dataset, args.data_root, args.download)
    seed_everything(args.seed)

    teacher_arch, teacher = load_teacher(args, train_set.num_classes, device)
    student = models.create(args.student, train_set.num_classes).to(device)
    method_cls = losses.METHODS[args.method]
    image_shape = tuple(train_set.images.shape[1:])
    ctx = losses.Context(
        s_shapes=probe_shapes(student, image_shape, device, False),
        t_shapes=probe_shapes(teacher.net, image_shape, device, False),
        s_shapes_pre=probe_shapes(student, image_shape, device, True),
        t_shapes_pre=probe_shapes(teacher.net, image_shape, device, True),
        student_arch=args.student, teacher_arch=teacher_arch, num_classes=train_set.num_classes,
        n_data=len(train_set), train_labels=train_set.labels, hp=method_hparams(args))
    method = losses.build(args.method, ctx, weights).to(device)

    generator = torch.Generator().manual_seed(args.seed)
    train_loader = InMemoryLoader(train_set, args.batch_size, train=True, device=device, generator=generator,
                                  views=method_cls.views)
    test_loader = InMemoryLoader(test_set, args.eval_batch_size, train=False, device=device)

    def step(batch):
        s, t = forward_pair(student, teacher, batch["image"], method.preact)
        return method(s, t, batch), method.accuracy_logits(s)

    def trainable(module):
        return [p for p in module.parameters() if p.requires_grad]

    meta = {"arch": args.student, "num_classes": train_set.num_classes, "dataset": args.dataset,
            "method": args.method, "teacher_arch": teacher_arch,
            "weights": {"ce": weights.ce, "kd": weights.kd, "distill": weights.distill}}
    lr_at, schedule = make_schedule("step", args.lr, parse_milestones(args.lr_decay_epochs), args.lr_decay_rate)

    def make_trainer():
        # built after the init phase: that phase decides which method parameters stay trainable
        optimizer = torch.optim.SGD(trainable(student) + trainable(method), lr=args.lr, momentum=args.momentum,
                                    weight_decay=args.weight_decay)
        return Trainer(record, student, optimizer, lr_at, args.epochs, step, train_loader, test_loader, meta,
                       schedule, extra_modules={"method": method}, save_every=args.save_every, amp=args.amp,
                       show_progress=not args.no_progress)

    phase = method.init_phase(student, ctx)
    if args.resume and not resume_from_init:
        if phase is not None and phase.on_end:
            phase.on_end()   # the checkpoint holds the state after the init phase
        trainer = make_trainer()
        trainer.resume()
        record.open(args, args.seed)
    else:
        record.open(args, args.seed)
        teacher_test = evaluate(teacher, test_loader, forward=lambda x: teacher(x, is_feat=False))
        meta["teacher_top1"] = teacher_test["top1"]
        record.log(f"{args.method}: teacher {teacher_arch} ({args.teacher}, test top-1 {teacher_test['top1']:.2f}) "
                   f"-> student {args.student} on {args.dataset}, weights ce {weights.ce:g} kd {weights.kd:g} "
                   f"method {weights.distill:g}, on {device}; writing to {record.folder}")
        if phase is not None:
            run_or_reuse_init(args, phase, student, teacher, method, train_set, test_set, device, generator,
                              record, init_path, resume_from_init)
        trainer = make_trainer()
    try:
        summary = trainer.run()
    finally:
        record.close()
    record.log(f"done: last top-1 {summary['last']['top1']:.2f}, best top-1 {summary['best']['top1']:.2f} "
               f"(epoch {summary['best']['epoch']}); run folder {record.folder}")
    return summary


def run_or_reuse_init(args, phase, student, teacher, method, train_set, test_set, device, generator, record,
                      init_path, resume_from_init):
    """Run the method's init phase, or load its result from this run (resume) or from the init cache
    (same teacher file, student, method, seed and hyper-parameters)."""
    key = hashlib.sha256(json.dumps({
        "method": args.method, "teacher": file_digest(args.teacher), "student": args.student,
        "dataset": args.dataset, "batch_size": args.batch_size, "hp": method_hparams(args),
        "momentum": args.momentum, "weight_decay": args.weight_decay}, sort_keys=True).encode()).hexdigest()[:16]
    cache_path = os.path.join(args.init_cache, f"{args.method}_{key}.pth")
    source = init_path if resume_from_init else cache_path if os.path.isfile(cache_path) else None
    if source:
        state = load_file(source)
        load_state_dict_strict(student, state["student"], what="student")
        load_state_dict_strict(method, state["method"], what="method")
        if phase.on_end:
            phase.on_end()
        record.log(f"init phase {phase.name}: reused {source}")
        return
    loader = InMemoryLoader(train_set, args.batch_size, train=True, device=device, generator=generator,
                            views=phase.views)
    test_loader = InMemoryLoader(test_set, args.eval_batch_size, train=False, device=device, views=phase.views)
    run_init_phase(phase, student, teacher, method, loader, test_loader, args.momentum, args.weight_decay,
                   record, show_progress=not args.no_progress)
    state = {"student": student.state_dict(), "method": method.state_dict(), "phase": phase.name}
    save_atomic(state, init_path)
    save_atomic(state, cache_path)


if __name__ == "__main__":
    main()
