"""`--decode gpu`: the workers read each image's JPEG bytes and draw its augmentation (from the
image's header only, with the same random draws as the PIL pipeline); the batch is decoded on the
training device by `torchvision.io.decode_jpeg` and cropped, resized, colour-augmented, flipped
and normalised there.

Covered pipelines: the weak training view (RandomResizedCrop + flip), the strong one (MoCo-v2's:
crop, colour jitter, grayscale, Gaussian blur, flip), SimReg's pairs of them (one shared view, or
separate teacher and student views), the linear probe's training view, and the evaluation view
(Resize + centre crop).

The two paths draw identical crop boxes, jitter factors and orders, grayscale and blur choices,
blur radii and flips for the same sample seed. The pixels differ by the JPEG decoders' and resize
kernels' rounding and, in the strong view, by the colour and blur kernels: PIL works on 8-bit
images (its hue shift in 8-bit HSV, its blur as three box passes), torchvision's tensor ops in
float with exact Gaussian kernels (the tests measure both differences)."""
import math
import random

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
    header), it draws what imagenet.weak_transform's T.RandomResizedCrop(size, scale) and
    T.RandomHorizontalFlip() would draw, in the same order: (i, j, h, w, flip). With `strong`, what
    imagenet.strong_transform draws, in its order: (i, j, h, w, flip, jitter, grayscale, sigma),
    `jitter` None or (order of the four ops, brightness, contrast, saturation, hue), `sigma` the
    blur radius or None. None for the evaluation view."""

    def __init__(self, size, scale=(0.08, 1.0), train=True, strong=False):
        self.size, self.scale, self.train, self.strong = size, scale, train, strong

    def __call__(self, img):
        if not self.train:
            return None
        i, j, h, w = T.RandomResizedCrop.get_params(img, list(self.scale), [3.0 / 4.0, 4.0 / 3.0])
        if not self.strong:
            return (i, j, h, w, bool(torch.rand(1) < 0.5))
        jitter = None
        if not JITTER_P < torch.rand(1):   # T.RandomApply's test
            order, b, c, s, hue = T.ColorJitter.get_params(JITTER.brightness, JITTER.contrast,
                                                           JITTER.saturation, JITTER.hue)
            jitter = (order.tolist(), b, c, s, hue)
        grayscale = bool(torch.rand(1) < GRAYSCALE_P)
        sigma = None if BLUR_P < torch.rand(1) else random.uniform(*BLUR_SIGMA)
        return (i, j, h, w, bool(torch.rand(1) < 0.5), jitter, grayscale, sigma)


# imagenet.strong_transform's constants (a test checks they are the same)
JITTER = T.ColorJitter(0.4, 0.4, 0.4, 0.1)
JITTER_P, GRAYSCALE_P, BLUR_P, BLUR_SIGMA = 0.8, 0.2, 0.5, (0.1, 2.0)


class DrawnPair(tuple):
    """(student draw, teacher draw or None): what PairDraw returns."""


class PairDraw:
    """imagenet.ViewPair's draws: the student's view first, then the teacher's (None with
    `single`, where the teacher sees the student's view)."""

    def __init__(self, teacher, student, single):
        self.teacher, self.student, self.single = teacher, student, single

    def __call__(self, img):
        student = self.student(img)
        return DrawnPair((student, None if self.single else self.teacher(img)))


class BatchDecoder:
    """The device-side part: a list of Encoded samples -> a normalised float batch on `device`
    (`views`: the student's and the teacher's batch, the latter None unless the samples hold a
    PairDraw's separate views)."""

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
        i, j, h, w, flip = crop[:5]
        image = TF.resized_crop(image, i, j, h, w, [self.size, self.size], antialias=True)
        if len(crop) > 5:
            image = strong_colour_and_blur(image, *crop[5:])
        return image.flip(-1) if flip else image

    def _batch(self, images, crops):
        batch = torch.stack([self.view(im, c) for im, c in zip(images, crops)])
        return TF.normalize(batch.float().div_(255), self.mean, self.std)

    def views(self, samples, device):
        images = self.decode(samples, device)
        if not isinstance(samples[0].crop, DrawnPair):
            return self._batch(images, [s.crop for s in samples]), None
        student = self._batch(images, [s.crop[0] for s in samples])
        if samples[0].crop[1] is None:
            return student, None
        return student, self._batch(images, [s.crop[1] for s in samples])

    def __call__(self, samples, device):
        return self.views(samples, device)[0]


def strong_colour_and_blur(image, jitter, grayscale, sigma):
    """T.ColorJitter (its ops in the drawn order), T.RandomGrayscale and the Gaussian blur of
    radius `sigma` (a kernel of 3 sigma each side) on a uint8 CHW image, as drawn by CropDraw."""
    if jitter is not None:
        order, factors = jitter[0], jitter[1:]
        ops = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)
        for k in order:
            image = ops[k](image, factors[k])
    if grayscale:
        image = TF.rgb_to_grayscale(image, num_output_channels=3)
    if sigma is not None:
        kernel = 2 * math.ceil(3 * sigma) + 1
        image = TF.gaussian_blur(image, [kernel, kernel], [sigma, sigma])
    return image


def _decode_jpegs(payloads, device):
    try:   # torchvision >= 0.19 decodes a list in one batched call
        return decode_jpeg(payloads, mode=ImageReadMode.RGB, device=device)
    except TypeError:
        return [decode_jpeg(p, mode=ImageReadMode.RGB, device=device) for p in payloads]
