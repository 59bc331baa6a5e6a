"""Speed of every table cell type on this machine (a benchmark, not a test): the real training loop
(`engine.loops.train_one_epoch`) over resident synthetic data, in eager float32 and in each
optimised mode, with images/s, ms/step, peak memory and the hours the full recipe of the cell
would take at that speed.

    python bench/speed.py --quick                  # CPU, small networks, a couple of minutes
    python bench/speed.py --device cuda --json bench/results/h200.json
    python bench/speed.py --cells kd,sskd --modes eager,compile,bf16+nhwc+compile

Cells (the paper's architectures unless --quick):
  teacher        resnet32x4 trained with CE, CIFAR 32 px, batch 64
  kd, crd, sskd  resnet32x4 -> resnet8x4, batch 64 (SSKD: 4 rotated views per image)
  sskd_head      SSKD's teacher projection-head phase (teacher forward + head)
  simreg_live    ResNet-50 -> ResNet-18 at 224 px, batch 256, the teacher run every step
  simreg_cached  ResNet-18 at 224 px, batch 256, teacher features read from a feature cache
  linear         the linear probe on 512-d cached features, batch 256
  knn            k-NN (k=20) search of 10,000 queries over N x D features (FAISS when installed)
  crd_sampler    CRD's two negative samplers at ImageNet size (N = 1,281,167, K = 16,384): random keys
                 over N against the candidate draws CRD uses for large N
  augment        CIFAR crop + flip + normalise: our batched on-device version against the reference's
                 per-image PIL transforms
  decode         an ImageNet-style JPEG folder (500 x 375 px) through the real SimReg training
                 loader, weak view at 224 px: --decode cpu (PIL in the workers) against --decode gpu
                 (JPEG bytes from the workers, decoded and augmented in batches on the device)
Modes: eager (float32 NCHW, the reference numbers), nhwc (--channels-last), bf16 / fp16 (--amp),
compile (--compile), and any '+'-joined combination.

Training cells also print the step's arithmetic rate (GFLOP/s: the matrix products and convolutions
of one step, counted once, over its time) and that rate as a share of the device's dense ceiling
in the mode's precision (the faster of a large matrix product and a wide 3x3 convolution, measured
first): near 100 % a step is bound by arithmetic and no compiler can make it much faster in that
precision; far below, it is bound by memory traffic, kernel launches or the host.

--quick uses resnet32 -> resnet8 and 64 px SimReg networks with small batches, so the hours it
prints are for those, not for the paper's cells."""
import argparse
import os
import resource
import sys
import tempfile
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import models  # noqa: E402
from core.compile import mark_step_begin, resolve_mode  # noqa: E402
from core.jsonio import write_json  # noqa: E402
from core.knn import KnnIndex  # noqa: E402
from core.optim import sgd  # noqa: E402
from core.precision import make_grad_scaler  # noqa: E402
from datasets.registry import REGISTRY  # noqa: E402
from datasets.feature_cache import FeatureCache, FeatureWriter, image_set_identity  # noqa: E402
from datasets.memory import ImageSet, InMemoryLoader  # noqa: E402
from engine.distill import CachedTeacher, FrozenNet, build_distiller  # noqa: E402
from engine.loops import train_one_epoch  # noqa: E402

CIFAR_STEPS = 782                 # ceil(50,000 / 64)
IMAGENET_STEPS = 1281167 // 256   # SimReg drops the last partial batch
RECIPE_STEPS = {"teacher": 240 * CIFAR_STEPS, "kd": 240 * CIFAR_STEPS, "crd": 240 * CIFAR_STEPS,
                "sskd": 240 * CIFAR_STEPS, "sskd_head": 60 * CIFAR_STEPS,
                "simreg_live": 130 * IMAGENET_STEPS, "simreg_cached": 130 * IMAGENET_STEPS,
                "linear": 40 * IMAGENET_STEPS}
CELLS = ("teacher", "kd", "crd", "sskd", "sskd_head", "simreg_live", "simreg_cached", "linear", "knn", "crd_sampler",
         "augment", "decode")
