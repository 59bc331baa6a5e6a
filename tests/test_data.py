"""Data pipeline: CIFAR-100 on-disk format, digits, and the batched augmentation's distribution."""
import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image

import datasets
from conftest import write_cifar10_folder
from datasets import REGISTRY, InMemoryLoader, ImageSet, load_image_sets, registry
from datasets import augment
from datasets import DatasetNotFoundError


def test_cifar100_pickle_format(cifar_root):
    train, test = load_image_sets("cifar100", cifar_root)
    assert train.images.shape == (200, 3, 32, 32) and train.images.dtype == torch.uint8
    assert test.images.shape == (100, 3, 32, 32) and train.num_classes == 100
    assert train.labels[:3].tolist() == [0, 1, 2]
    # same pixels as torchvision's reading of the same rows (HWC after transposing channel-major data)
    import os
    import pickle
    with open(os.path.join(cifar_root, "cifar-100-python", "train"), "rb") as f:
        raw = pickle.load(f, encoding="latin1")["data"]
    hwc = raw.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    assert np.array_equal(train.images[5].permute(1, 2, 0).numpy(), hwc[5])


def test_cifar10_batches_in_order(tmp_path):
    """CIFAR-10 is one registry entry and its layout: the five train batches concatenated in order,
    the test batch, 'labels', its constants; training batches through datasets.build."""
    import os
    import pickle
    root = write_cifar10_folder(str(tmp_path / "data"))
    train, test = load_image_sets("cifar10", root)
    rows, labels = [], []
    for i in range(1, 6):
        with open(os.path.join(root, "cifar-10-batches-py", f"data_batch_{i}"), "rb") as f:
            entry = pickle.load(f, encoding="latin1")
        rows.append(entry["data"])
        labels += entry["labels"]
    assert train.images.shape == (100, 3, 32, 32) and len(test) == 10 and train.num_classes == 10
    assert np.array_equal(train.images.reshape(100, -1).numpy(), np.concatenate(rows))
    assert train.labels.tolist() == labels
    assert train.mean == REGISTRY["cifar10"].mean and test.std == REGISTRY["cifar10"].std
    split = datasets.build("cifar10", root, "train", "train", "rotations", batch_size=8)
    batch = next(iter(split.loader))
    assert batch["image"].shape == (32, 3, 32, 32) and split.num_classes == 10
    with pytest.raises(DatasetNotFoundError, match="cifar-10-batches-py"):
        load_image_sets("cifar10", str(tmp_path / "nowhere"))


def test_registry_is_the_one_list_of_data_sets():
    """Every data set the scripts accept is a registry entry, and what the help says comes from it."""
    import train_student
    import train_teacher
    assert datasets.NAMES == tuple(REGISTRY) and {"cifar10", "cifar100", "digits", "imagenet", "imagenet100"} <= set(REGISTRY)
    for name, e in REGISTRY.items():
        assert e.kind in ("memory", "folder") and (e.load is not None) == e.in_memory, name
        assert e.class_subset is None or not e.in_memory, name
    for module, names in ((train_student, datasets.NAMES), (train_teacher, [n for n in REGISTRY if REGISTRY[n].in_memory])):
        text = " ".join(_help(module).split())
        assert "{" + ",".join(names) + "}" in text, module.__name__
        assert "cifar-10-batches-py/ (cifar10)" in text, module.__name__


def _help(module):
    import contextlib
    import io
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        module.parse_args(["--help"])
    return out.getvalue()


def test_cifar100_missing_folder_names_it(tmp_path):
    with pytest.raises(DatasetNotFoundError) as e:
        load_image_sets("cifar100", str(tmp_path / "nowhere"))
    assert "cifar-100-python" in str(e.value) and "nowhere" in str(e.value) and "--download" in str(e.value)


def test_digits_split_fixed_and_disjoint():
    train, test = load_image_sets("digits")
    train2, _ = load_image_sets("digits")
    assert torch.equal(train.images, train2.images)
    assert len(train) + len(test) == 1797 and train.images.shape[1:] == (3, 32, 32)
    assert set(test.labels.tolist()) == set(range(10))
    flat_train = {bytes(x.numpy().tobytes()) for x in train.images}
    assert sum(bytes(x.numpy().tobytes()) in flat_train for x in test.images) < 5  # digits has a few duplicates


def test_digits_read_as_scikit_learn_reads_them():
    """The bundled file read directly (no scikit-learn import) gives scikit-learn's digits."""
    from sklearn.datasets import load_digits

    from datasets.digits import load_digits_tensors
    images, labels = load_digits_tensors()
    bunch = load_digits()
    assert torch.equal(labels, torch.tensor(bunch.target, dtype=torch.int64))
    small = torch.tensor(bunch.images, dtype=torch.float32)[:, None] / 16.0
    upsampled = torch.nn.functional.interpolate(small, size=(32, 32), mode="bilinear", align_corners=False)
    assert torch.equal(images, (upsampled.clamp(0, 1) * 255).round().to(torch.uint8).repeat(1, 3, 1, 1))


