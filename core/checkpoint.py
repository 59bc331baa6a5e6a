"""Checkpoint files: atomic saving, safe loading (`weights_only=True` always) and strict
state_dict loading with one readable report of every mismatch."""
import hashlib
import os
import pickle
import random
import tempfile
import zipfile

import numpy as np
import torch

from .errors import UserError


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that cannot be read or does not fit the model it is loaded into."""


def save_atomic(obj, path):
    """Write to a temporary file in the same folder, then rename: a crash mid-write never leaves
    a truncated checkpoint behind, and the previous file survives until the new one is complete."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp_", suffix=".pth")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load_file(path, map_location="cpu"):
    """torch.load with weights_only=True; every failure becomes one CheckpointError that names
    the file and the reason (missing, truncated, or holding objects that would run code)."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"refusing to load {path}: it holds Python objects beyond tensors and plain "
            f"containers, which could run code on load (weights_only=True rejected it: "
            f"{str(e).splitlines()[0]})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
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
