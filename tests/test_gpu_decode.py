"""--decode gpu, run here on the CPU: the workers' crop draws and the batched decode + crop +
resize + flip give the PIL pipeline's crop boxes for the same sample seeds, and its pixels within
the JPEG decoders' and resize kernels' rounding; files that are not plain JPEGs (PNG content,
grayscale) and corrupt files are handled as on the PIL path."""
import os

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

import datasets
from datasets import gpu_decode, imagenet
from datasets.errors import DatasetError


def _photo(h, w, seed):
    """A smooth, photo-like image (gradients and blobs, mild noise): what JPEG is made for."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    channels = [np.sin(6 * x * rng.uniform(0.5, 2) + rng.uniform(0, 6)) * np.cos(5 * y * rng.uniform(0.5, 2))
                for _ in range(3)]
    pixels = 128 + 90 * np.stack(channels, -1) + rng.normal(0, 4, (h, w, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8)


@pytest.fixture
def photo_folder(tmp_path):
    root = tmp_path / "imagenet"
    for split in ("train", "val"):
        for c in range(2):
            folder = root / split / f"n{c:08d}"
            os.makedirs(folder)
            for i in range(6):
                h, w = (96, 128) if i % 2 else (120, 90)
                Image.fromarray(_photo(h, w, 10 * c + i)).save(folder / f"img_{i}.JPEG", quality=92)
            # ImageNet's oddities: a PNG with a .JPEG name, and a grayscale JPEG
            Image.fromarray(_photo(80, 100, 99 + c)).save(folder / "png_inside.JPEG", format="PNG")
            Image.fromarray(_photo(90, 90, 77 + c)[..., 0]).save(folder / "gray.JPEG", quality=92)
    return str(root)


def _pil_and_gpu(root, transform, draw, train, size):
    """Every train image through the PIL pipeline and through the GPU path (on the CPU), with the
    same sample seeds."""
    pil = imagenet.build_imagefolder(root, "train", transform)
    enc = imagenet.build_imagefolder(root, "train", draw, encoded=True)
    decoder = gpu_decode.BatchDecoder(size, imagenet.IMAGENET_MEAN, imagenet.IMAGENET_STD)
    keys = [(i, 1234) if train else i for i in range(len(pil))]
    want = torch.stack([pil[k][0] for k in keys])
    samples = [enc[k][0] for k in keys]
    return want, decoder(samples, "cpu"), samples


@pytest.mark.parametrize("purpose", ["weak", "probe", "eval"])
def test_gpu_path_matches_pil_path(photo_folder, purpose):
    size = 64
    transform, scale = {"weak": (imagenet.weak_transform(size), (0.2, 1.0)),
                        "probe": (imagenet.linear_train_transform(size), (0.08, 1.0)),
                        "eval": (imagenet.eval_transform(size), None)}[purpose]
    draw = gpu_decode.CropDraw(size, scale or (0.08, 1.0), train=purpose != "eval")
    want, got, samples = _pil_and_gpu(photo_folder, transform, draw, purpose != "eval", size)
    assert got.shape == want.shape == (len(samples), 3, size, size)
    # back to 0..255 levels
    std = torch.tensor(imagenet.IMAGENET_STD)[:, None, None]
    diff = ((got - want) * std * 255).abs()
    # same boxes: a different crop or flip would differ by tens of levels everywhere
    # (measured here: at most 1 level, 0.17 on average; a wrong flip alone gives ~19 on average)
    per_image = diff.flatten(1).mean(1)
    assert per_image.max() < 1.0, per_image
    assert diff.mean() < 0.5 and diff.max() <= 2.01, (diff.mean(), diff.max())
    if purpose != "eval":
        # the draws are those of T.RandomResizedCrop + T.RandomHorizontalFlip on the decoded image
        pil = imagenet.build_imagefolder(photo_folder, "train", None)
        for k, s in enumerate(samples):
            img = Image.open(pil.samples[k][0]).convert("RGB")
            torch.manual_seed(imagenet.sample_seed(1234, k))
            box = T.RandomResizedCrop.get_params(img, list(scale), [3 / 4, 4 / 3])
            assert s.crop == (*box, bool(torch.rand(1) < 0.5))
    kinds = {s.payload.dim() for s in samples}
    assert kinds == {1, 3}   # JPEG bytes, and the PNG decoded by the worker


def _levels(a, b):
    """|a - b| of normalised batches, in 0..255 levels."""
    return ((a - b) * torch.tensor(imagenet.IMAGENET_STD)[:, None, None] * 255).abs()


def test_strong_view_matches_pil_path(photo_folder):
    """MoCo-v2's strong view: the same crop, jitter factors and order, grayscale, blur radius and
    flip as imagenet.strong_transform; pixels within the 8-bit PIL colour ops' and box-blur's
    rounding (measured on this folder: 0.58 levels on average, at most 0.92 per image and 13 on
    one pixel, from a hue shift; the images without jitter or blur 0.17)."""
    size = 64
    reference = imagenet.strong_transform(size).transforms
    jitter, gray, blur = reference[1], reference[2], reference[3]
    assert (jitter.p, gray.p, blur.p) == (gpu_decode.JITTER_P, gpu_decode.GRAYSCALE_P, gpu_decode.BLUR_P)
    assert blur.transforms[0].sigma == gpu_decode.BLUR_SIGMA
    assert [getattr(jitter.transforms[0], a) for a in ("brightness", "contrast", "saturation", "hue")] == \
        [getattr(gpu_decode.JITTER, a) for a in ("brightness", "contrast", "saturation", "hue")]
    draw = gpu_decode.CropDraw(size, (0.2, 1.0), strong=True)
    want, got, samples = _pil_and_gpu(photo_folder, imagenet.strong_transform(size), draw, True, size)
    diff = _levels(got, want)
    # a missed or misordered op moves whole images by several levels on average
    assert diff.flatten(1).mean(1).max() < 1.5 and diff.mean() < 1.0 and diff.max() <= 20, \
        (diff.flatten(1).mean(1), diff.max())
    # every branch of the pipeline was taken by some image of the folder
    crops = [s.crop for s in samples]
    assert {c[5] is None for c in crops} == {True, False} and {c[6] for c in crops} == {True, False}
    assert {c[7] is None for c in crops} == {True, False}


@pytest.mark.parametrize("aug,single", [("weak_strong", False), ("strong_strong", True), ("weak_weak", False)])
def test_view_pairs_on_gpu_path_match_cpu_path(photo_folder, aug, single):
    """SimReg's pairs through datasets.build: the GPU path's batches (student 'image', teacher
    'image_t' unless single) are the PIL path's up to the kernels' rounding."""
    batches = {}
    for decode in ("cpu", "gpu"):
        split = datasets.build("imagenet", photo_folder, "train", "train", "pair", batch_size=8, image_size=48,
                               workers=0, decode=decode, aug=aug, single_aug=single,
                               generator=torch.Generator().manual_seed(5))
        batches[decode] = next(iter(split.loader))
    cpu, gpu = batches["cpu"], batches["gpu"]
    assert set(cpu) == set(gpu) and ("image_t" in gpu) == (not single)
    assert torch.equal(cpu["index"], gpu["index"])
    for key in ("image", "image_t") if not single else ("image",):
        diff = _levels(gpu[key], cpu[key])
        assert diff.flatten(1).mean(1).max() < 1.5 and diff.max() <= 20, (key, diff.flatten(1).mean(1))
    if not single:   # two different draws, not one view twice
        assert _levels(gpu["image"], gpu["image_t"]).mean() > 5


def test_build_with_gpu_decode(photo_folder, tmp_path):
    split = datasets.build("imagenet", photo_folder, "train", "train", "pair", batch_size=4, image_size=48,
                           workers=0, decode="gpu", generator=torch.Generator().manual_seed(0))
    batch = next(iter(split.loader))
    assert batch["image"].shape == (4, 3, 48, 48) and batch["image"].dtype == torch.float32
    assert "image_t" not in batch   # one view shared by teacher and student
    # a JPEG whose body is damaged is named, from the main process
    bad = os.path.join(photo_folder, "val", "n00000000", "img_0.JPEG")
    data = open(bad, "rb").read()
    open(bad, "wb").write(data[:200] + b"\x00" * 50 + data[-300:])
    val = datasets.build("imagenet", photo_folder, "val", "eval", batch_size=16, workers=0, decode="gpu")
    with pytest.raises(DatasetError, match="cannot read image .*img_0.JPEG"):
        for _ in val.loader:
            pass
