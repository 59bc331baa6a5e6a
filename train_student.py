"""Distil a student from a frozen teacher: any method of the RepDistiller zoo, CRD or SSKD on
CIFAR-100 / digits (reference recipe: 240 epochs, batch 64, SGD lr 0.05 -- 0.01 for MobileNetV2 /
ShuffleV1 / ShuffleV2 students -- momentum 0.9, wd 5e-4, x0.1 after epochs 150/180/210; loss =
gamma CE + alpha KD + beta L_method with each method's standard weights unless -r/-a/-b are given),
or SimReg (`--method simreg`) on ImageNet / ImageNet-100 / CIFAR-100 / digits (130 epochs, batch
256, SGD lr 0.05 momentum 0.9 wd 1e-4, cosine per epoch; a live teacher or cached teacher features)."""
import argparse
import hashlib
import json
import os

import torch

import losses
import models
from datasets import InMemoryLoader, build_image_sets
from datasets import imagenet as imagenet_data
from datasets.cifar100 import DatasetNotFoundError
from datasets.features import CacheMismatchError, FeatureCache, dataset_identity, image_set_identity
from engine import distributed
from engine.checkpoint import CheckpointError, file_sha256, load_file, load_state_dict_strict, save_atomic
from engine.distill import CachedTeacher, FrozenTeacher, forward_pair, probe_shapes, run_init_phase
from engine.fit import Trainer
from engine.logging import ExistingRunError, RunRecord
from engine.loops import NonFiniteLossError, evaluate
from engine.runtime import (UserError, add_data_args, add_run_args, exit_on_user_error, per_process_batch,
                            pick_device, seed_everything)
from engine.schedule import make_schedule, parse_milestones
from losses import MethodError
from models.weights import (TEACHER_FORMATS, infer_cifar_arch, load_cifar_checkpoint, load_imagenet_teacher,
                            unwrap_state_dict)

FOLDER_DATASETS = ("imagenet", "imagenet100")
# (epochs, batch, weight decay, schedule, save-every) of the two recipes
RECIPES = {"cifar": (240, 64, 5e-4, "step", 40), "simreg": (130, 256, 1e-4, "cosine", 10)}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_data_args(p, datasets=("cifar100", "digits") + FOLDER_DATASETS)
    p.add_argument("--method", "--distill", dest="method", default="kd", help=", ".join(sorted(losses.METHODS)))
    p.add_argument("--teacher", "--path-t", dest="teacher", default=None,
                   help="teacher checkpoint: ours, RepDistiller's, SSKD's, mdistiller's, or (ImageNet) a "
                        "self-supervised teacher file")
    p.add_argument("--teacher-arch", default=None,
                   help="CIFAR teacher architecture when the checkpoint does not record it (else inferred from its keys)")
    p.add_argument("--teacher-format", default="auto", choices=["auto", *TEACHER_FORMATS],
                   help="ImageNet teacher file format (models/weights.py)")
    p.add_argument("--teacher-feats", default=None,
                   help="cached teacher features (cache_features.py output prefix): SimReg without a teacher network")
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
    m.add_argument("--mlp-layers", type=int, default=4, choices=[1, 2, 4],
                   help="SimReg prediction head: 4 (default), 2 (linear, as the reference) or 1 (BN + Linear)")
    m.add_argument("--mlp2-bn-relu", action="store_true", help="SimReg 2-layer head with BN + ReLU in between")
    m.add_argument("--no-normalize", action="store_true", help="SimReg: plain MSE on un-normalised vectors")
    m.add_argument("--aug", default="weak_weak", choices=imagenet_data.AUGMENTATIONS,
                   help="SimReg (teacher, student) augmentations on ImageNet")
    m.add_argument("--single-aug", default=True, action=argparse.BooleanOptionalAction,
                   help="SimReg: one augmented view shared by student and teacher (the paper default)")
    m.add_argument("--image-size", type=int, default=224, help="ImageNet crop size")
    m.add_argument("--workers", type=int, default=8, help="ImageNet data-loading processes")
    o = p.add_argument_group("optimisation (defaults: the CIFAR recipe, or SimReg's with --method simreg)")
    o.add_argument("--epochs", type=int, default=None)
    o.add_argument("--batch-size", type=int, default=None, help="global batch (split over torchrun processes)")
    o.add_argument("--lr", type=float, default=None, help="0.05; 0.01 for MobileNetV2/ShuffleV1/ShuffleV2 CIFAR students")
    o.add_argument("--schedule", choices=["step", "cosine"], default=None)
    o.add_argument("--lr-decay-epochs", default="150,180,210")
    o.add_argument("--lr-decay-rate", type=float, default=0.1)
    o.add_argument("--momentum", type=float, default=0.9)
    o.add_argument("--weight-decay", type=float, default=None)
    o.add_argument("--eval-batch-size", type=int, default=256)
    add_run_args(p, default_save_dir="./save/students")
    p.set_defaults(save_every=None)
    args = p.parse_args(argv)
    epochs, batch, wd, schedule, save_every = RECIPES["simreg" if args.method == "simreg" else "cifar"]
    for name, value in (("epochs", epochs), ("batch_size", batch), ("weight_decay", wd), ("schedule", schedule),
                        ("save_every", save_every)):
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.lr is None:
        args.lr = 0.05 if args.method == "simreg" else models.default_lr(args.student)
    if args.init_cache is None:
        args.init_cache = os.path.join(args.save_dir, "init_cache")
    return args


