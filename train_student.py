"""Distil a student from a frozen teacher: any method of the RepDistiller zoo, CRD or SSKD on
CIFAR-100 / digits (reference recipe: 240 epochs, batch 64, SGD lr 0.05 -- 0.01 for MobileNetV2 /
ShuffleV1 / ShuffleV2 students -- momentum 0.9, wd 5e-4, x0.1 after epochs 150/180/210; loss =
gamma CE + alpha KD + beta L_method with each method's standard weights unless -r/-a/-b are given),
or SimReg (`--method simreg`) on ImageNet / ImageNet-100 / CIFAR-100 / digits (130 epochs, batch
256, SGD lr 0.05 momentum 0.9 wd 1e-4, cosine per epoch; a live teacher or cached teacher features).
Every method's hyper-parameters and recipe default to its own values (listed at the end)."""
import argparse
import os

import torch

import datasets
import losses
import models
from core import distributed, process_clock, published
from core.cli import (add_data_args, add_image_folder_args, add_run_args, exit_on_user_error, per_process_batch,
                      run_in_process_group, seed_everything)
from core.errors import UserError
from core.compile import resolve_mode
from core.optim import sgd
from core.schedule import Schedule
from core.validate import (Parser, int_list, momentum, non_negative_float, positive_float, positive_int,
                           require, run_folder_path, writable_folder)
from datasets.imagenet_constants import AUGMENTATIONS
from datasets.feature_cache import FeatureCache
from engine.distill import CachedTeacher, FrozenNet, build_distiller
from engine.init_phase import init_cache_path, reuse_or_run_init
from engine.loops import evaluate
from engine.run_folder import RunFolder
from engine.trainer import Trainer, restart_from_checkpoint
from models import weights

RECIPE_FLAGS = {"epochs": positive_int, "batch_size": positive_int, "lr": positive_float, "schedule": str,
                "lr_decay_epochs": int_list, "lr_decay_rate": positive_float, "momentum": momentum,
                "weight_decay": non_negative_float}


def method_defaults_text():
    """Each method's standard weights, hyper-parameters and recipe (the --help epilog)."""
    lines = ["method defaults (-r gamma, -a alpha, -b beta; hyper-parameters; recipe where not CIFAR's):"]
    for name, cls in sorted(losses.METHODS.items()):
        w = cls.standard_weights
        hp = ", ".join(f"{h.name} {h.default}" for h in cls.declared_hparams())
        recipe = "" if cls.recipe == losses.CIFAR_RECIPE else f"; recipe {cls.recipe}"
        lines.append(f"  {name}: -r {w.ce:g} -a {w.kd:g} -b {w.distill:g}; {hp}{recipe}")
    return "\n".join(lines)


def recipe_help(field):
    values = {name: getattr(cls.recipe, field) for name, cls in losses.METHODS.items()
              if getattr(cls.recipe, field) != getattr(losses.CIFAR_RECIPE, field)}
    text = f"default {getattr(losses.CIFAR_RECIPE, field)}" + "".join(f", {m}: {v}" for m, v in values.items())
    return text.replace("%", "%%")


