"""`--decode gpu`: the workers read each image's JPEG bytes and draw its crop and flip (from the
image's header only, with the same random draws as the PIL pipeline); the batch is decoded on the
training device by `torchvision.io.decode_jpeg` and cropped, resized, flipped and normalised there.

Covered pipelines: the weak training view (RandomResizedCrop + flip; SimReg's default 'weak_weak'
with one shared view), the linear probe's training view, and the evaluation view (Resize + centre
crop). The strong pipeline (colour jitter, grayscale, PIL blur) stays on the CPU path.

The two paths draw identical crop boxes and flips for the same sample seed; pixels differ only by
the JPEG decoders' and resize kernels' rounding (measured by the tests)."""
import torch
from torchvision import transforms as T
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms import functional as TF

from .errors import DatasetError


class Encoded:
    """One sample as a worker returns it: JPEG bytes (1-D uint8), or, for a file that is not a
    JPEG (ImageNet has a few PNG and CMYK files), its pixels decoded by PIL (3-D uint8, CHW); plus
    the drawn crop (i, j, h, w, flip), or None for the evaluation view."""

    def __init__(self, path, payload, crop):
        self.path, self.payload, self.crop = path, payload, crop


class CropDraw:
    """The worker-side part: called with the lazily opened PIL image (its size is known from the
    header), it draws what T.RandomResizedCrop(size, scale) and T.RandomHorizontalFlip() would
    draw, in the same order; None for the evaluation view."""

    def __init__(self, size, scale=(0.08, 1.0), train=True):
        self.size, self.scale, self.train = size, scale, train

    def __call__(self, img):
        if not self.train:
            return None
        i, j, h, w = T.RandomResizedCrop.get_params(img, list(self.scale), [3.0 / 4.0, 4.0 / 3.0])
        flip = bool(torch.rand(1) < 0.5)
        return (i, j, h, w, flip)


class BatchDecoder:
    """The device-side part: a list of Encoded samples -> a normalised float batch on `device`."""

    def __init__(self, size, mean, std, train=True):
        self.size, self.train = size, train
        self.resize = round(size * 256 / 224)
        self.mean, self.std = list(mean), list(std)

    def decode(self, samples, device):
        jpegs = [s for s in samples if s.payload.dim() == 1]
        try:
            decoded = iter(_decode_jpegs([s.payload for s in jpegs], device)) if jpegs else iter(())
        except RuntimeError:   # name the file: decode them one by one
            for s in jpegs:
                try:
                    _decode_jpegs([s.payload], device)
                except RuntimeError as e:
                    raise DatasetError(f"cannot read image {s.path}: {str(e).splitlines()[0]}") from None
            raise
        return [next(decoded) if s.payload.dim() == 1 else s.payload.to(device) for s in samples]

    def view(self, image, crop):
        if crop is None:   # Resize(256 * size / 224) + CenterCrop(size), as eval_transform
            return TF.center_crop(TF.resize(image, self.resize, antialias=True), [self.size, self.size])
        i, j, h, w, flip = crop
        image = TF.resized_crop(image, i, j, h, w, [self.size, self.size], antialias=True)
        return image.flip(-1) if flip else image

    def __call__(self, samples, device):
        images = self.decode(samples, device)
        batch = torch.stack([self.view(im, s.crop) for im, s in zip(images, samples)])
        return TF.normalize(batch.float().div_(255), self.mean, self.std)


def _decode_jpegs(payloads, device):
    try:   # torchvision >= 0.19 decodes a list in one batched call
        return decode_jpeg(payloads, mode=ImageReadMode.RGB, device=device)
    except TypeError:
        return [decode_jpeg(p, mode=ImageReadMode.RGB, device=device) for p in payloads]