def method_hparams(args):
    keys = ("kd_T", "hint_layer", "feat_dim", "nce_k", "nce_t", "nce_m", "init_epochs", "tf_T", "ss_T", "ratio_tf",
            "ratio_ss", "tf_weight", "ss_weight", "t_epochs", "t_lr", "lr", "seed", "mlp_layers", "mlp2_bn_relu",
            "no_normalize")
    hp = {k: getattr(args, k) for k in keys}
    hp["t_milestones"] = parse_milestones(args.t_milestones)
    return hp


# ------------------------------------------------------------------------------ data
class Data:
    """Loaders and what the method and the teacher need to know about the training set."""

    def __init__(self, args, views, info, device):
        shard = {"rank": info.rank, "world_size": info.world_size}
        batch = per_process_batch(args.batch_size, info.world_size)
        self.generator = torch.Generator().manual_seed(args.seed)
        if args.dataset in FOLDER_DATASETS:
            if views == "rotations":
                raise MethodError("SSKD's rotated views are implemented for the in-memory data sets (cifar100, digits)")
            size = args.image_size
            train_tf = (imagenet_data.simreg_views(args.aug, args.single_aug, size) if views == "pair"
                        else imagenet_data.weak_transform(size))
            train = imagenet_data.build_imagefolder(args.data_root, "train", train_tf, args.dataset)
            val = imagenet_data.build_imagefolder(args.data_root, "val", imagenet_data.eval_transform(size),
                                                  args.dataset)
            self.train_loader = imagenet_data.FolderLoader(train, batch, True, device, self.generator,
                                                           args.workers, **shard)
            self.test_loader = imagenet_data.FolderLoader(val, args.eval_batch_size, False, device, None,
                                                          args.workers, **shard)
            self.num_classes, self.n_data = len(train.classes), len(train)
            self.labels = torch.tensor(train.targets)
            self.image_shape = (3, size, size)
            self.mean, self.std = imagenet_data.IMAGENET_MEAN, imagenet_data.IMAGENET_STD
            self.identity = dataset_identity(args.dataset, "train", train.file_names())
        else:
            train, test = build_image_sets(args.dataset, args.data_root, args.download)
            self.train_loader = InMemoryLoader(train, batch, True, device, self.generator, views=views, **shard)
            self.test_loader = InMemoryLoader(test, args.eval_batch_size, False, device, **shard)
            self.num_classes, self.n_data, self.labels = train.num_classes, len(train), train.labels
            self.image_shape = tuple(train.images.shape[1:])
            self.mean, self.std = train.mean, train.std
            self.identity = image_set_identity(train, "train")[0]
            self.train_set, self.test_set = train, test