SINGLE_MODE = ("knn", "crd_sampler", "augment", "decode")   # no precision or compile modes


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def parse_mode(mode):
    parts = set(mode.split("+"))
    unknown = parts - {"eager", "nhwc", "bf16", "fp16", "compile"}
    if unknown:
        raise SystemExit(f"speed.py: unknown mode part(s) {', '.join(sorted(unknown))}")
    amp = "bf16" if "bf16" in parts else "fp16" if "fp16" in parts else "off"
    return {"amp": amp, "channels_last": "nhwc" in parts, "compile": "compile" in parts}


class Config:
    def __init__(self, quick, device):
        self.device, self.quick = device, quick
        if quick:
            self.cifar = ("resnet32", "resnet8", 32)         # teacher, student, batch
            self.imagenet = ("resnet18", "resnet18", 64, 8)  # teacher, student, pixels, batch
            self.knn = (5000, 128)
            self.steps = 4
        else:
            self.cifar = ("resnet32x4", "resnet8x4", 64)
            self.imagenet = ("resnet50", "resnet18", 224, 256)
            self.knn = (1281167 if device.type == "cuda" else 100000, 2048)
            self.steps = 30 if device.type == "cuda" else 8


def cifar_data(n, batch, device, num_classes=100):
    labels = torch.arange(n) % num_classes
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return ImageSet("bench", images, labels, num_classes, (0.5,) * 3, (0.25,) * 3)


