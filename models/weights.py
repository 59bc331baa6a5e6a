"""One loader for every supported checkpoint: `load(path, arch=None, fmt="auto")`.

The file is read once (`torch.load(weights_only=True)`). Each format is one record of `FORMATS`:
how it is recognised, how its keys map onto the model's (explicit rules, then a strict load), the
architecture it fixes (if any) and the input normalisation its network was trained with. The
architecture is, in this order: the one given, the one the file records, the one the format
fixes, or the CIFAR model whose keys and shapes equal the file's (built on the meta device, so the
search costs no memory).

CIFAR layouts: ours (`{'model', 'arch', ...}`), RepDistiller's / mdistiller's teachers
(`{'model': state_dict}`), mdistiller's distiller files (`module.student.*` / `module.teacher.*`),
SSKD's teachers (`{'state_dict'}`, its MobileNetV2 naming the classifier `classifier.*`) and students
(`backbone.*` + `proj_head.*`), raw state_dicts, any of them through DataParallel (`module.`).
Self-supervised ImageNet teachers: MoCo, SwAV, BYOL (two converters), SimCLR ResNet-50 (4x) (two
layouts), torchvision's supervised ResNet-50, and reference SimReg checkpoints."""
from dataclasses import dataclass
import functools
from functools import cached_property
from typing import Callable, Optional

import torch

from core.checkpoint import CheckpointError, file_sha256, load_file, load_state_dict_strict

DATA_NORM = "data"   # trained with the data set's own constants: no re-normalisation
IMAGENET_NORM = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
SWAV_NORM = ((0.485, 0.456, 0.406), (0.228, 0.224, 0.225))
RAW_PIXELS = None    # trained on [0, 1] RGB (SimCLR)

# prefixes that wrap a CIFAR backbone, tried in this order; the first that yields exactly the
# model's key set wins (an SSKD wrapper's `proj_head.*` falls away with the `backbone.` prefix; a
# distiller file gives the side asked for, its student by default)
_WRAPPER_PREFIXES = ("", "module.", "backbone.", "module.backbone.", "student.", "module.student.",
                     "teacher.", "module.teacher.")
_CLASSIFIER_BIASES = ("fc.bias", "linear.bias", "classifier.bias", "classifier.0.bias")


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


def _drop(state_dict, prefixes):
    return {k: v for k, v in state_dict.items() if not k.startswith(prefixes)}


def _rename_mobilenet_classifier(state_dict, expected_keys):
    """SSKD's MobileNetV2 uses `classifier.weight`; RepDistiller's (and ours) `classifier.0.weight`."""
    if "classifier.0.weight" in expected_keys and "classifier.weight" in state_dict:
        state_dict = dict(state_dict)
        for p in ("weight", "bias"):
            state_dict[f"classifier.0.{p}"] = state_dict.pop(f"classifier.{p}")
    return state_dict


def select_backbone_keys(state_dict, model, side=None):
    """Map a CIFAR checkpoint's keys onto `model`'s by the wrapper rules above; `side`
    ('student' or 'teacher') picks a side of a distiller file."""
    return _select_keys(state_dict, set(model.state_dict()), side)


def _select_keys(state_dict, expected, side=None):
    prefixes = _WRAPPER_PREFIXES
    if side:
        prefixes = tuple(p for p in prefixes if side in p) + prefixes
    for prefix in prefixes:
        candidate = _rename_mobilenet_classifier(_strip(state_dict, prefix), expected)
        if set(candidate) == expected:
            return candidate
    return _rename_mobilenet_classifier(state_dict, expected)  # let the strict load report


def classes_of(state_dict):
    """Class count from a classifier bias, or None (feature extractors)."""
    return next((v.shape[0] for k, v in state_dict.items() if k.endswith(_CLASSIFIER_BIASES)), None)


def recognise_cifar_arch(state_dict, side=None):
    """(arch, num_classes) of the one CIFAR model whose keys and shapes equal the checkpoint's
    (after the wrapper rules); (None, None) unless exactly one matches."""
    import models
    num_classes = classes_of(state_dict)
    if num_classes is None:
        return None, None
    matches = []
    for name in sorted(models.CIFAR_MODELS):
        expected = _cifar_layout(name, num_classes)
        candidate = _select_keys(state_dict, set(expected), side)
        if set(candidate) == set(expected) and all(tuple(candidate[k].shape) == s for k, s in expected.items()):
            matches.append(name)
    return (matches[0], num_classes) if len(matches) == 1 else (None, None)


@functools.lru_cache(maxsize=None)
def _cifar_layout(name, num_classes):
    """A CIFAR model's state_dict keys and shapes, built once per process on the meta device
    (recognising a file compares it with every model of the registry)."""
    import models
    with torch.device("meta"):
        net = models.create(name, num_classes)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


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


