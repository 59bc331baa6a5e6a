"""Command-line plumbing shared by the scripts: common flags, device choice, seeding, and turning
a UserError into one clear message."""
import functools
import random
import sys

import numpy as np
import torch

from . import distributed
from .errors import Interrupted, UserError
from .compile import COMPILE_MODES
from .precision import PRECISIONS
from .validate import non_negative_int, positive_float, positive_int


def add_data_args(parser, datasets, root_help, default="cifar100"):
    """--dataset (one of `datasets`), --data-root (what it holds: `root_help`) and --download."""
    g = parser.add_argument_group("data")
    g.add_argument("--dataset", default=default, choices=datasets)
    g.add_argument("--data-root", default="./data", help=root_help)
    g.add_argument("--download", action="store_true", help="download the data set (CIFAR) into --data-root first")
    return g


def add_image_folder_args(parser):
    """The image-folder (ImageNet) flags shared by training, evaluation and caching; returns the group."""
    g = parser.add_argument_group("image folders (ImageNet)")
    g.add_argument("--image-size", type=positive_int, default=224, help="crop size")
    g.add_argument("--workers", type=non_negative_int, default=8, help="data-loading processes")
    g.add_argument("--decode", choices=("cpu", "gpu"), default="cpu",
                   help="decode JPEGs with PIL in the workers (cpu, the reference's pixels) or in batches on "
                        "the training device (gpu)")
    return g


def add_run_args(parser, default_save_dir):
    g = parser.add_argument_group("run")
    g.add_argument("--save-dir", default=default_save_dir, help="parent folder of experiment folders")
    g.add_argument("--name", default=None, help="experiment folder name (default: derived from the arguments)")
    g.add_argument("--trial", default="0", help="trial label used in the default folder name")
    g.add_argument("--seed", type=non_negative_int, default=0)
    g.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    g.add_argument("--resume", action="store_true",
                   help="continue the run in the experiment folder (from its last checkpoint, or from scratch "
                        "when it stopped before its first one)")
    g.add_argument("--allow-changed-args", action="store_true",
                   help="let --resume continue with hyper-parameters other than the recorded ones (recorded in args.json)")
    g.add_argument("--ckpt-every-minutes", type=positive_float, default=None,
                   help="also save a mid-epoch checkpoint every N minutes (SIGTERM / SIGUSR1 always save one, then "
                        "the run exits with code 75)")
    g.add_argument("--save-every", type=non_negative_int, default=40,
                   help="also keep ckpt/epoch_N.pth every N epochs (0: never)")
    add_precision_args(g)
    add_compile_arg(g)
    g.add_argument("--no-progress", action="store_true", help="hide tqdm progress bars")
    g.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm under torchrun (CUDA)")
    g.add_argument("--data-parallel", action="store_true",
                   help="single process over all visible GPUs with DataParallel (the reference's way)")
    return g


def add_precision_args(group):
    """--amp off|bf16|fp16 (a bare --amp means fp16, the earlier switch) and --channels-last."""
    group.add_argument("--amp", nargs="?", const="fp16", default="off", choices=PRECISIONS,
                       help="mixed precision: off (float32, the reference numbers), bf16 (CUDA or CPU, no loss "
                            "scaling) or fp16 (CUDA, with a GradScaler); a bare --amp means fp16")
    group.add_argument("--channels-last", action="store_true",
                       help="NHWC memory layout for the networks and images (faster convolutions under AMP)")
    return group


def add_compile_arg(group):
    """--compile [MODE]: torch.compile the training step; a bare --compile is 'auto' (CUDA graphs
    on CUDA, inductor on the CPU)."""
    group.add_argument("--compile", nargs="?", const="auto", default="off", choices=COMPILE_MODES,
                       help="compile the training step with torch.compile: auto (a bare --compile: "
                            "reduce-overhead, i.e. CUDA graphs, on CUDA; default on the CPU), default, "
                            "reduce-overhead or max-autotune; off (the default) runs eagerly")
    return group


def per_process_batch(batch_size, world_size):
    """--batch-size is the global batch; under torchrun each process takes an equal share."""
    if batch_size % world_size:
        raise UserError(f"--batch-size {batch_size} is not divisible by the {world_size} processes")
    return batch_size // world_size


def pick_device(name):
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UserError(f"--device {name}: not a device (auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine")
    return device


def run_in_process_group(job, args, *extra):
    """job(args, info, device, *extra) as this process's part of the torchrun group (a group of one
    without torchrun) on --device; the group is left however the job ends."""
    info, device = distributed.init(pick_device(args.device))
    try:
        return job(args, info, device, *extra)
    finally:
        distributed.cleanup()


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def exit_on_user_error(main):
    """Decorator for a script's main(): a UserError prints 'error: ...' (one line) and exits with
    code 2; an Interrupted run prints where it stopped and exits with code 75; every other
    exception keeps its traceback."""
    @functools.wraps(main)
    def run(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as e:
            print("error: " + " ".join(str(e).split("\n")).replace("  ", " "), file=sys.stderr)
            sys.exit(2)
        except Interrupted as e:
            print(f"stopped: {e}", file=sys.stderr)
            sys.exit(Interrupted.exit_code)
    return run
