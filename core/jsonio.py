"""JSON records written atomically (args.json, summary.json, evaluation results)."""
import json
import os


def _jsonable(value):
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(_jsonable(obj), f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def read_json(path):
    with open(path) as f:
        return json.load(f)


def merge_summary(folder, summary, name="summary.json"):
    """Merge `summary` into <folder>/summary.json (several tools add their own results)."""
    path = os.path.join(folder, name)
    merged = read_json(path) if os.path.exists(path) else {}
    merged.update(summary)
    write_json(path, merged)
