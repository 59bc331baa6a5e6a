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


# ============================================================================ ImageNet teachers
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class TeacherFormat:
    """How one published teacher file maps onto a backbone: the architecture, the key rules, and
    the input normalisation the teacher was trained with (None: raw [0, 1] RGB)."""

    def __init__(self, name, arch, mean, std, description):
        self.name, self.arch, self.mean, self.std, self.description = name, arch, mean, std, description


TEACHER_FORMATS = {f.name: f for f in (
    TeacherFormat("moco", "resnet50", IMAGENET_MEAN, IMAGENET_STD,
                  "MoCo v1/v2: {'state_dict': {'module.encoder_q.<torchvision key>'}}; fc (MLP) dropped"),
    TeacherFormat("swav", "resnet50", IMAGENET_MEAN, (0.228, 0.224, 0.225),
                  "SwAV: raw {'module.<torchvision key>'}; projection_head / prototypes dropped"),
    TeacherFormat("byol", "byol_resnet50", IMAGENET_MEAN, IMAGENET_STD,
                  "BYOL via byol-convert: raw torchvision keys (fc kept in the file, dropped), no "
                  "num_batches_tracked; TF 'SAME' padding"),
    TeacherFormat("byol_ssl_transfer", "resnet50", IMAGENET_MEAN, IMAGENET_STD,
                  "BYOL via ssl-transfer: {'state_dict': torchvision keys}; torchvision padding"),
    TeacherFormat("simclr_x4", "resnet50x4", None, None,
                  "SimCLR ResNet-50 (4x) via simclr-converter: {'state_dict': torchvision-style keys, "
                  "widths x4}; raw [0, 1] input"),
    TeacherFormat("simclr_x4_flat", "resnet50x4", None, None,
                  "SimCLR ResNet-50 (4x), SimReg/CompRess file: {'state_dict': TF names conv2d, "
                  "batch_normalization, conv2d_1..52, ...}; raw [0, 1] input"),
    TeacherFormat("supervised", "resnet50", IMAGENET_MEAN, IMAGENET_STD,
                  "torchvision supervised ResNet-50: raw torchvision keys; fc dropped"),
    TeacherFormat("ours", None, IMAGENET_MEAN, IMAGENET_STD,
                  "a checkpoint written by this project ('model' + 'arch'), e.g. a SimReg student"),
    TeacherFormat("simreg", None, IMAGENET_MEAN, IMAGENET_STD,
                  "a reference SimReg checkpoint: {'state_dict': 'encoder_q.module.*' student, "
                  "'predict_q.module.*', 'encoder_t.module.*'}; the student backbone is taken"),
)}


def _drop(state_dict, prefixes):
    return {k: v for k, v in state_dict.items() if not k.startswith(prefixes)}


def _flat_simclr_to_torchvision(state_dict, blocks=(3, 4, 6, 3)):
    """SimReg's resnet50x4.py names -> torchvision-style names: conv2d/batch_normalization = stem,
    then per stage and block: in a first block the projection shortcut comes first (index c), then
    conv1..3 / bn1..3 (c+1..c+3); later blocks only conv1..3. Indices run 1..52."""
    mapping = {"conv2d": "conv1", "batch_normalization": "bn1"}
    c = 1
    for stage, n_blocks in enumerate(blocks, 1):
        for b in range(n_blocks):
            if b == 0:
                mapping[f"conv2d_{c}"] = f"layer{stage}.0.downsample.0"
                mapping[f"batch_normalization_{c}"] = f"layer{stage}.0.downsample.1"
                c += 1
            for i in range(1, 4):
                mapping[f"conv2d_{c}"] = f"layer{stage}.{b}.conv{i}"
                mapping[f"batch_normalization_{c}"] = f"layer{stage}.{b}.bn{i}"
                c += 1
    out = {}
    for key, value in state_dict.items():
        module, _, param = key.rpartition(".")
        if module == "fc":
            continue
        if module not in mapping:
            raise CheckpointError(f"unexpected key '{key}' in a flat SimCLR-x4 checkpoint")
        out[f"{mapping[module]}.{param}"] = value
    return out


