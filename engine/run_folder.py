"""The experiment folder of one run:
  args.json     resolved arguments, library versions, git revision, seed
  log.txt       the plain-text log (appended on resume)
  tb/           TensorBoard events
  ckpt/         last.pth (every epoch, atomic), best.pth, init.pth (after an init phase), epoch_N.pth
  summary.json  final and best accuracies (and evaluation results added later)
"""
import datetime
import importlib.metadata
import importlib.util
import os
import platform
import socket
import subprocess
import sys

try:
    import fcntl
except ImportError:   # not POSIX
    fcntl = None

import numpy as np
import torch

from core.checkpoint import load_file, remove_temporaries
from core.errors import UserError
from core.jsonio import merge_summary, read_json, write_json
from core.validate import changed_arguments

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ExistingRunError(UserError, RuntimeError):
    pass


class RunLock:
    """An exclusive lock on <folder>/run.lock (fcntl.flock): held while a process uses the run
    folder; the kernel releases it when the process ends, however it ends, so the lock of a dead
    process is taken over by the next one without any clean-up."""

    def __init__(self, folder):
        self.path = os.path.join(folder, "run.lock")
        self.file = None
        self.created = []   # folders that locking created (removed again if the run never opens)

    def acquire(self):
        if fcntl is None:   # no flock on this platform: nothing to lock with
            return self
        folder = os.path.dirname(self.path)
        while not os.path.exists(folder):
            self.created.append(folder)
            folder = os.path.dirname(folder)
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        f = open(self.path, "a+")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise ExistingRunError(f"{os.path.dirname(self.path)} is in use by {holder}; wait for it to end or "
                                   f"stop it (two processes never share a run folder)") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()} since "
                f"{datetime.datetime.now().isoformat(timespec='seconds')}\n")
        f.flush()
        self.file = f
        return self

    def release(self, untouched=False):
        """Unlock; with `untouched` (the run never wrote anything) also remove the lock file and
        the folders locking created, so a refused run leaves no trace."""
        if self.file is None:
            return
        if untouched:
            os.remove(self.path)
            for folder in self.created:
                try:
                    os.rmdir(folder)
                except OSError:
                    break
        fcntl.flock(self.file.fileno(), fcntl.LOCK_UN)
        self.file.close()
        self.file = None


def git_revision():
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=PROJECT_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (rev + ("-dirty" if dirty else "")) if rev else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# the optional libraries a run records, each with the distributions that install it
OPTIONAL_LIBRARIES = {"torchvision": ("torchvision",), "faiss": ("faiss-cpu", "faiss-gpu", "faiss-gpu-cu12", "faiss"),
                      "sklearn": ("scikit-learn",)}


def _installed_version(module):
    """The version of the distribution that installed `module`, read from its metadata without
    importing it (faiss and scikit-learn cost most of a second to import); a module importable but
    installed otherwise (a source tree, a conda build) is imported to ask; None when absent."""
    for dist in OPTIONAL_LIBRARIES[module]:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    if importlib.util.find_spec(module) is None:
        return None
    try:
        return __import__(module).__version__
    except Exception:  # a broken install is recorded as absent
        return None


def versions():
    out = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
    for name in OPTIONAL_LIBRARIES:
        out[name] = _installed_version(name)
    return out


