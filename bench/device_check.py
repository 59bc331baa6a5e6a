"""The checks to run first on a GPU machine, in one command with a time budget: the speed targets,
then the CUDA-only paths on real runs, then the rest of the speed table.

    python bench/device_check.py --out DIR --budget-s 540

Sections, in this order (--sections picks some):
  speed_targets  bench/speed.py on the cells with targets (KD, SSKD and its head phase, SimReg with
                 cached features), eager float32 against bf16 + channels_last + compile
  decode         --decode gpu on CUDA (nvJPEG) against the same draws decoded on the CPU: mean
                 and largest per-image pixel difference
  knn            eval_knn.py of a digits teacher on CUDA against the CPU (same accuracies)
  ddp_nccl       train_student.py under torchrun (one process per GPU, NCCL), compiled
  digits_modes   KD students in eager float32, --compile (CUDA graphs), bf16 + channels_last +
                 compile and fp16 (GradScaler) + compile, CRD and SSKD in eager and bf16 +
                 channels_last + compile: each ends within 1.5 points of eager
  speed_rest     bench/speed.py on every other cell and mode

Each section runs in its own processes; a section that fails is recorded and the next one runs. A
section that does not fit in what is left of the budget is recorded as not run. Written to DIR:
device_check.json (every section's status, figures and failures), device_check.log (everything
the commands printed) and the benchmark's JSON files."""
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from core.jsonio import write_json  # noqa: E402
SECTIONS = ("speed_targets", "decode", "knn", "ddp_nccl", "digits_modes", "speed_rest")
DIGITS_STUDENT = ["--student", "resnet8", "--dataset", "digits", "--no-progress", "--save-every", "0"]
TEN_EPOCHS = ["--epochs", "10", "--lr-decay-epochs", "6,8"]
METHOD_FLAGS = {"kd": ["--method", "kd", *TEN_EPOCHS],
                "crd": ["--method", "crd", "--nce-k", "256", "--epochs", "20", "--lr-decay-epochs", "14,18"],
                "sskd": ["--method", "sskd", "--t-epochs", "2", *TEN_EPOCHS]}
MODE_FLAGS = {"eager": [], "compile": ["--compile"],
              "bf16+nhwc+compile": ["--amp", "bf16", "--channels-last", "--compile"],
              "fp16+compile": ["--amp", "fp16", "--compile"]}
RUNS = [("kd", m) for m in MODE_FLAGS] + [(m, mode) for m in ("crd", "sskd") for mode in ("eager", "bf16+nhwc+compile")]
TOLERANCE_POINTS = 1.5


class Budget:
    def __init__(self, seconds):
        self.deadline = time.monotonic() + seconds

    def left(self):
        return self.deadline - time.monotonic()


class Checker:
    """Runs commands with the budget's time left as their limit, appending their output to the log."""

    def __init__(self, out, device, budget):
        self.out, self.device, self.budget = out, device, budget
        self.log = open(os.path.join(out, "device_check.log"), "a")

    def run(self, name, argv, env=None):
        limit = self.budget.left()
        if limit < 10:
            raise TimeoutError(f"{name}: not started, the budget is spent")
        self.log.write(f"\n===== {name}: {' '.join(argv)}\n")
        self.log.flush()
        t0 = time.monotonic()
        try:
            proc = subprocess.run(argv, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT, timeout=limit,
                                  env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"{name}: stopped at the budget's end after {time.monotonic() - t0:.0f} s") from None
        seconds = time.monotonic() - t0
        self.log.write(f"===== {name}: rc {proc.returncode} in {seconds:.1f} s\n")
        self.log.flush()
        if proc.returncode != 0:
            raise RuntimeError(f"{name}: exit status {proc.returncode} (see device_check.log)")
        return seconds

    def python(self, name, *args, env=None):
        return self.run(name, [sys.executable, *args], env)


def speed(check, name, cells, modes):
    """bench/speed.py's figures; it writes them after each one, so <out>/<name>.json keeps what was
    measured when the budget stops it."""
    path = os.path.join(check.out, f"{name}.json")
    check.python(name, "bench/speed.py", "--device", check.device, "--cells", ",".join(cells),
                 "--modes", ",".join(modes), "--json", path)
    with open(path) as f:
        return json.load(f)


