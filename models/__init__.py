"""Model registry: `create(name, num_classes)` over one dict whose keys are the reference names.

CIFAR models (RepDistiller / SSKD zoo) keep the reference forward
`forward(x, is_feat=False, preact=False)`, `get_feat_modules()`, `get_bn_before_relu()` and
state_dict keys; every model also exposes `feat_dim`, the width of its pooled feature.
ImageNet backbones (SimReg) are feature extractors without a classifier. Checkpoints of every
supported layout load through `models.weights.load`.
"""
from core.errors import UserError

from . import cifar_resnet, mobilenetv2, resnet_v2, shufflenet, vgg, wrn
from .common import Outputs

# RepDistiller's model_dict, then SSKD's extra thin ResNets
CIFAR_MODELS = {}
for _family in (cifar_resnet, resnet_v2, wrn, vgg, mobilenetv2, shufflenet):
    CIFAR_MODELS.update(_family.BUILDERS)
# built by constructors in the reference model files but not in its registry
CIFAR_MODELS.update(resnet_v2.UNREGISTERED)
CIFAR_MODELS.update(vgg.UNREGISTERED)

# ImageNet feature extractors (SimReg; models/imagenet.py's BACKBONES): no classifier, `num_classes`
# is ignored. They subclass torchvision's models, so models.imagenet (and torchvision) is imported at
# the first build: a process training a CIFAR model starts without it.
IMAGENET_BACKBONES = ("resnet18", "resnet50", "resnet50x4", "mobilenet_v2", "byol_resnet50")


def _imagenet_backbone(name):
    def create_backbone(num_classes=None):   # feature extractors have no classifier
        from . import imagenet
        return imagenet.BACKBONES[name]()
    return create_backbone


REGISTRY = {**CIFAR_MODELS, **{name: _imagenet_backbone(name) for name in IMAGENET_BACKBONES}}

# archs whose reference recipe uses lr 0.01 instead of 0.05
LOW_LR_ARCHS = ("MobileNetV2", "ShuffleV1", "ShuffleV2")


class UnknownModelError(UserError, ValueError):
    pass


def names():
    return sorted(REGISTRY)


def create(name, num_classes=100):
    """Build a registered model with a fresh (reference-style) initialisation."""
    if name not in REGISTRY:
        raise UnknownModelError(
            f"unknown architecture '{name}'. Known: {', '.join(names())}")
    return REGISTRY[name](num_classes=num_classes)


def default_lr(arch, base_lr=0.05):
    """The reference teacher/student recipes use 0.01 for MobileNetV2 and the ShuffleNets."""
    return 0.01 if arch in LOW_LR_ARCHS else base_lr


__all__ = ["CIFAR_MODELS", "IMAGENET_BACKBONES", "Outputs", "UnknownModelError", "create", "default_lr", "names"]