# ------------------------------------------------------------------------------ teacher
def load_teacher(args, data, device):
    """(arch, teacher): a CachedTeacher, an ImageNet teacher file, or a CIFAR checkpoint."""
    if args.teacher_feats:
        if args.method != "simreg":
            raise UserError("--teacher-feats serves SimReg only (the other methods need the teacher network)")
        cache = FeatureCache(args.teacher_feats).check(data.identity)
        return f"cached:{cache.meta['source'].get('arch', '?')}", CachedTeacher(cache)
    if args.teacher is None:
        raise UserError("give --teacher (a checkpoint) or, for SimReg, --teacher-feats")
    if args.dataset in FOLDER_DATASETS:
        net, spec = load_imagenet_teacher(args.teacher, args.teacher_format)
        norm = ((data.mean, data.std), (spec.mean, spec.std))
        return spec.arch if spec.arch else "ours", FrozenTeacher(net.to(device), norm).to(device)
    obj = load_file(args.teacher)
    arch = args.teacher_arch or (obj.get("arch") if isinstance(obj, dict) else None)
    if arch is None:
        arch, _ = infer_cifar_arch(unwrap_state_dict(obj))
        if arch is None:
            raise UserError(f"cannot tell the teacher architecture of {args.teacher}: pass --teacher-arch")
    net = models.create(arch, data.num_classes)
    load_cifar_checkpoint(net, args.teacher, prefer="teacher")
    return arch, FrozenTeacher(net.to(device))


# ------------------------------------------------------------------------------ main
@exit_on_user_error(DatasetNotFoundError, models.UnknownModelError, CheckpointError, ExistingRunError,
                    NonFiniteLossError, MethodError, CacheMismatchError)
def main(argv=None):
    args = parse_args(argv)
    info, device = distributed.init(pick_device(args.device))
    try:
        return distil(args, info, device)
    finally:
        distributed.cleanup()


def default_name(args, weights):
    source = args.teacher_feats or args.teacher or "teacher"
    teacher_dir = os.path.dirname(os.path.abspath(source))
    if os.path.basename(teacher_dir) == "ckpt":   # our layout: <run>/ckpt/last.pth
        teacher_dir = os.path.dirname(teacher_dir)
    return (f"S-{args.student}_T-{os.path.basename(teacher_dir)}_{args.dataset}_{args.method}_"
            f"r-{weights.ce:g}_a-{weights.kd:g}_b-{weights.distill:g}_{args.trial}")