class RunFolder:
    """Opening it locks the folder (one process per run folder), removes what interrupted writes
    left behind and checks what the folder holds before anything else is written:
      - nothing (or only the lock): a fresh run;
      - args.json but no checkpoint (the run failed or was killed before its first one): it starts
        again from scratch in the same folder, with --resume or without, keeping args.json and log;
      - ckpt/last.pth or ckpt/init.pth: --resume continues from it (last.pth is read here, so that
        a bad one is reported before anything is written); without --resume the folder is refused.
    Continuing (from a checkpoint or from scratch) follows the resume contract: hyper-parameters
    that differ from args.json are refused unless `allow_changes`, and then recorded in args.json.
    `meta` is what every checkpoint and the summary carry about the run. Use it as a context
    manager (or call `close()`): that releases the lock."""

    def __init__(self, folder, args=None, resume=False, is_main=True, save_every=0, show_progress=True,
                 allow_changes=False):
        self.folder = os.path.abspath(folder)
        self.ckpt_dir = os.path.join(self.folder, "ckpt")
        self.last_path = os.path.join(self.ckpt_dir, "last.pth")
        self.best_path = os.path.join(self.ckpt_dir, "best.pth")
        self.init_path = os.path.join(self.ckpt_dir, "init.pth")
        self.args_path = os.path.join(self.folder, "args.json")
        self.is_main, self.save_every, self.show_progress = is_main, save_every, show_progress and is_main
        self.meta = {}
        self._tb = None
        self._opened = False
        self.lock = RunLock(self.folder).acquire() if is_main else None
        try:
            self._check(args, resume, allow_changes)
        except BaseException:
            self.close()
            raise

    def _check(self, args, resume, allow_changes):
        if self.is_main:
            for tmp in remove_temporaries(self.ckpt_dir) + remove_temporaries(self.folder):
                print(f"removed {tmp}, left by an interrupted write", file=sys.stderr)
        has_ckpt = os.path.isfile(self.last_path) or os.path.isfile(self.init_path)
        started = os.path.isfile(self.args_path)
        if not resume and has_ckpt:
            raise ExistingRunError(
                f"{self.folder} already holds a run; pass --resume to continue it, or choose "
                f"another --name / --save-dir (nothing was changed)")
        if resume and not started and not has_ckpt:
            raise ExistingRunError(f"--resume: there is no run to resume in {self.folder}")
        self.restarted = started and not has_ckpt   # the earlier attempt left no checkpoint
        self.checkpoint = load_file(self.last_path) if resume and os.path.isfile(self.last_path) else None
        # the run continues from ckpt/last.pth: its init phase, if any, is behind it
        self.has_checkpoint = self.checkpoint is not None
        self.changes = {}
        if started and args is not None:
            try:
                recorded = read_json(self.args_path).get("args", {})
            except (OSError, ValueError) as e:
                raise ExistingRunError(f"cannot read {self.args_path} ({e}); the run's record is damaged") from None
            self.changes = changed_arguments(recorded, vars(args) if hasattr(args, "__dict__") else dict(args))
            if self.changes and not allow_changes:
                shown = "; ".join(f"--{k.replace('_', '-')} {a} -> {b}" for k, a, b in
                                  ((k, *v) for k, v in sorted(self.changes.items())))
                raise ExistingRunError(f"{self.folder} was started with other settings ({shown}); continuing would "
                                       f"mix them. Pass --allow-changed-args to continue anyway (the change is "
                                       f"recorded in args.json), or use another --name")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def open(self, args, seed):
        """Create the folder's records: args.json on the first start; on a later one a marker in
        the log (and the allowed changes of settings in args.json)."""
        if not self.is_main:
            return
        self._opened = True
        os.makedirs(self.ckpt_dir, exist_ok=True)
        now = datetime.datetime.now().isoformat(timespec="seconds")
        current = vars(args) if hasattr(args, "__dict__") else dict(args)
        if os.path.exists(self.args_path):
            record = read_json(self.args_path)
            if self.changes:
                record.setdefault("changes", []).append({"at": now, "argv": sys.argv, "changed": {
                    k: {"was": a, "now": b} for k, (a, b) in self.changes.items()}})
                record["args"].update({k: current[k] for k in self.changes})
                write_json(self.args_path, record)
                self.log(f"settings changed on continuing: {', '.join(sorted(self.changes))} (recorded in args.json)")
            what = "restarted from scratch (no checkpoint was left)" if self.restarted else "resumed"
            self.log(f"{what} at {now} (git {git_revision()})")
        else:
            write_json(self.args_path, {"args": current, "argv": sys.argv, "seed": seed, "versions": versions(),
                                        "git_revision": git_revision(), "started": now})
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
            self._tb = None
        if self.lock is not None:
            untouched = not self._opened and os.path.isdir(self.folder) and os.listdir(self.folder) == ["run.lock"]
            self.lock.release(untouched)
            self.lock = None