def _simreg_student(sd):
    for prefix in ("encoder_q.module.", "module.encoder_q.", "encoder_q."):
        if any(k.startswith(prefix) for k in sd):
            return _drop(_strip(sd, prefix), ("fc.",))
    raise CheckpointError("no 'encoder_q' student keys in this SimReg checkpoint")


class CheckpointFile:
    """A checkpoint object being identified: its state_dict and, lazily, the CIFAR model its keys fit."""

    def __init__(self, obj, side=None, arch=None):
        self.obj, self.side, self.arch = obj, side, arch

    @cached_property
    def state_dict(self):
        return unwrap_state_dict(self.obj)

    def has_prefix(self, *prefixes):
        return any(k.startswith(prefixes) for k in self.state_dict)

    @cached_property
    def cifar(self):
        """True when the keys fit a CIFAR model (the given architecture, or a recognised one)."""
        import models
        if self.arch is not None:
            return self.arch in models.CIFAR_MODELS
        return recognise_cifar_arch(self.state_dict, self.side)[0] is not None

    @property
    def top(self):
        return self.obj if isinstance(self.obj, dict) else {}


@dataclass(frozen=True)
class WeightFormat:
    """One checkpoint layout. `detect(file)` is None for layouts that cannot be told apart from
    another by their keys (they must be named); `keys(file, model)` maps the file onto the model."""
    name: str
    description: str
    detect: Optional[Callable]
    keys: Callable
    arch: Optional[str] = None          # fixed by the format
    input_norm: object = DATA_NORM
    cifar: bool = False                 # architecture recognised among the CIFAR models
    fill_bn_counters: bool = False      # tolerate files without BatchNorm num_batches_tracked


def _cifar_keys(f, model):
    return select_backbone_keys(f.state_dict, model, f.side)


def _torchvision_r50(f):
    sd = f.state_dict
    return "conv1.weight" in sd and "layer4.0.conv1.weight" in sd


FORMATS = {f.name: f for f in (
    WeightFormat("ours", "written by this project: {'model', 'arch', 'num_classes', ...}",
                 lambda f: "model" in f.top and "arch" in f.top, lambda f, m: f.obj["model"]),
    WeightFormat("simreg", "a reference SimReg checkpoint: {'state_dict': 'encoder_q.module.*' student, "
                 "'predict_q.module.*', 'encoder_t.module.*'}; the student backbone is taken (give its --arch)",
                 lambda f: f.has_prefix("encoder_q.module.", "predict_q."), lambda f, m: _simreg_student(f.state_dict),
                 input_norm=IMAGENET_NORM, fill_bn_counters=True),
    WeightFormat("moco", "MoCo v1/v2: {'state_dict': {'module.encoder_q.<torchvision key>'}}; fc (MLP) dropped",
                 lambda f: f.has_prefix("module.encoder_q."),
                 lambda f, m: _drop(_strip(f.state_dict, "module.encoder_q."), ("fc.",)),
                 arch="resnet50", input_norm=IMAGENET_NORM, fill_bn_counters=True),
    WeightFormat("simclr_x4_flat", "SimCLR ResNet-50 (4x), SimReg/CompRess file: {'state_dict': TF names conv2d, "
                 "batch_normalization, conv2d_1..52, ...}; raw [0, 1] input",
                 lambda f: "conv2d.weight" in f.state_dict and "batch_normalization.weight" in f.state_dict,
                 lambda f, m: _flat_simclr_to_torchvision(f.state_dict),
                 arch="resnet50x4", input_norm=RAW_PIXELS, fill_bn_counters=True),
    WeightFormat("mdistiller", "mdistiller's distiller file: {'model': {'module.student.*', 'module.teacher.*'}}",
                 lambda f: "model" in f.top and f.has_prefix("module.student.", "student."), _cifar_keys, cifar=True),
    WeightFormat("repdistiller", "RepDistiller's / mdistiller's teachers: {'model': state_dict, 'epoch', ...}",
                 lambda f: "model" in f.top and isinstance(f.top["model"], dict), _cifar_keys, cifar=True),
    WeightFormat("sskd", "SSKD's teachers {'state_dict': ...} (MobileNetV2: classifier.*) and students "
                 "(backbone.* + proj_head.*)", lambda f: "state_dict" in f.top and f.cifar, _cifar_keys, cifar=True),
    WeightFormat("state_dict", "a raw CIFAR state_dict (optionally with DataParallel's module. prefix)",
                 lambda f: "state_dict" not in f.top and f.cifar, _cifar_keys, cifar=True),
    WeightFormat("swav", "SwAV: raw {'module.<torchvision key>'}; projection_head / prototypes dropped",
                 lambda f: f.has_prefix("module.layer1."),
                 lambda f, m: _drop(_strip(f.state_dict, "module."), ("projection_head.", "prototypes.", "fc.")),
                 arch="resnet50", input_norm=SWAV_NORM, fill_bn_counters=True),
    WeightFormat("simclr_x4", "SimCLR ResNet-50 (4x) via simclr-converter: {'state_dict': torchvision-style keys, "
                 "widths x4}; raw [0, 1] input",
                 lambda f: _torchvision_r50(f) and f.state_dict["conv1.weight"].shape[0] == 256,
                 lambda f, m: _drop(f.state_dict, ("fc.",)), arch="resnet50x4", input_norm=RAW_PIXELS,
                 fill_bn_counters=True),
    WeightFormat("byol", "BYOL via byol-convert: raw torchvision keys (fc kept in the file, dropped), no "
                 "num_batches_tracked; TF 'SAME' padding", None, lambda f, m: _drop(f.state_dict, ("fc.",)),
                 arch="byol_resnet50", input_norm=IMAGENET_NORM, fill_bn_counters=True),
    WeightFormat("byol_ssl_transfer", "BYOL via ssl-transfer: {'state_dict': torchvision keys}; torchvision padding",
                 None, lambda f, m: _drop(f.state_dict, ("fc.",)), arch="resnet50", input_norm=IMAGENET_NORM,
                 fill_bn_counters=True),
    WeightFormat("supervised", "torchvision supervised ResNet-50: raw torchvision keys; fc dropped",
                 None, lambda f, m: _drop(f.state_dict, ("fc.",)), arch="resnet50", input_norm=IMAGENET_NORM,
                 fill_bn_counters=True),
)}
FORMAT_NAMES = tuple(FORMATS)