def detect_teacher_format(obj):
    """The format of a teacher checkpoint, when its keys say it unambiguously."""
    sd = unwrap_state_dict(obj)
    keys = list(sd)
    if isinstance(obj, dict) and "arch" in obj and "model" in obj:
        return "ours"
    if any(k.startswith(("encoder_q.module.", "predict_q.")) for k in keys):
        return "simreg"
    if any(k.startswith("module.encoder_q.") for k in keys):
        return "moco"
    if "conv2d.weight" in sd and "batch_normalization.weight" in sd:
        return "simclr_x4_flat"
    if any(k.startswith("module.layer1.") for k in keys):
        return "swav"
    if "conv1.weight" in sd and "layer4.0.conv1.weight" in sd:
        if sd["conv1.weight"].shape[0] == 256:
            return "simclr_x4"
        raise CheckpointError(
            "this file holds a torchvision-named ResNet-50: pass --teacher-format byol (byol-convert, SAME "
            "padding), byol_ssl_transfer or supervised")
    raise CheckpointError(
        f"unknown teacher checkpoint format (first keys: {keys[:4]}); known formats: "
        + "; ".join(f"{f.name}: {f.description}" for f in TEACHER_FORMATS.values()))


def teacher_state_dict(obj, fmt, keep_fc=False):
    """The backbone state_dict of a teacher checkpoint by the explicit rules of its format."""
    sd = unwrap_state_dict(obj)
    fc = () if keep_fc else ("fc.",)
    if fmt == "moco":
        return _drop(_strip(sd, "module.encoder_q."), fc)
    if fmt == "swav":
        return _drop(_strip(sd, "module."), ("projection_head.", "prototypes.") + fc)
    if fmt in ("byol", "byol_ssl_transfer", "supervised", "simclr_x4"):
        return _drop(sd, fc)
    if fmt == "simclr_x4_flat":
        return _flat_simclr_to_torchvision(sd)
    if fmt == "ours":
        return sd
    if fmt == "simreg":
        for prefix in ("encoder_q.module.", "module.encoder_q.", "encoder_q."):
            if any(k.startswith(prefix) for k in sd):
                return _drop(_strip(sd, prefix), fc)
        raise CheckpointError("no 'encoder_q' student keys in this SimReg checkpoint")
    raise CheckpointError(f"unknown teacher format '{fmt}'; choose from {', '.join(TEACHER_FORMATS)}")


def load_imagenet_teacher(path, fmt="auto", arch=None):
    """(backbone with the file's weights, TeacherFormat). Loading is strict except that files
    without BatchNorm `num_batches_tracked` counters (older torchvision, byol-convert) are accepted.
    `arch` is needed only for formats that do not fix it (a reference SimReg checkpoint)."""
    import models
    obj = load_file(path)
    fmt = detect_teacher_format(obj) if fmt == "auto" else fmt
    if fmt not in TEACHER_FORMATS:
        raise CheckpointError(f"unknown teacher format '{fmt}'; choose from {', '.join(TEACHER_FORMATS)}")
    spec = TEACHER_FORMATS[fmt]
    arch = obj.get("arch") if fmt == "ours" else (spec.arch or arch)
    if arch is None:
        raise CheckpointError(f"{path}: the '{fmt}' format does not record the architecture: pass --arch")
    net = models.create(arch, obj.get("num_classes", 100) if fmt == "ours" else 100)
    sd = teacher_state_dict(obj, fmt)
    for key, value in net.state_dict().items():
        if key.endswith("num_batches_tracked") and key not in sd:
            sd[key] = value
    try:
        load_state_dict_strict(net, sd, what=f"{arch} teacher ({fmt} format)")
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    return net, spec