def parse_args(argv=None):
    p = Parser(description=__doc__, epilog=method_defaults_text(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(p, datasets.NAMES, datasets.data_root_help())
    p.add_argument("--method", "--distill", dest="method", default="kd", help=", ".join(sorted(losses.METHODS)))
    p.add_argument("--teacher", "--path-t", dest="teacher", default=None,
                   help="teacher checkpoint: ours, RepDistiller's, SSKD's, mdistiller's, or a self-supervised file")
    p.add_argument("--teacher-arch", default=None, help="only when the checkpoint does not tell the architecture")
    p.add_argument("--teacher-format", default="auto", choices=["auto", *weights.FORMAT_NAMES],
                   help="teacher checkpoint layout (default: detected)")
    p.add_argument("--teacher-feats", default=None,
                   help="cached teacher features (cache_features.py output prefix): SimReg without a teacher network")
    p.add_argument("--student", "--model-s", dest="student", default="resnet8x4")
    w = p.add_argument_group("loss weights (default: the method's standard values)")
    w.add_argument("-r", "--gamma", type=non_negative_float, default=None, help="cross-entropy weight")
    w.add_argument("-a", "--alpha", type=non_negative_float, default=None, help="KD weight")
    w.add_argument("-b", "--beta", type=non_negative_float, default=None, help="method weight (SSKD: scales tf and ss)")
    m = p.add_argument_group("method hyper-parameters (default: the method's own)")
    losses.add_hparam_args(m)
    m.add_argument("--init-cache", default=None,
                   help="folder where init-phase results are saved and reused (default <save-dir>/init_cache)")
    d = add_image_folder_args(p)
    d.add_argument("--aug", default="weak_weak", choices=AUGMENTATIONS,
                   help="SimReg (teacher, student) augmentations")
    d.add_argument("--single-aug", default=True, action=argparse.BooleanOptionalAction,
                   help="SimReg: one augmented view shared by student and teacher (the paper default)")
    o = p.add_argument_group("optimisation (default: the method's recipe)")
    for field, kind in RECIPE_FLAGS.items():
        o.add_argument("--" + field.replace("_", "-"), type=kind, default=None, help=recipe_help(field),
                       choices=["step", "cosine", "constant"] if field == "schedule" else None)
    o.add_argument("--eval-batch-size", type=positive_int, default=256)
    add_run_args(p, default_save_dir="./save/students")
    p.set_defaults(save_every=None)
    args = p.parse_args(argv)
    recipe = losses.method_class(args.method).recipe
    for field in (*RECIPE_FLAGS, "save_every"):
        if getattr(args, field) is None:
            setattr(args, field, getattr(recipe, field))
    if args.lr is None:
        args.lr = models.default_lr(args.student)
    if args.init_cache is None:
        args.init_cache = os.path.join(args.save_dir, "init_cache")
    writable_folder(args.init_cache, "--init-cache")
    require(not (args.teacher and args.teacher_feats),
            "give --teacher or --teacher-feats, not both (with cached features the teacher network is not used)")
    return args


def build_teacher(args, train, device):
    """(architecture, teacher, identity): cached features or a frozen network; the identity names
    what the teacher's outputs depend on (its file's content, or the feature cache's)."""
    if args.teacher_feats:
        if not losses.method_class(args.method).takes_cached_teacher:
            takers = ", ".join(sorted(n for n, c in losses.METHODS.items() if c.takes_cached_teacher))
            raise UserError(f"--teacher-feats serves {takers} only ({args.method} needs the teacher network)")
        cache = FeatureCache(args.teacher_feats).check(train.identity)
        return f"cached:{cache.meta['source'].get('arch', '?')}", CachedTeacher(cache), {"features": cache.fingerprint}
    if args.teacher is None:
        raise UserError("give --teacher (a checkpoint) or, for SimReg, --teacher-feats")
    loaded = weights.load(args.teacher, args.teacher_arch, args.teacher_format, side="teacher")
    if losses.METHODS[args.method].trains_classifier and loaded.num_classes not in (None, train.num_classes):
        raise UserError(f"the teacher {args.teacher} classifies {loaded.num_classes} classes, "
                        f"{args.dataset} has {train.num_classes}")
    return loaded.arch, FrozenNet(loaded.model, train.norm, loaded.input_norm).to(device), {"file": loaded.sha256}


def default_name(args, loss_weights):
    teacher_dir = os.path.dirname(os.path.abspath(args.teacher_feats or args.teacher or "teacher"))
    if os.path.basename(teacher_dir) == "ckpt":   # our layout: <run>/ckpt/last.pth
        teacher_dir = os.path.dirname(teacher_dir)
    return (f"S-{args.student}_T-{os.path.basename(teacher_dir)}_{args.dataset}_{args.method}_"
            f"r-{loss_weights.ce:g}_a-{loss_weights.kd:g}_b-{loss_weights.distill:g}_{args.trial}")


def init_cache_settings(args, teacher_id, hparams):
    """Everything an init phase's result depends on, and nothing else (see engine.init_phase)."""
    return {"teacher": teacher_id, "student": args.student, "dataset": args.dataset, "seed": args.seed,
            "batch_size": args.batch_size, "lr": args.lr, "momentum": args.momentum,
            "weight_decay": args.weight_decay, "hparams": hparams}


@exit_on_user_error
def main(argv=None):
    started = process_clock.run_started()
    return run_in_process_group(distil, parse_args(argv), started)


def distil(args, info, device, started=None):
    # ============ run folder: checked before anything is written ============
    method_cls = losses.method_class(args.method)
    loss_weights = losses.resolve_weights(args.method, args.gamma, args.alpha, args.beta)
    args.name = args.name or default_name(args, loss_weights)
    with RunFolder(run_folder_path(args.save_dir, args.name), args, args.resume, info.is_main, args.save_every,
                   not args.no_progress, args.allow_changed_args) as run:
        distributed.barrier()   # every process has checked the folder before the first one writes to it

        # ============ data ============
        shard = {"device": device, "rank": info.rank, "world_size": info.world_size, "image_size": args.image_size,
                 "workers": args.workers, "decode": args.decode}
        generator = torch.Generator().manual_seed(args.seed)
        train = datasets.build(args.dataset, args.data_root, "train", "train", method_cls.views, generator=generator,
                               batch_size=per_process_batch(args.batch_size, info.world_size), download=args.download,
                               aug=args.aug, single_aug=args.single_aug, **shard)
        test = datasets.build(args.dataset, args.data_root, "test", "eval", batch_size=args.eval_batch_size, **shard)
        seed_everything(args.seed)

        # ============ distiller: student, frozen teacher, method ============
        teacher_arch, teacher, teacher_id = build_teacher(args, train, device)
        given = {h.name: getattr(args, h.name) for h in method_cls.declared_hparams() if getattr(args, h.name) is not None}
        distiller, ctx = build_distiller(
            args.method, args.student, teacher, teacher_arch, train.image_shape, train.num_classes, train.labels,
            device, weights=loss_weights, hparams=given, lr=args.lr, seed=args.seed, epochs=args.epochs, amp=args.amp,
            channels_last=args.channels_last, compile_mode=resolve_mode(args.compile, device))
        student, method = distiller.student, distiller.method
        run.meta = {"arch": args.student, "num_classes": train.num_classes, "dataset": args.dataset,
                    "method": args.method, "teacher_arch": teacher_arch, "hparams": dict(method.hp),
                    "weights": {"ce": method.w.ce, "kd": method.w.kd, "distill": method.w.distill}}
        run.open(args, args.seed)
        ignored = sorted(h.name for h, _ in losses.hparam_defaults().values()
                         if getattr(args, h.name) is not None and h.name not in given)
        if ignored:
            run.log(f"note: {', '.join(ignored)} are not hyper-parameters of {args.method} and were ignored")
        told = ""
        if method_cls.trains_classifier:
            distiller.eval()
            run.meta["teacher_top1"] = evaluate(distiller.classify_with_teacher, test.loader)["top1"]
            told = f", test top-1 {run.meta['teacher_top1']:.2f}"
            if args.dataset == "cifar100":
                warning = published.teacher_warning(teacher_arch, run.meta["teacher_top1"])
                if warning:
                    run.log(warning)
        run.log(f"{args.method}: teacher {teacher_arch} ({args.teacher_feats or args.teacher}{told}) -> student "
                f"{args.student} on {args.dataset}, weights ce {method.w.ce:g} kd {method.w.kd:g} method "
                f"{method.w.distill:g}, on {device} x {info.world_size} process(es); writing to {run.folder}")

        # ============ init phase (AB, FT, FSP, SSKD's teacher head): run, or reuse its result ============
        phase = method.init_phase(student, ctx)
        if phase is not None:
            phase_test = datasets.build(args.dataset, args.data_root, "test", "eval", phase.views,
                                        batch_size=args.eval_batch_size, **shard) if phase.evaluate else None
            cache = init_cache_path(args.init_cache, args.method, init_cache_settings(args, teacher_id, method.hp))
            reuse_or_run_init(distiller, phase, train.loader, phase_test and phase_test.loader, run, cache,
                              args.momentum, args.weight_decay)

        # ============ optimizer, and the last checkpoint if the run continues ============
        distiller.parallelize(info, device, args.sync_bn, args.data_parallel)
        optimizer = sgd(distiller.trainable_parameters(), args.lr, args.momentum, args.weight_decay, device)
        schedule = Schedule(args.schedule, args.lr, args.epochs, tuple(int_list(args.lr_decay_epochs)), args.lr_decay_rate)
        trainer = Trainer(distiller, optimizer, (train.loader, test.loader if method_cls.trains_classifier else None),
                          schedule, run, args.ckpt_every_minutes, started)
        restart_from_checkpoint(run, trainer)

        # ============ the epochs ============
        summary = trainer.fit()
        if "best" in summary:
            run.log(f"done: last top-1 {summary['last']['top1']:.2f}, best top-1 {summary['best']['top1']:.2f} "
                    f"(epoch {summary['best']['epoch']}); run folder {run.folder}")
        else:
            run.log(f"done: last train loss {summary['last']['train_loss']:.4f}; run folder {run.folder}")
        return summary


if __name__ == "__main__":
    main()
