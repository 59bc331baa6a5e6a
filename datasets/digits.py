"""The embedded default dataset: scikit-learn's bundled handwritten digits (1,797 real 8x8
images, 10 classes, no download), upsampled to 32x32 RGB uint8 with a fixed stratified split."""
import torch
import torch.nn.functional as F

NUM_CLASSES = 10


def load_digits_tensors():
    from sklearn.datasets import load_digits
    bunch = load_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32)[:, None] / 16.0   # (N, 1, 8, 8) in [0, 1]
    images = F.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False)
    images = (images.clamp(0, 1) * 255).round().to(torch.uint8).repeat(1, 3, 1, 1)
    return images, torch.tensor(bunch.target, dtype=torch.int64)


def split_indices(labels, test_fraction=0.2):
    """Deterministic stratified split: within each class, every k-th sample (in file order)
    goes to the test set."""
    step = round(1 / test_fraction)
    train, test = [], []
    for c in range(NUM_CLASSES):
        idx = (labels == c).nonzero().flatten().tolist()
        test += idx[::step]
        train += [i for i in idx if i not in set(idx[::step])]
    return torch.tensor(sorted(train)), torch.tensor(sorted(test))


def load_split(train):
    images, labels = load_digits_tensors()
    train_idx, test_idx = split_indices(labels)
    idx = train_idx if train else test_idx
    return images[idx].contiguous(), labels[idx].contiguous()
