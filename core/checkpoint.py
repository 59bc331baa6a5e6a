"""Checkpoint files: atomic saving, safe loading (`weights_only=True` always, with an explicit
allowlist of the harmless types that published checkpoints carry) and strict state_dict loading
with one readable report of every mismatch."""
import argparse
import errno
import glob
import hashlib
import os
import pickle
import random
import re
import shutil
import tempfile
import zipfile

import numpy as np
import torch

from .errors import UserError
from .jsonio import TEMPORARY_PREFIX, make_world_readable


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that cannot be read or does not fit the model it is loaded into."""




def _write_failure(path, error):
    """The one message for a write that failed (full disk, read-only or forbidden folder)."""
    folder = os.path.dirname(os.path.abspath(path))
    code = getattr(error, "errno", None)
    try:
        full = shutil.disk_usage(folder).free < (1 << 20)
    except OSError:
        full = False
    if code == errno.ENOSPC or full:
        reason = "no space left on device"
    elif code == errno.EROFS:
        reason = "the file system is read-only"
    elif code in (errno.EACCES, errno.EPERM):
        reason = "permission denied"
    else:
        reason = f"the write failed ({str(error).splitlines()[0] if str(error) else type(error).__name__})"
    previous = "the previous checkpoint is intact" if os.path.exists(path) else "nothing was written"
    return CheckpointError(f"{reason} while writing {path}; {previous}")


def save_atomic(obj, path):
    """Write to a temporary file in the same folder, then rename: a crash mid-write never leaves
    a truncated checkpoint behind, and the previous file survives until the new one is complete.
    A failed write (full disk, read-only folder) is one CheckpointError naming the file."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=TEMPORARY_PREFIX, suffix=".pth")
        make_world_readable(tmp)   # like every other record, not mkstemp's 0600
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        _discard(tmp)
        if isinstance(e, RuntimeError) and "write" not in str(e) and "enforce fail" not in str(e):
            raise   # not an I/O failure
        raise _write_failure(path, e) from None
    except BaseException:
        _discard(tmp)
        raise


def _discard(tmp):
    if tmp is not None and os.path.exists(tmp):
        try:
            os.remove(tmp)
        except OSError:
            pass


def remove_temporaries(folder):
    """Delete what interrupted atomic writes left in `folder` (a process killed mid-write cannot
    clean up after itself); call it only while holding the folder's lock."""
    removed = []
    for tmp in glob.glob(os.path.join(glob.escape(folder), TEMPORARY_PREFIX + "*")):
        try:
            os.remove(tmp)
            removed.append(tmp)
        except OSError:
            pass
    return removed


def _numpy_globals():
    """numpy's scalar, array and dtype constructors under both module names (numpy < 2 writes
    numpy.core.multiarray, numpy >= 2 numpy._core.multiarray): they rebuild numbers and arrays of
    numbers from bytes and run no other code."""
    multiarray = getattr(np, "_core", None) or np.core
    entries = []
    for name in ("scalar", "_reconstruct"):
        fn = getattr(multiarray.multiarray, name)
        entries += [(fn, f"numpy.core.multiarray.{name}"), (fn, f"numpy._core.multiarray.{name}")]
    entries += [np.ndarray, np.dtype]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:   # numpy >= 1.25 may name a dtype by its class
        entries += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")]
    return entries


# The types beyond tensors and plain containers that real checkpoints hold: numpy scalars and
# arrays (RepDistiller's `accuracy`, mdistiller's `best_acc` under current numpy), numpy dtypes,
# and the run's argparse.Namespace (`opt` in RepDistiller's <arch>_last.pth and SimReg's
# checkpoints). Anything else is refused by name.
SAFE_GLOBALS = [argparse.Namespace, *_numpy_globals()]


def _supported_entries():
    """Tuples (object, name) need torch >= 2.6; older versions take the objects alone."""
    version = tuple(int(x) for x in re.findall(r"\d+", torch.__version__)[:2])
    if version >= (2, 6):
        return SAFE_GLOBALS
    return [e[0] if isinstance(e, tuple) else e for e in SAFE_GLOBALS]


def _safe_load(path, map_location):
    ser = torch.serialization
    if hasattr(ser, "safe_globals"):
        with ser.safe_globals(_supported_entries()):
            return torch.load(path, map_location=map_location, weights_only=True)
    if hasattr(ser, "add_safe_globals"):
        ser.add_safe_globals(_supported_entries())
    return torch.load(path, map_location=map_location, weights_only=True)


def load_file(path, map_location="cpu"):
    """torch.load with weights_only=True and the allowlist above; every failure becomes one
    CheckpointError that names the file and the reason (missing, truncated, or holding a Python
    global that is not on the allowlist, named)."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return _safe_load(path, map_location)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        what = f"the Python global '{found.group(1)}'" if found else "Python objects beyond tensors"
        raise CheckpointError(
            f"refusing to load {path}: it holds {what}, which is not a tensor, a plain container or one "
            f"of the allowlisted harmless types, and could run code on load") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, UnicodeDecodeError,
            AttributeError, TypeError, IndexError, KeyError) as e:
        raise CheckpointError(
            f"cannot read checkpoint {path}: the file is truncated or not a PyTorch "
            f"checkpoint ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None


def file_sha256(path):
    """SHA-256 of a file's bytes: what identifies a checkpoint in caches and records."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def mismatch_report(module, state_dict):
    """Lists of missing, unexpected and mis-shaped keys of `state_dict` against `module`."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    misshaped = [(k, tuple(state_dict[k].shape), tuple(v.shape)) for k, v in expected.items()
                 if k in state_dict and hasattr(state_dict[k], "shape")
                 and tuple(state_dict[k].shape) != tuple(v.shape)]
    return missing, unexpected, misshaped


def _preview(keys, limit=12):
    shown = ", ".join(str(k) for k in keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def load_state_dict_strict(module, state_dict, what="model"):
    """`module.load_state_dict(strict=True)`, but a mismatch raises one CheckpointError that lists
    the missing, unexpected and mis-shaped keys."""
    missing, unexpected, misshaped = mismatch_report(module, state_dict)
    if missing or unexpected or misshaped:
        lines = [f"checkpoint does not fit the {what} ({type(module).__name__}):"]
        if missing:
            lines.append(f"  missing keys ({len(missing)}): {_preview(missing)}")
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}): {_preview(unexpected)}")
        if misshaped:
            shown = [f"{k} checkpoint {a} vs model {b}" for k, a, b in misshaped]
            lines.append(f"  mis-shaped keys ({len(misshaped)}): {_preview(shown, 6)}")
        raise CheckpointError("\n".join(lines))
    module.load_state_dict(state_dict, strict=True)


# ------------------------------------------------------------------ RNG states (exact resume)
def capture_rng_state(extra_generators=None):
    """Every random stream a run draws from, as tensors and plain numbers only
    (so that the checkpoint stays loadable with weights_only=True)."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": list(random.getstate()[1]),
        "generators": {k: g.get_state() for k, g in (extra_generators or {}).items()},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state, extra_generators=None):
    torch.set_rng_state(state["torch"])
    np_keys = state["numpy"]["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", np_keys, state["numpy"]["pos"], state["numpy"]["has_gauss"],
                         state["numpy"]["cached_gaussian"]))
    random.setstate((3, tuple(state["python"]), None))
    for k, g in (extra_generators or {}).items():
        g.set_state(state["generators"][k])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