def speed_targets(check, work):
    figures = speed(check, "speed_targets", ["kd", "sskd", "sskd_head", "simreg_cached"],
                    ["eager", "bf16+nhwc+compile"])
    cells = figures["cells"]
    steps_per_epoch = 50000 // 64
    best = {cell: min(r["ms_per_step"] for r in by_mode.values()) for cell, by_mode in cells.items()}
    targets = {"kd_epoch_s": best["kd"] * steps_per_epoch / 1000,
               "sskd_recipe_min": (60 * best["sskd_head"] + 240 * best["sskd"]) * steps_per_epoch / 60000,
               "simreg_cached_img_per_s": max(r["images_per_s"] for r in cells["simreg_cached"].values())}
    met = {"kd_epoch_s": targets["kd_epoch_s"] < 3, "sskd_recipe_min": targets["sskd_recipe_min"] < 30,
           "simreg_cached_img_per_s": targets["simreg_cached_img_per_s"] > 5000}
    return {"device": figures["device"], "targets": targets, "met": met}


def run_summary(save_dir, name):
    with open(os.path.join(save_dir, name, "summary.json")) as f:
        return json.load(f)


def digits_teacher(check, work):
    """Trains (once) the digits teacher the tests use, on the device."""
    ckpt = os.path.join(work, "teachers", "t", "ckpt", "last.pth")
    if not os.path.isfile(ckpt):
        check.python("digits teacher", "train_teacher.py", "--dataset", "digits", "--arch", "resnet14",
                     "--epochs", "12", "--lr-decay-epochs", "8,10", "--save-dir", os.path.join(work, "teachers"),
                     "--name", "t", "--no-progress", "--save-every", "0", "--device", check.device)
    return ckpt


def digits_modes(check, work):
    teacher = digits_teacher(check, work)
    save = os.path.join(work, "students")
    top1, seconds = {}, {}
    for method, mode in RUNS:
        name = f"{method}-{mode}"
        seconds[name] = check.python(f"digits {name}", "train_student.py", *DIGITS_STUDENT, *METHOD_FLAGS[method],
                                     *MODE_FLAGS[mode], "--teacher", teacher, "--save-dir", save, "--name", name,
                                     "--device", check.device)
        top1[name] = run_summary(save, name)["last"]["top1"]
    gaps = {name: top1[name] - top1[f"{name.split('-')[0]}-eager"] for name in top1 if not name.endswith("-eager")}
    bad = {name: gap for name, gap in gaps.items() if abs(gap) > TOLERANCE_POINTS}
    if bad:
        raise AssertionError(f"more than {TOLERANCE_POINTS} points from eager float32: {bad} (top-1 {top1})")
    return {"top1": top1, "gap_points": gaps, "seconds": seconds}


def ddp_nccl(check, work):
    teacher = digits_teacher(check, work)
    save = os.path.join(work, "ddp")
    seconds = check.python("torchrun nccl", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
                           "train_student.py", *DIGITS_STUDENT, "--method", "kd", "--epochs", "2",
                           "--lr-decay-epochs", "1", "--compile", "--teacher", teacher, "--save-dir", save,
                           "--name", "ddp", "--device", check.device)
    with open(os.path.join(save, "ddp", "log.txt")) as f:
        log = f.read()
    return {"seconds": seconds, "top1": run_summary(save, "ddp")["last"]["top1"], "log_tail": log[-600:]}


