"""Batched augmentation on the training device, with the distribution of the reference's
per-image PIL pipeline RandomCrop(32, padding=4) -> RandomHorizontalFlip -> ToTensor -> Normalize:
zero padding, crop offsets uniform over 0..2*pad inclusive per axis, flip with p = 0.5, pixels/255.
Random draws come from a CPU torch.Generator, so a seed gives the same batches on any device."""
import torch
import torch.nn.functional as F


def draw_crop_flip(n, pad, generator):
    """Per-sample crop offsets (y, x) in [0, 2*pad] and flip decisions, drawn on the CPU."""
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5
    return offsets, flips


def crop_flip(images, offsets, flips, pad):
    """images: (N, C, H, W) uint8 on any device. Zero-pad by `pad`, crop HxW at `offsets`,
    mirror the rows of samples whose `flips` is True. Returns uint8 (N, C, H, W)."""
    n, c, h, w = images.shape
    device = images.device
    padded = F.pad(images, (pad, pad, pad, pad))
    offsets = offsets.to(device)
    rows = offsets[:, 0:1] + torch.arange(h, device=device)          # (N, H)
    cols = offsets[:, 1:2] + torch.arange(w, device=device)          # (N, W)
    cols = torch.where(flips.to(device)[:, None], cols.flip(1), cols)
    batch = torch.arange(n, device=device)[:, None, None]
    # advanced indexing over (N, H, W) picks every sample's own window in one gather
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()


def normalize(images_uint8, mean, std):
    """uint8 (N, C, H, W) -> float (x/255 - mean)/std, as ToTensor + Normalize."""
    mean = torch.tensor(mean, device=images_uint8.device).view(1, -1, 1, 1)
    std = torch.tensor(std, device=images_uint8.device).view(1, -1, 1, 1)
    return (images_uint8.float().div_(255.0) - mean) / std


def rotation_views(images, flips=None, offsets=None, pad=4):
    """SSKD's four views per image: one horizontal flip decision per image (`flips`, shared by its
    views; None for evaluation); view r = the image rotated by r * 90 degrees counter-clockwise
    (np.rot90 on the H, W axes); then, when `offsets` (4N, 2) are given, an independent pad-and-crop
    per view. Returns uint8 (4N, C, H, W) with row 4n + r = image n, rotation r."""
    if flips is not None:
        images = torch.where(flips.to(images.device)[:, None, None, None], images.flip(3), images)
    views = torch.stack([torch.rot90(images, k, dims=(2, 3)) for k in range(4)], 1).flatten(0, 1)
    if offsets is not None:
        views = crop_flip(views, offsets, torch.zeros(len(views), dtype=torch.bool), pad)
    return views
