"""Loading published checkpoints into our models by explicit key rules, strictly.

CIFAR layouts handled by `load_cifar_checkpoint`:
- ours and RepDistiller's / mdistiller's teachers: `{'model': state_dict, ...}`
- SSKD teachers: `{'state_dict': state_dict, ...}`; SSKD students hold the wrapper
  (`backbone.*` plus `proj_head.*`); SSKD's MobileNetV2 names its classifier `classifier.*`
- mdistiller's full distiller files: `{'model': {'module.student.*', 'module.teacher.*'}}`
- a raw state_dict; any of the above saved through DataParallel (`module.` prefix).
"""
import torch

from engine.checkpoint import CheckpointError, load_file, load_state_dict_strict

# prefixes that wrap a backbone, tried in this order; the first that yields exactly the model's
# key set wins (an SSKD wrapper's `proj_head.*` falls away with the `backbone.` prefix; a
# distiller file gives its student unless `prefer` says otherwise)
_WRAPPER_PREFIXES = ("", "module.", "backbone.", "module.backbone.", "student.", "module.student.",
                     "teacher.", "module.teacher.")


def unwrap_state_dict(obj):
    """The state_dict inside a checkpoint object: under 'model', 'state_dict', or the object itself."""
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint holds a {type(obj).__name__}, expected a dict")
    for key in ("model", "state_dict"):
        if key in obj and isinstance(obj[key], dict):
            return obj[key]
    if obj and all(torch.is_tensor(v) for v in obj.values()):
        return obj
    raise CheckpointError(
        f"no weights found in checkpoint: expected a 'model' or 'state_dict' entry or a raw "
        f"state_dict; top-level keys are {sorted(map(str, obj))[:10]}")


def _strip(state_dict, prefix):
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


def _rename_mobilenet_classifier(state_dict, expected_keys):
    """SSKD's MobileNetV2 uses `classifier.weight`; RepDistiller's (and ours) `classifier.0.weight`."""
    if "classifier.0.weight" in expected_keys and "classifier.weight" in state_dict:
        state_dict = dict(state_dict)
        for p in ("weight", "bias"):
            state_dict[f"classifier.0.{p}"] = state_dict.pop(f"classifier.{p}")
    return state_dict


def select_backbone_keys(state_dict, model, prefer=None):
    """Map a checkpoint's keys onto `model`'s by the wrapper rules above. `prefer` ('student' or
    'teacher') picks a side of a distiller file."""
    expected = set(model.state_dict())
    prefixes = _WRAPPER_PREFIXES
    if prefer:
        prefixes = tuple(p for p in prefixes if prefer in p) + prefixes
    for prefix in prefixes:
        candidate = _rename_mobilenet_classifier(_strip(state_dict, prefix), expected)
        if set(candidate) == expected:
            return candidate
    return _rename_mobilenet_classifier(state_dict, expected)  # let the strict load report


def load_cifar_checkpoint(model, path, prefer=None):
    """Load a CIFAR checkpoint of any supported layout into `model`, strictly. Returns the raw
    checkpoint object (for its metadata)."""
    obj = load_file(path)
    state_dict = select_backbone_keys(unwrap_state_dict(obj), model, prefer)
    try:
        load_state_dict_strict(model, state_dict, what="model")
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    return obj


_CLASSIFIER_BIASES = ("fc.bias", "linear.bias", "classifier.bias", "classifier.0.bias")


def infer_cifar_arch(state_dict):
    """The registered CIFAR architecture whose keys and shapes equal the checkpoint's (after the
    wrapper rules), with its class count; (None, None) unless exactly one matches. Models are built
    on the meta device, so this costs no memory for weights."""
    import models
    num_classes = next((v.shape[0] for k, v in state_dict.items() if k.endswith(_CLASSIFIER_BIASES)), None)
    if num_classes is None:
        return None, None
    matches = []
    for name in models.names():
        with torch.device("meta"):
            net = models.create(name, num_classes)
        candidate = select_backbone_keys(state_dict, net)
        expected = net.state_dict()
        if set(candidate) == set(expected) and all(
                tuple(candidate[k].shape) == tuple(v.shape) for k, v in expected.items()):
            matches.append(name)
    return (matches[0], num_classes) if len(matches) == 1 else (None, None)