def decode(check, work):
    """--decode gpu on the device against the same path on the CPU: the same draws, so the
    differences are nvJPEG's and the device's resize kernels' against libjpeg's and the CPU's."""
    script = f"""
import json, sys, torch
sys.path.insert(0, {os.path.join(ROOT, 'bench')!r})
sys.path.insert(0, {ROOT!r})
import datasets
from speed import write_jpeg_folder
root = {os.path.join(work, 'jpegs')!r}
write_jpeg_folder(root, 64)
batches = {{}}
for device in ("cpu", {check.device!r}):
    split = datasets.build("imagenet", root, "train", purpose="train", views="pair", batch_size=16, device=device,
                           generator=torch.Generator().manual_seed(0), workers=4, decode="gpu", aug="weak_strong",
                           single_aug=False)
    batches[device] = [(b["image"].float().cpu(), b["image_t"].float().cpu()) for b in split.loader]
std = torch.tensor(datasets.imagenet.IMAGENET_STD).view(1, 3, 1, 1) * 255
per_image = []
for (s0, t0), (s1, t1) in zip(batches["cpu"], batches[{check.device!r}]):
    for a, b in ((s0, s1), (t0, t1)):
        per_image += ((a - b).abs() * std).flatten(1).mean(1).tolist()
json.dump({{"images": len(per_image), "mean_levels": sum(per_image) / len(per_image),
           "max_image_mean_levels": max(per_image)}}, open(sys.argv[1], "w"))
"""
    result_path = os.path.join(work, "decode.json")
    check.python("decode cuda vs cpu", "-c", script, result_path)
    with open(result_path) as f:
        result = json.load(f)
    if result["mean_levels"] > 1.5 or result["max_image_mean_levels"] > 3:
        raise AssertionError(f"--decode gpu on {check.device} differs from the CPU decode by {result}")
    return result


def knn(check, work):
    teacher = digits_teacher(check, work)
    results = {}
    for device in ("cpu", check.device):
        save = os.path.join(work, f"knn-{device}")
        check.python(f"eval_knn {device}", "eval_knn.py", "--checkpoint", teacher, "--dataset", "digits",
                     "--save", save, "--device", device, "--overwrite", "--workers", "0")
        found = glob.glob(os.path.join(save, "summary*.json"))
        with open(found[0]) as f:
            results[device] = json.load(f)["knn"]
    gaps = {k: abs(results[check.device]["top1"][k] - results["cpu"]["top1"][k]) for k in results["cpu"]["top1"]}
    if max(gaps.values()) > 0.5:
        raise AssertionError(f"k-NN top-1 on {check.device} and on the CPU differ by {gaps} points")
    return {device: {"backend": r["backend"], "top1": r["top1"]} for device, r in results.items()}


def speed_rest(check, work):
    figures = speed(check, "speed_rest", ["teacher", "crd", "simreg_live", "linear", "knn", "decode", "augment",
                                          "crd_sampler"], ["eager", "compile", "bf16+nhwc+compile",
                                                           "fp16+nhwc+compile"])
    return {"device": figures["device"], "cells": sorted(figures["cells"])}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for device_check.json, the log and the benchmark's JSON")
    p.add_argument("--budget-s", type=float, default=540, help="stop starting work after this many seconds")
    p.add_argument("--device", default="cuda")
    p.add_argument("--sections", default=",".join(SECTIONS), help="comma list of: " + ", ".join(SECTIONS))
    args = p.parse_args(argv)
    chosen = [s for s in args.sections.split(",") if s]
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        raise SystemExit(f"device_check.py: unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    os.makedirs(args.out, exist_ok=True)
    check = Checker(args.out, args.device, Budget(args.budget_s))
    report = {"device": args.device, "budget_s": args.budget_s, "sections": {}}
    functions = {name: globals()[name] for name in SECTIONS}
    with tempfile.TemporaryDirectory() as work:
        for name in chosen:
            t0 = time.monotonic()
            try:
                entry = {"status": "passed", **functions[name](check, work)}
            except TimeoutError as e:
                entry = {"status": "not run" if "not started" in str(e) else "stopped", "why": str(e)}
            except (AssertionError, RuntimeError, OSError, ValueError, KeyError) as e:
                entry = {"status": "failed", "why": f"{type(e).__name__}: {e}"}
            entry["seconds"] = round(time.monotonic() - t0, 1)
            report["sections"][name] = entry
            print(f"{name:<14} {entry['status']:<8} {entry['seconds']:>7.1f} s  {entry.get('why', '')}", flush=True)
            write_json(os.path.join(args.out, "device_check.json"), report)
    return report


if __name__ == "__main__":
    main()