def distil(args, info, device):
    weights = losses.resolve_weights(args.method, args.gamma, args.alpha, args.beta)
    args.name = args.name or default_name(args, weights)
    folder = os.path.join(args.save_dir, args.name)
    init_path = os.path.join(folder, "ckpt", "init.pth")
    resume_from_init = args.resume and not os.path.isfile(os.path.join(folder, "ckpt", "last.pth")) \
        and os.path.isfile(init_path)
    record = RunRecord(folder, resume=args.resume and not resume_from_init, is_main=info.is_main)
    distributed.barrier()   # every process has checked the folder before the first one writes to it
    method_cls = losses.METHODS[args.method]
    data = Data(args, method_cls.views, info, device)
    seed_everything(args.seed)

    teacher_arch, teacher = load_teacher(args, data, device)
    student = models.create(args.student, data.num_classes).to(device)
    teacher_probe = teacher if isinstance(teacher, CachedTeacher) else teacher.net
    ctx = losses.Context(
        s_shapes=probe_shapes(student, data.image_shape, device, False),
        t_shapes=probe_shapes(teacher_probe, data.image_shape, device, False),
        s_shapes_pre=probe_shapes(student, data.image_shape, device, True),
        t_shapes_pre=probe_shapes(teacher_probe, data.image_shape, device, True),
        student_arch=args.student, teacher_arch=teacher_arch, num_classes=data.num_classes,
        n_data=data.n_data, train_labels=data.labels, hp=method_hparams(args))
    method = losses.build(args.method, ctx, weights).to(device)
    student_net = distributed.wrap(student, info, device, args.sync_bn, args.data_parallel)

    def step(batch):
        s, t = forward_pair(student_net, teacher, batch, method.preact)
        return method_net(s, t, batch), method.accuracy_logits(s)

    def trainable(module):
        return [p for p in module.parameters() if p.requires_grad]

    meta = {"arch": args.student, "num_classes": data.num_classes, "dataset": args.dataset,
            "method": args.method, "teacher_arch": teacher_arch,
            "weights": {"ce": weights.ce, "kd": weights.kd, "distill": weights.distill}}
    if args.schedule == "cosine":
        lr_at, schedule = make_schedule("cosine", args.lr, total_epochs=args.epochs)
    else:
        lr_at, schedule = make_schedule("step", args.lr, parse_milestones(args.lr_decay_epochs), args.lr_decay_rate)
    classifies = method_cls.trains_classifier

    def make_trainer():
        # built after the init phase: that phase decides which method parameters stay trainable
        nonlocal method_net
        if info.enabled and any(p.requires_grad for p in method.parameters()):
            # the method's buffers (CRD memory banks) are kept identical by the method itself
            method_net = distributed.wrap(method, info, device, broadcast_buffers=False)
        optimizer = torch.optim.SGD(trainable(student) + trainable(method), lr=args.lr, momentum=args.momentum,
                                    weight_decay=args.weight_decay)
        return Trainer(record, student, optimizer, lr_at, args.epochs, step, data.train_loader,
                       data.test_loader if classifies else None, meta, schedule,
                       extra_modules={"method": method}, save_every=args.save_every, amp=args.amp,
                       show_progress=not args.no_progress and info.is_main)

    method_net = method
    phase = method.init_phase(student, ctx)
    if args.resume and not resume_from_init:
        if phase is not None and phase.on_end:
            phase.on_end()   # the checkpoint holds the state after the init phase
        trainer = make_trainer()
        trainer.resume()
        record.open(args, args.seed)
    else:
        record.open(args, args.seed)
        if classifies:
            teacher_test = evaluate(teacher, data.test_loader, forward=lambda x: teacher(x, is_feat=False))
            meta["teacher_top1"] = teacher_test["top1"]
            told = f", test top-1 {teacher_test['top1']:.2f}"
        else:
            told = ""
        record.log(f"{args.method}: teacher {teacher_arch} ({args.teacher_feats or args.teacher}{told}) -> student "
                   f"{args.student} on {args.dataset}, weights ce {weights.ce:g} kd {weights.kd:g} method "
                   f"{weights.distill:g}, on {device} x {info.world_size} process(es); writing to {record.folder}")
        if phase is not None:
            run_or_reuse_init(args, phase, student, teacher, method, data, device, record, init_path,
                              resume_from_init, info)
        trainer = make_trainer()
    try:
        summary = trainer.run()
    finally:
        record.close()
    if "best" in summary:
        record.log(f"done: last top-1 {summary['last']['top1']:.2f}, best top-1 {summary['best']['top1']:.2f} "
                   f"(epoch {summary['best']['epoch']}); run folder {record.folder}")
    else:
        record.log(f"done: last train loss {summary['last']['train_loss']:.4f}; run folder {record.folder}")
    return summary


def run_or_reuse_init(args, phase, student, teacher, method, data, device, record, init_path, resume_from_init,
                      info):
    """Run the method's init phase, or load its result from this run (resume) or from the init cache
    (same teacher file, student, method, seed and hyper-parameters)."""
    key = hashlib.sha256(json.dumps({
        "method": args.method, "teacher": file_sha256(args.teacher), "student": args.student,
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
    shard = {"rank": info.rank, "world_size": info.world_size}
    batch = per_process_batch(args.batch_size, info.world_size)
    loader = InMemoryLoader(data.train_set, batch, True, device, data.generator, views=phase.views, **shard)
    test_loader = InMemoryLoader(data.test_set, args.eval_batch_size, False, device, views=phase.views, **shard)
    run_init_phase(phase, student, teacher, method, loader, test_loader, args.momentum, args.weight_decay,
                   record, show_progress=not args.no_progress and info.is_main)
    if info.is_main:
        state = {"student": student.state_dict(), "method": method.state_dict(), "phase": phase.name}
        save_atomic(state, init_path)
        save_atomic(state, cache_path)


if __name__ == "__main__":
    main()
