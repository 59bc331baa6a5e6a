"""Throughput benchmarks (not tests): the batched on-device augmentation against the reference's
per-image PIL pipeline, and training steps per second of teacher + student + method.

    python bench/throughput.py                      # CPU, a few methods
    python bench/throughput.py --device cuda --amp bf16 --methods kd,crd,sskd --student resnet8x4 --teacher resnet32x4

Prints one line per measurement and writes bench/results/<device>.json."""
import argparse
import json
import os
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import losses  # noqa: E402
import models  # noqa: E402
from datasets import augment  # noqa: E402
from datasets.memory import ImageSet, InMemoryLoader  # noqa: E402
from core.precision import make_grad_scaler  # noqa: E402
from engine.distill import Distiller, FrozenNet, probe_shapes  # noqa: E402


def timed(fn, repeat, device):
    fn()   # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeat


def bench_augmentation(device, batch=256, repeat=10):
    import torchvision.transforms as T
    from PIL import Image
    images = torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    on_device = images.to(device)

    def batched():
        offsets, flips = augment.draw_crop_flip(batch, 4, g)
        augment.normalize(augment.crop_flip(on_device, offsets, flips, 4), augment.CIFAR100_MEAN, augment.CIFAR100_STD)

    pil = [Image.fromarray(im.permute(1, 2, 0).numpy()) for im in images]
    tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize(augment.CIFAR100_MEAN, augment.CIFAR100_STD)])

    def per_image():
        torch.stack([tf(p) for p in pil]).to(device)

    return {"batched_images_per_s": batch / timed(batched, repeat, device),
            "per_image_pil_images_per_s": batch / timed(per_image, max(1, repeat // 5), device)}


def bench_methods(device, methods, student_arch, teacher_arch, batch, repeat, amp):
    n = batch * 4
    labels = torch.arange(n) % 100
    data = ImageSet("bench", torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8), labels, 100, (0.5,) * 3, (0.25,) * 3)
    out = {}
    for name in methods:
        student = models.create(student_arch, 100).to(device)
        teacher = FrozenNet(models.create(teacher_arch, 100).to(device))
        shape = (3, 32, 32)
        ctx = losses.Context(probe_shapes(student, shape, device, False), probe_shapes(teacher, shape, device, False),
                             probe_shapes(student, shape, device, True), probe_shapes(teacher, shape, device, True),
                             student_arch, teacher_arch, 100, n, labels)
        hp = {"nce_k": min(4096, n - 10)} if "nce_k" in {h.name for h in losses.method_class(name).declared_hparams()} else {}
        method = losses.build(name, ctx, hparams=hp).to(device)
        distiller = Distiller(student, method, teacher, amp=amp)
        opt = torch.optim.SGD(distiller.trainable_parameters(), lr=0.01, momentum=0.9)
        scaler = make_grad_scaler(device, amp)
        loader = InMemoryLoader(data, batch, True, device, views=method.views)
        batches = iter(loader)
        state = {"it": batches}

        def step():
            try:
                b = next(state["it"])
            except StopIteration:
                state["it"] = iter(loader)
                b = next(state["it"])
            terms, _ = distiller(b, 1)
            loss = sum(terms.values())
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()

        distiller.train()
        seconds = timed(step, repeat, device)
        out[name] = {"steps_per_s": 1 / seconds, "images_per_s": batch / seconds}
        if device.type == "cuda":
            out[name]["peak_memory_MiB"] = torch.cuda.max_memory_allocated() / 2 ** 20
            torch.cuda.reset_peak_memory_stats()
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--methods", default="kd,hint,crd,sskd")
    p.add_argument("--student", default="resnet8")
    p.add_argument("--teacher", default="resnet32")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--amp", default="off", choices=["off", "bf16", "fp16"])
    args = p.parse_args()
    device = torch.device(args.device)
    results = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
               "augmentation": bench_augmentation(device),
               "methods": bench_methods(device, args.methods.split(","), args.student, args.teacher, args.batch_size,
                                        args.repeat, args.amp),
               "config": vars(args)}
    for k, v in results["augmentation"].items():
        print(f"augmentation {k}: {v:,.0f}")
    for k, v in results["methods"].items():
        print(f"{k} ({args.teacher} -> {args.student}, batch {args.batch_size}): "
              + ", ".join(f"{m} {x:,.1f}" for m, x in v.items()))
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", f"{device.type}.json"), "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
