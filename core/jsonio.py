"""JSON records written atomically (args.json, summary.json, evaluation results)."""
import json
import os
import tempfile

from .errors import UserError

TEMPORARY_PREFIX = ".tmp_"   # the prefix every interrupted atomic write leaves behind (cleaned under the run lock)


def _jsonable(value):
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def make_world_readable(path):
    """The mode a plain open() would give (0666 minus the umask): mkstemp creates files 0600."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def write_json(path, obj):
    """Atomic: a temporary file in the same folder, renamed over `path` once complete."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=TEMPORARY_PREFIX, suffix=".json")
    try:
        make_world_readable(tmp)
        with os.fdopen(fd, "w") as f:
            json.dump(_jsonable(obj), f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


class RecordError(UserError, ValueError):
    """A JSON record (args.json, summary.json, a cache index) that cannot be read."""


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except ValueError as e:
        raise RecordError(f"cannot read {path}: it is not valid JSON ({e}); the file is damaged") from None


def read_json_object(path):
    """A record that must be one JSON object (a summary, args, a manifest): anything else is damage."""
    value = read_json(path)
    if not isinstance(value, dict):
        raise RecordError(f"cannot read {path}: it holds a JSON {type(value).__name__}, not an object; the file is damaged")
    return value


def merge_summary(folder, summary, name="summary.json"):
    """Merge `summary` into <folder>/summary.json (several tools add their own results)."""
    path = os.path.join(folder, name)
    merged = read_json(path) if os.path.exists(path) else {}
    merged.update(summary)
    write_json(path, merged)