def build_cell(cell, cfg, mode, tmp):
    """(distiller, optimizer, loader, images per step) for a training cell: the Distiller is built by
    engine.distill.build_distiller, as the training scripts build theirs."""
    device, flags = cfg.device, parse_mode(mode)
    compile_mode = resolve_mode("auto" if flags["compile"] else "off", device)
    if cell.startswith("simreg"):
        t_arch, s_arch, px, batch = cfg.imagenet
        n = batch * cfg.steps
        images = torch.randint(0, 256, (n, 3, px, px), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
        data = ImageSet("bench", images, torch.zeros(n, dtype=torch.long), 1000, (0.5,) * 3, (0.25,) * 3)
        if cell == "simreg_cached":
            dim = 2048 if t_arch == "resnet50" else 512
            prefix = os.path.join(tmp, "feats")
            identity, names = image_set_identity(data, "train")
            writer = FeatureWriter(prefix, identity, names, dim, px, "bench")
            writer.write(torch.arange(n), torch.randn(n, dim))
            writer.close()
            teacher = CachedTeacher(FeatureCache(prefix))
        else:
            teacher = FrozenNet(models.create(t_arch).to(device))
        method_name = "simreg"
    else:
        t_arch, s_arch, batch = cfg.cifar
        n = batch * cfg.steps
        data = cifar_data(n, batch, device)
        if cell == "teacher":   # a teacher trained alone: CE, no teacher network
            s_arch, teacher = t_arch, None
        else:
            teacher = FrozenNet(models.create(t_arch, 100).to(device))
        method_name = {"teacher": "ce", "sskd_head": "sskd"}.get(cell, cell)
    hp = {"nce_k": min(16384, n - n // 100 - 1)} if method_name == "crd" else None
    distiller, _ = build_distiller(method_name, s_arch, teacher, t_arch, tuple(data.images.shape[1:]),
                                   data.num_classes, data.labels, device, hparams=hp, amp=flags["amp"],
                                   channels_last=flags["channels_last"], compile_mode=compile_mode)
    views = distiller.method.views
    if cell == "sskd_head":
        phase = distiller.method.init_phase(distiller.student, None)
        distiller.begin_phase(phase)
        views = phase.views
    optimizer = sgd(distiller.trainable_parameters(), 0.01, 0.9, 5e-4, device)
    loader = InMemoryLoader(data, batch, True, device, views=views, generator=torch.Generator().manual_seed(1))
    return distiller, optimizer, loader, batch


def peak_memory_mib(device):
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # the process's peak RSS (Linux: KiB)


PRECISION_DTYPES = {"off": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def seconds_per_call(fn, device, repeat, warmup=1):
    """Mean wall-clock seconds of `fn()` over `repeat` calls, after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / repeat


@torch.no_grad()
def dense_ceiling_gflop_per_s(device, dtype, repeat=10):
    """The dense arithmetic rate this device attains in `dtype`, against which a step's GFLOP/s is
    read: the faster of a square matrix product (2048 on the CPU, 8192 on CUDA) and a wide
    channels_last 3x3 convolution (256 -> 256 channels at 8 x 8 px, the teacher's last stage; on
    this project's CPU oneDNN's convolution is nearly 1.5x its float32 matrix product)."""
    n, batch = (8192, 1024) if device.type == "cuda" else (2048, 256)
    g = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, generator=g).to(dtype)
    x = torch.randn(batch, 256, 8, 8, device=device, generator=g).to(dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randn(256, 256, 3, 3, device=device, generator=g).to(dtype).contiguous(memory_format=torch.channels_last)
    matmul = 2 * n ** 3 / seconds_per_call(lambda: a @ a, device, repeat, warmup=2)
    conv = 2 * batch * 256 * 256 * 9 * 64 / seconds_per_call(lambda: torch.nn.functional.conv2d(x, w, padding=1),
                                                             device, repeat, warmup=2)
    return max(matmul, conv) / 1e9


def step_gflop(distiller, loader, epoch):
    """The arithmetic of one training step (forward and backward of every network and the loss;
    the counter sees matrix products and convolutions), counted on one eager pass: it is the same
    in every precision, layout and compile mode."""
    compile_mode, distiller.compile_mode = distiller.compile_mode, None
    try:
        with FlopCounterMode(display=False) as counter:
            terms, _ = distiller(next(iter(loader)), epoch)
            sum(terms.values()).backward()
    finally:
        distiller.compile_mode = compile_mode
        distiller.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 1e9


def time_training_cell(cell, cfg, mode, tmp):
    device = cfg.device
    distiller, optimizer, loader, batch = build_cell(cell, cfg, mode, tmp)
    scaler = make_grad_scaler(device, distiller.amp)
    distiller.train()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    train_one_epoch(distiller, loader, optimizer, 1, scaler=scaler, show_progress=False)   # warm-up, compiles
    sync(device)
    warmup = time.perf_counter() - t0
    t0 = time.perf_counter()
    train_one_epoch(distiller, loader, optimizer, 2, scaler=scaler, show_progress=False)
    sync(device)
    seconds = (time.perf_counter() - t0) / len(loader)
    gflop = step_gflop(distiller, loader, 3)
    return {"ms_per_step": 1000 * seconds, "images_per_s": batch / seconds, "warmup_s": warmup,
            "peak_memory_MiB": peak_memory_mib(device), "recipe_hours": RECIPE_STEPS[cell] * seconds / 3600,
            "gflop_per_step": gflop, "gflop_per_s": gflop / seconds}


def time_linear(cfg, mode):
    """eval_linear.py --use-cache's step: its head (L2-normalise, fixed BatchNorm, Linear) and its
    (possibly compiled) loss on cached 512-d features; the head runs in float32 there, so the
    precision flags do not change this cell."""
    from eval_linear import linear_head, training_step_parts
    device, flags = cfg.device, parse_mode(mode)
    batch, dim = 256, 512
    feats = torch.randn(batch * cfg.steps, dim, device=device)
    labels = torch.randint(0, 1000, (len(feats),), device=device)
    head = linear_head(torch.ones(dim), torch.zeros(dim), 1000).to(device)
    _, head_loss = training_step_parts(None, head, "off", resolve_mode("auto" if flags["compile"] else "off", device))
    optimizer = sgd(head.parameters(), 0.01, 0.9, 1e-4, device)

    def epoch():
        for i in range(cfg.steps):
            mark_step_begin(device)
            loss = head_loss(feats[i * batch:(i + 1) * batch], labels[i * batch:(i + 1) * batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    epoch()
    sync(device)
    t0 = time.perf_counter()
    epoch()
    sync(device)
    seconds = (time.perf_counter() - t0) / cfg.steps
    return {"ms_per_step": 1000 * seconds, "images_per_s": batch / seconds, "peak_memory_MiB": peak_memory_mib(device),
            "recipe_hours": RECIPE_STEPS["linear"] * seconds / 3600}


def time_knn(cfg):
    n, dim = cfg.knn
    index = KnnIndex(dim)
    g = torch.Generator().manual_seed(0)
    for start in range(0, n, 100000):
        rows = min(100000, n - start)
        index.add(torch.arange(start, start + rows), torch.randn(rows, dim, generator=g))
    queries = torch.randn(10000 if n > 10000 else 1000, dim, generator=g)
    index.search(queries[:100], 20)
    t0 = time.perf_counter()
    index.search(queries, 20)
    seconds = time.perf_counter() - t0
    # the ImageNet evaluation: 50,000 queries over the 1.28 M train features (linear in both)
    full = seconds * (50000 / len(queries)) * (1281167 / n) * (2048 / dim)
    return {"queries_per_s": len(queries) / seconds, "index_rows": n, "dim": dim, "backend": index.backend,
            "recipe_hours": full / 3600}


def time_crd_sampler(cfg, n=1281167, k=16384, repeat=3):
    from losses.crd import candidate_count, sample_negatives, sample_negatives_by_candidates
    device = cfg.device
    batch = cfg.imagenet[3] if device.type == "cuda" else 16 if cfg.steps < 8 else 64
    labels = (torch.arange(n) % 1000).to(device)
    count = torch.bincount(labels)
    by_class, start = torch.argsort(labels, stable=True), torch.cumsum(count, 0) - count
    n_candidates = candidate_count(k, n - int(count.max()), n)
    g = torch.Generator(device=device).manual_seed(0)
    index = torch.randint(0, n, (batch,), device=device, generator=g)
    draws = {"random_keys": lambda: sample_negatives(index, labels, k, g),
             "candidates": lambda: sample_negatives_by_candidates(index, labels, k, g, by_class, start, count,
                                                                  n_candidates)}
    out = {"batch": batch, "n_candidates": n_candidates}
    for name, fn in draws.items():
        out[f"{name}_ms_per_batch"] = 1000 * seconds_per_call(fn, device, repeat)
    return out


def write_jpeg_folder(root, n, size=(500, 375), classes=4):
    """<root>/train/<wnid>/*.JPEG: smooth gradients plus noise, so the files have ImageNet-like sizes."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    w, h = size
    ramp = np.linspace(0, 1, w)[None, :, None] * np.linspace(0, 1, h)[:, None, None]
    for i in range(n):
        folder = os.path.join(root, "train", f"n{i % classes:08d}")
        os.makedirs(folder, exist_ok=True)
        colour = rng.integers(0, 256, 3)
        pixels = np.clip(ramp * colour + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(os.path.join(folder, f"img_{i}.JPEG"), quality=90)


def time_decode(cfg, tmp):
    """Images/s of the SimReg training loader (weak view, 224 px) with PIL decoding in the workers
    against batched decoding on the device; both through datasets.build, one warm epoch first."""
    import datasets
    n, batch = (64, 16) if cfg.quick else (1024, 256)
    workers = min(8, os.cpu_count() or 1)
    root = os.path.join(tmp, "jpegs")
    if not os.path.isdir(root):
        write_jpeg_folder(root, n)
    out = {"images": n, "batch": batch, "workers": workers}
    for decode in ("cpu", "gpu"):
        split = datasets.build("imagenet", root, "train", purpose="train", views="pair", batch_size=batch,
                               device=cfg.device, generator=torch.Generator().manual_seed(0), workers=workers,
                               decode=decode)
        for timed in (False, True):
            t0 = time.perf_counter()
            seen = 0
            for b in split.loader:
                seen += len(b["image"])
            sync(cfg.device)
            if timed:
                out[f"{decode}_images_per_s"] = seen / (time.perf_counter() - t0)
    return out


def time_augment(cfg, batch=256, repeat=10):
    import torchvision.transforms as T
    from PIL import Image

    from datasets import augment
    device = cfg.device
    images = torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    resident = images.to(device)

    def batched():
        offsets, flips = augment.draw_crop_flip(batch, 4, g)
        augment.normalize(augment.crop_flip(resident, offsets, flips, 4), REGISTRY['cifar100'].mean, REGISTRY['cifar100'].std)

    pil = [Image.fromarray(im.permute(1, 2, 0).numpy()) for im in images]
    reference = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                           T.Normalize(REGISTRY['cifar100'].mean, REGISTRY['cifar100'].std)])

    def per_image():
        torch.stack([reference(im) for im in pil]).to(device)

    out = {}
    for name, fn, n in (("batched", batched, repeat), ("per_image_pil", per_image, max(1, repeat // 5))):
        out[f"{name}_images_per_s"] = batch / seconds_per_call(fn, device, n)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="small networks and batches (CPU in a couple of minutes)")
    p.add_argument("--cells", default=",".join(CELLS), help="comma list of: " + ", ".join(CELLS))
    p.add_argument("--modes", default=None,
                   help="comma list of modes (default: eager,compile and, on CUDA, bf16+nhwc, bf16+nhwc+compile, "
                        "fp16+nhwc+compile; on the CPU bf16 and bf16+compile)")
    p.add_argument("--json", default=None, help="also write the figures to this file")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    cfg = Config(args.quick, device)
    cells = [c for c in args.cells.split(",") if c]
    bad = [c for c in cells if c not in CELLS]
    if bad:
        raise SystemExit(f"speed.py: unknown cell(s) {', '.join(bad)}; choose from {', '.join(CELLS)}")
    if args.modes:
        modes = args.modes.split(",")
    elif device.type == "cuda":
        modes = ["eager", "compile", "bf16+nhwc", "bf16+nhwc+compile", "fp16+nhwc+compile"]
    else:
        modes = ["eager", "compile", "bf16", "bf16+compile"]
    for m in modes:
        parse_mode(m)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU x {torch.get_num_threads()} threads"
    # the dense ceiling in each precision the modes use ('off': float32)
    ceilings = {amp: dense_ceiling_gflop_per_s(device, PRECISION_DTYPES[amp])
                for amp in sorted({parse_mode(m)["amp"] for m in modes})}
    results = {"device": name, "torch": torch.__version__, "quick": args.quick,
               "ceiling_gflop_per_s": {str(PRECISION_DTYPES[a]).replace("torch.", ""): v for a, v in ceilings.items()},
               "cells": {}}
    print(f"# {name}, torch {torch.__version__}{' (--quick: small networks)' if args.quick else ''}")
    print("# dense ceiling: " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in results["ceiling_gflop_per_s"].items()))
    print(f"{'cell':<14} {'mode':<20} {'img/s':>10} {'ms/step':>9} {'peak MiB':>9} {'recipe h':>9} "
          f"{'GFLOP/s':>9} {'of ceiling':>10}")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for cell in cells:
            results["cells"][cell] = {}
            for mode in (["eager"] if cell in SINGLE_MODE else modes):
                torch._dynamo.reset()
                if cell == "augment":
                    r = time_augment(cfg)
                    print(f"{cell:<14} {'batched':<20} {r['batched_images_per_s']:>10.0f}")
                    print(f"{cell:<14} {'per-image PIL (ref)':<20} {r['per_image_pil_images_per_s']:>10.0f}")
                elif cell == "decode":
                    r = time_decode(cfg, tmp)
                    for decode in ("cpu", "gpu"):
                        print(f"{cell:<14} {'--decode ' + decode:<20} {r[decode + '_images_per_s']:>10.0f}   "
                              f"({r['workers']} workers, batch {r['batch']})")
                elif cell == "crd_sampler":
                    r = time_crd_sampler(cfg)
                    for name in ("random_keys", "candidates"):
                        print(f"{cell:<14} {name:<20} {'':>10} {r[name + '_ms_per_batch']:>9.1f}   "
                              f"(batch {r['batch']}, ms per batch of negatives)")
                elif cell == "knn":
                    r = time_knn(cfg)
                    print(f"{cell:<14} {r['backend']:<20} {r['queries_per_s']:>10.0f} {'':>9} {'':>9} "
                          f"{r['recipe_hours']:>9.3f}   ({r['index_rows']} x {r['dim']}, queries/s)")
                else:
                    r = time_linear(cfg, mode) if cell == "linear" else time_training_cell(cell, cfg, mode, tmp)
                    line = (f"{cell:<14} {mode:<20} {r['images_per_s']:>10.1f} {r['ms_per_step']:>9.1f} "
                            f"{r['peak_memory_MiB']:>9.0f} {r['recipe_hours']:>9.2f}")
                    if "gflop_per_s" in r:
                        r["of_ceiling"] = r["gflop_per_s"] / ceilings[parse_mode(mode)["amp"]]
                        line += f" {r['gflop_per_s']:>9.0f} {100 * r['of_ceiling']:>9.0f}%"
                    print(line, flush=True)
                results["cells"][cell][mode] = r
                if args.json:   # after every figure: a run stopped part-way keeps what it measured
                    write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
