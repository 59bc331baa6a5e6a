"""The validation layer of every script's arguments: argparse types that check ranges and lists
as the flags are read, a parser whose errors are one line, the run-folder path rule and the
resume contract (a resumed run refuses changed hyper-parameters unless explicitly allowed)."""
import argparse
import os
import sys

from .errors import UserError


class ArgumentError(UserError, ValueError):
    """A flag value or a combination of flags that cannot work."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: 'prog: error: <what> (see --help)', exit code 2."""

    def error(self, message):
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def _number(kind, text, low, low_ok, what):
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"'{text}' is not {'an integer' if kind is int else 'a number'}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"'{text}' is not a finite number")
    if value < low or (value == low and not low_ok):
        raise argparse.ArgumentTypeError(f"{text} {what}")
    return value


def positive_int(text):
    return _number(int, text, 0, False, "must be at least 1")


def non_negative_int(text):
    return _number(int, text, 0, True, "must be 0 or more")


def positive_float(text):
    return _number(float, text, 0.0, False, "must be greater than 0")


def non_negative_float(text):
    return _number(float, text, 0.0, True, "must be 0 or more")


def unit_fraction(text):
    value = _number(float, text, 0.0, False, "must be in (0, 1]")
    if value > 1:
        raise argparse.ArgumentTypeError(f"{text} must be in (0, 1]")
    return value


def fraction(text):
    """A share in [0, 1] (0 allowed: keep none)."""
    value = _number(float, text, 0.0, True, "must be 0 or more")
    if value > 1:
        raise argparse.ArgumentTypeError(f"{text} must be in [0, 1]")
    return value


def momentum(text):
    """A momentum in [0, 1) (SGD's, a memory bank's): at 1 or more the running average never decays
    and the update diverges."""
    value = _number(float, text, 0.0, True, "must be 0 or more")
    if value >= 1:
        raise argparse.ArgumentTypeError(f"{text} must be below 1 (at 1 or more the running average would never decay)")
    return value


def int_list(text):
    """'150,180,210' -> (150, 180, 210) of positive integers; '' -> ()."""
    if isinstance(text, (list, tuple)):
        return tuple(text)
    items = [x.strip() for x in str(text).split(",") if x.strip()]
    try:
        values = tuple(int(x) for x in items)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of integers") from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"'{text}': every entry must be at least 1")
    return values


def require(condition, message):
    if not condition:
        raise ArgumentError(message)


def writable_folder(path, flag):
    """`path`, a folder to write into (made if absent), checked before anything is written: it, or
    the nearest folder above it that exists, must be a folder this process can write to."""
    place = os.path.abspath(path)
    while not os.path.exists(place):
        place = os.path.dirname(place)
    if not os.path.isdir(place):
        raise UserError(f"{flag} {path}: {place} is a file, not a folder")
    if not os.access(place, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: the folder {place} is not writable")
    return path


def writable_prefix(prefix, flag):
    """A file prefix (<prefix>.npy, <prefix>.json) whose folder passes `writable_folder`."""
    writable_folder(os.path.dirname(os.path.abspath(prefix)), flag)
    require(not os.path.isdir(prefix + ".npy") and not os.path.isdir(prefix + ".json"),
            f"{flag} {prefix}: {prefix}.npy or {prefix}.json is a folder")
    return prefix


def run_folder_path(save_dir, name):
    """<save-dir>/<name>, refusing names that would leave --save-dir ('..', absolute paths, '/')
    and a --save-dir that cannot be written to."""
    writable_folder(save_dir, "--save-dir")
    require(bool(name) and name not in (".", "..") and "/" not in name and os.sep not in name
            and "\0" not in name, f"--name '{name}': a run name is one folder name inside --save-dir "
                                  f"(no '/', not '.' or '..')")
    folder = os.path.abspath(os.path.join(save_dir, name))
    require(os.path.dirname(folder) == os.path.abspath(save_dir), f"--name '{name}' leaves --save-dir {save_dir}")
    return folder


# Flags that change how a run is executed, not what it computes: a resumed run may change them.
OPERATIONAL = {"resume", "allow_changed_args", "no_progress", "device", "workers", "data_root", "download",
               "eval_batch_size", "save_every", "ckpt_every_minutes", "init_cache", "sync_bn", "data_parallel",
               "name", "save_dir", "trial", "compile", "channels_last"}


def changed_arguments(recorded, current):
    """{flag: (recorded, current)} for every hyper-parameter whose value differs (JSON-normalised:
    tuples and lists compare equal)."""
    def norm(v):
        return list(v) if isinstance(v, tuple) else v
    return {k: (recorded.get(k), norm(v)) for k, v in current.items()
            if k not in OPERATIONAL and k in recorded and norm(recorded[k]) != norm(v)}