def detect_format(f, what="teacher"):
    """The first format whose rule recognises the file; one error when none does."""
    for fmt in FORMATS.values():
        if fmt.detect is not None and fmt.detect(f):
            return fmt
    if _torchvision_r50(f):
        raise CheckpointError(
            "this file holds a torchvision-named ResNet-50: name its format (--teacher-format / --format) byol "
            "(byol-convert, SAME padding), byol_ssl_transfer or supervised")
    raise CheckpointError(
        f"unknown {what} checkpoint format (first keys: {list(f.state_dict)[:4]}); known formats: "
        + "; ".join(f"{x.name}: {x.description}" for x in FORMATS.values()))


@dataclass
class Loaded:
    """A model built from a checkpoint, and what the checkpoint said about it."""
    model: torch.nn.Module
    arch: str
    format: WeightFormat
    num_classes: Optional[int]
    epoch: Optional[int]
    path: str
    dataset: Optional[str] = None   # the data set the checkpoint was trained on, where it records it (ours)

    @property
    def input_norm(self):
        return self.format.input_norm

    @cached_property
    def sha256(self):
        return file_sha256(self.path)


def load(path, arch=None, fmt="auto", side=None):
    """Read `path` once, identify its format (or use `fmt`), build the architecture through the
    registry and load the weights strictly. `side` picks a side of a distiller file."""
    import models
    obj = load_file(path)
    f = CheckpointFile(obj, side, arch)
    if fmt == "auto":
        spec = detect_format(f, "teacher" if side == "teacher" else "model")
    elif fmt in FORMATS:
        spec = FORMATS[fmt]
    else:
        raise CheckpointError(f"unknown checkpoint format '{fmt}'; choose from {', '.join(FORMATS)}")
    num_classes = f.top.get("num_classes") if spec.name == "ours" else None
    arch = arch or (f.top.get("arch") if spec.name == "ours" else None) or spec.arch
    if arch is None and spec.cifar:
        arch, num_classes = recognise_cifar_arch(f.state_dict, side)
        if arch is None:
            raise CheckpointError(f"cannot tell the architecture of {path} from its keys: pass --teacher-arch / --arch")
    if arch is None:
        raise CheckpointError(f"{path}: the '{spec.name}' format does not record the architecture: pass --arch")
    if num_classes is None and spec.cifar:
        num_classes = classes_of(f.state_dict)
    net = models.create(arch, num_classes or 100)
    sd = spec.keys(f, net)
    if spec.fill_bn_counters:
        sd = dict(sd)
        for key, value in net.state_dict().items():
            if key.endswith("num_batches_tracked") and key not in sd:
                sd[key] = value
    try:
        load_state_dict_strict(net, sd, what=f"{arch} ({spec.name} format)")
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    epoch = f.top.get("epoch")
    dataset = f.top.get("dataset") if spec.name == "ours" and isinstance(f.top.get("dataset"), str) else None
    return Loaded(net, arch, spec, num_classes, epoch if isinstance(epoch, int) else None, path, dataset)
