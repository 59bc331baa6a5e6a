"""The experiment folder of one run:
  args.json     resolved arguments, library versions, git revision, seed
  log.txt       the plain-text log (appended on resume)
  tb/           TensorBoard events
  ckpt/         last.pth (every epoch, atomic), best.pth, init.pth (after an init phase), epoch_N.pth
  summary.json  final and best accuracies (and evaluation results added later)
"""
import datetime
import os
import platform
import subprocess
import sys

import numpy as np
import torch

from core.checkpoint import load_file
from core.errors import UserError
from core.jsonio import merge_summary, write_json

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ExistingRunError(UserError, RuntimeError):
    pass


def git_revision():
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=PROJECT_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (rev + ("-dirty" if dirty else "")) if rev else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def versions():
    out = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
    for name in ("torchvision", "faiss", "sklearn"):
        try:
            out[name] = __import__(name).__version__
        except Exception:  # optional libraries: record that they are absent
            out[name] = None
    return out


class RunFolder:
    """Creating it checks the folder and touches nothing: a fresh run refuses a folder that already
    holds one (so nothing saved is overwritten), `resume=True` needs a checkpoint to continue from
    (`ckpt/last.pth`, read here so that a bad one is reported before anything is written, or
    `ckpt/init.pth` of a run stopped right after its init phase). `open()` then creates the folder
    and its records. `meta` is what every checkpoint and the summary carry about the run
    (architecture, data set, method, ...)."""

    def __init__(self, folder, resume=False, is_main=True, save_every=0, show_progress=True):
        self.folder = os.path.abspath(folder)
        self.ckpt_dir = os.path.join(self.folder, "ckpt")
        self.last_path = os.path.join(self.ckpt_dir, "last.pth")
        self.best_path = os.path.join(self.ckpt_dir, "best.pth")
        self.init_path = os.path.join(self.ckpt_dir, "init.pth")
        self.is_main, self.save_every, self.show_progress = is_main, save_every, show_progress and is_main
        self.meta = {}
        self._tb = None
        if resume and not (os.path.isfile(self.last_path) or os.path.isfile(self.init_path)):
            raise ExistingRunError(f"--resume: no checkpoint to resume from at {self.last_path}")
        if not resume and os.path.exists(os.path.join(self.folder, "args.json")):
            raise ExistingRunError(
                f"{self.folder} already holds a run; pass --resume to continue it, or choose "
                f"another --name / --save-dir (nothing was changed)")
        self.checkpoint = load_file(self.last_path) if resume and os.path.isfile(self.last_path) else None
        # the run continues from ckpt/last.pth: its init phase, if any, is behind it
        self.has_checkpoint = self.checkpoint is not None

    def open(self, args, seed):
        """Create the folder and write args.json (first start) or append a resume marker."""
        if not self.is_main:
            return
        os.makedirs(self.ckpt_dir, exist_ok=True)
        args_path = os.path.join(self.folder, "args.json")
        record = {"args": vars(args) if hasattr(args, "__dict__") else dict(args),
                  "argv": sys.argv, "seed": seed, "versions": versions(), "git_revision": git_revision(),
                  "started": datetime.datetime.now().isoformat(timespec="seconds")}
        if os.path.exists(args_path):
            self.log(f"resumed at {record['started']} (git {record['git_revision']})")
        else:
            write_json(args_path, record)
        try:
            from torch.utils.tensorboard import SummaryWriter
            self._tb = SummaryWriter(os.path.join(self.folder, "tb"))
        except ImportError:
            self.log("tensorboard is not installed: no TensorBoard events will be written")

    def log(self, message, echo=True):
        if not self.is_main:
            return
        if echo:
            from tqdm import tqdm
            tqdm.write(message)
        os.makedirs(self.folder, exist_ok=True)
        with open(os.path.join(self.folder, "log.txt"), "a") as f:
            f.write(message + "\n")

    def scalars(self, values, step, prefix=""):
        if self._tb is not None:
            for k, v in values.items():
                self._tb.add_scalar(prefix + k, v, step)
            self._tb.flush()

    def write_summary(self, summary, name="summary.json"):
        """Merge `summary` into summary.json (several tools add their own results)."""
        if self.is_main:
            merge_summary(self.folder, summary, name)

    def close(self):
        if self._tb is not None:
            self._tb.close()