def test_normalisation_constants_exact():
    assert REGISTRY['cifar100'].mean == (0.5071, 0.4867, 0.4408)
    assert REGISTRY['cifar100'].std == (0.2675, 0.2565, 0.2761)
    assert registry.SSKD_CIFAR100_MEAN == (0.5071, 0.4866, 0.4409)
    img = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    ours = augment.normalize(img[None], REGISTRY['cifar100'].mean, REGISTRY['cifar100'].std)[0]
    pil = Image.fromarray(img.permute(1, 2, 0).numpy())
    ref = TF.normalize(TF.to_tensor(pil), REGISTRY['cifar100'].mean, REGISTRY['cifar100'].std)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)


def test_crop_flip_equals_per_image_pipeline():
    """The batched gather gives exactly torchvision's pad -> crop -> hflip for the same draws."""
    g = torch.Generator().manual_seed(3)
    imgs = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=g)
    offsets, flips = augment.draw_crop_flip(64, 4, g)
    out = augment.crop_flip(imgs, offsets, flips, 4)
    for i in range(64):
        ref = TF.crop(TF.pad(imgs[i], [4]), int(offsets[i, 0]), int(offsets[i, 1]), 32, 32)
        if flips[i]:
            ref = TF.hflip(ref)
        assert torch.equal(out[i], ref)


def _coordinate_images(n):
    """Channel 0 holds row+1, channel 1 column+1, so a crop reveals its own offset."""
    ys = torch.arange(1, 33).view(32, 1).expand(32, 32)
    xs = torch.arange(1, 33).view(1, 32).expand(32, 32)
    img = torch.stack([ys, xs, torch.zeros(32, 32, dtype=torch.long)]).to(torch.uint8)
    return img.expand(n, 3, 32, 32).contiguous()


def test_augmentation_statistics_through_loader():
    n = 3000
    image_set = ImageSet("coords", _coordinate_images(n), torch.zeros(n, dtype=torch.long), 1,
                         (0.0, 0.0, 0.0), (1 / 255, 1 / 255, 1 / 255))  # normalize() then returns raw pixels
    loader = InMemoryLoader(image_set, 500, train=True, generator=torch.Generator().manual_seed(0))
    dy, dx, flipped = [], [], []
    for _ in range(3):
        for batch in loader:
            x = batch["image"].round().long()
            flip = x[:, 1, 16, 15] > x[:, 1, 16, 16]   # columns run backwards
            dy.append(x[:, 0, 16, 16] - 13)
            dx.append(torch.where(flip, x[:, 1, 16, 16] - 12, x[:, 1, 16, 16] - 13))
            flipped.append(flip)
    dy, dx, flipped = torch.cat(dy), torch.cat(dx), torch.cat(flipped)
    total = len(dy)
    for offsets in (dy, dx):
        counts = torch.bincount(offsets, minlength=9)
        assert len(counts) == 9, "offsets must cover exactly 0..8"
        freq = counts.double() / total
        assert (freq - 1 / 9).abs().max() < 0.012, freq
    assert abs(flipped.double().mean().item() - 0.5) < 0.015
    # zero padding: a crop at offset 0 starts with 4 rows of zeros, one at offset 8 ends with them
    last = x[:, 0, :, 16]
    top = dy[-len(x):] == 0
    assert (last[top, :4] == 0).all() and (last[top, 4] == 1).all()
    bottom = dy[-len(x):] == 8
    assert (last[bottom, -4:] == 0).all() and (last[bottom, -5] == 32).all()


def test_loader_yields_indices_and_eval_is_ordered():
    train, test = load_image_sets("digits")
    batches = list(InMemoryLoader(test, 100, train=False))
    idx = torch.cat([b["index"] for b in batches])
    assert torch.equal(idx, torch.arange(len(test)))
    assert torch.equal(torch.cat([b["label"] for b in batches]), test.labels)
    seen = torch.cat([b["index"] for b in InMemoryLoader(train, 64, train=True)])
    assert torch.equal(seen.sort().values, torch.arange(len(train)))


def test_distributed_shares_partition_the_data():
    train, _ = load_image_sets("digits")
    shares = []
    for rank in range(2):
        loader = InMemoryLoader(train, 64, train=True, generator=torch.Generator().manual_seed(1),
                                rank=rank, world_size=2)
        shares.append(torch.cat([b["index"] for b in loader]))
    assert len(shares[0]) == len(shares[1]) == (len(train) + 1) // 2
    assert set(torch.cat(shares).tolist()) == set(range(len(train)))
