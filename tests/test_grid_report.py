"""The grid report on hand-written run folders: mean ± std over seeds and the difference to the
paper, a trained teacher more than 1 point off the paper flagged, a published teacher shown with
the top-1 its students measured, device-hours; the SimReg layout with 1-NN and linear; and the
warning train_student.py prints when it loads a CIFAR-100 teacher that is off the paper."""
import csv
import json
import os

import pytest
import torch

import models
import train_student
from conftest import make_table


def _summary(folder, **fields):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "summary.json"), "w") as f:
        json.dump(fields, f)


def _manifest(out, cells, report):
    os.makedirs(os.path.join(out, "grid"), exist_ok=True)
    with open(os.path.join(out, "grid", "manifest.json"), "w") as f:
        json.dump({"cells": cells, "report": report}, f)


def test_distillation_report(tmp_path, capsys):
    out = tmp_path / "out"
    cells = []

    def cell(group, row, seed, **summary):
        folder = str(out / group / f"{row}_seed{seed}")
        _summary(folder, **summary)
        cells.append({"name": f"{group}/{row}_seed{seed}", "folder": folder,
                      "labels": {"table": "distill", "group": group, "row": row, "seed": seed}})

    cell("teachers", "resnet56", 0, last={"top1": 71.0}, best={"top1": 71.5}, train_seconds=3600, processes=1,
         device="cuda")
    for seed, (last, best) in enumerate(((70.0, 70.5), (71.0, 71.7))):
        cell("resnet56_to_resnet20", "SSKD", seed, last={"top1": last}, best={"top1": best}, train_seconds=1800,
             processes=1, device="cuda", teacher_top1=71.5)
    cell("resnet32x4_to_resnet8x4", "KD", 0, last={"top1": 73.0}, best={"top1": 73.4}, train_seconds=900,
         processes=2, device="cuda", teacher_top1=79.5)   # a published teacher: no teacher cell
    _manifest(out, cells, {"kind": "distill", "paper": "same_architecture", "metric": "best",
                           "protocol": "SSKD table same_architecture; test"})
    md = make_table(["--grid", out], capsys)
    assert md == (out / "report.md").read_text() + "\nreport: " + ", ".join(
        str(out / f"report.{e}") for e in ("md", "csv", "png")) + "\n"
    lines = {tuple(c.strip() for c in line.split("|")[1:3]): line for line in md.splitlines() if line.startswith("|")}
    sskd = lines[("resnet56_to_resnet20", "SSKD")]
    assert "70.50 ± 0.71 (n=2)" in sskd and "71.10 ± 0.85 (n=2)" in sskd and "71.49" in sskd and "-0.39" in sskd
    teacher = lines[("teachers", "resnet56")]
    assert "73.44" in teacher and "-1.94" in teacher and "⚠ teacher more than 1 point off the paper" in teacher
    loaded = lines[("teachers", "resnet32x4 (loaded; top-1 measured by its students)")]
    assert "79.50 (n=1)" in loaded and "79.63" in loaded and "⚠" not in loaded
    assert "Cost: 2.500 GPU-hours for 4 finished training cells of 4" in md
    rows = {(r["pair"], r["row"]): r for r in csv.DictReader(open(out / "report.csv"))}
    assert rows[("teachers", "resnet56")]["teacher_off"] == "1" and rows[("teachers", "resnet32x4")]["teacher_off"] == "0"
    assert float(rows[("resnet32x4_to_resnet8x4", "KD")]["hours"]) == pytest.approx(0.5)


def test_a_cell_is_charged_its_whole_wall_time(tmp_path, capsys):
    """An SSKD cell whose init phase and start-up took as long again as its epochs is charged for
    both; the epochs-only figure stands beside it."""
    out = tmp_path / "out"
    folder = str(out / "resnet56_to_resnet20" / "SSKD_seed0")
    _summary(folder, last={"top1": 70.0}, train_seconds=1800, wall_seconds=3600, init_seconds=1500, processes=2,
             device="cuda")
    _manifest(out, [{"name": "resnet56_to_resnet20/SSKD_seed0", "folder": folder,
                     "labels": {"table": "distill", "group": "resnet56_to_resnet20", "row": "SSKD", "seed": 0}}],
              {"kind": "distill", "paper": "same_architecture", "metric": "last", "protocol": "test"})
    md = make_table(["--grid", out], capsys)
    assert "| GPU-hours | epochs only |" in md
    row = next(line for line in md.splitlines() if line.startswith("| resnet56_to_resnet20 | SSKD"))
    assert row.endswith("| 2.000 | 1.000 |"), row
    assert "Cost: 2.000 GPU-hours" in md and "the epochs alone: 1.000" in md
    rows = list(csv.DictReader(open(out / "report.csv")))
    assert float(rows[0]["hours"]) == 2.0 and float(rows[0]["epoch_hours"]) == 1.0


@pytest.mark.parametrize("text", ['{"last": {"top1": 70', '["not", "a", "summary"]'], ids=["truncated", "list"])
def test_a_damaged_cell_record_is_one_error_line(tmp_path, capsys, text):
    """make_table.py --grid names a cell's damaged summary.json in one line (exit 2) and writes no report."""
    out = tmp_path / "out"
    folder = out / "resnet56_to_resnet20" / "KD_seed0"
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(text)
    _manifest(out, [{"name": "resnet56_to_resnet20/KD_seed0", "folder": str(folder),
                     "labels": {"table": "distill", "group": "resnet56_to_resnet20", "row": "KD", "seed": 0}}],
              {"kind": "distill", "paper": "same_architecture", "metric": "last", "protocol": "test"})
    from conftest import import_script
    assert import_script("scripts/make_table.py").main(["--grid", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(folder / "summary.json") in err[0] and "damaged" in err[0], err
    assert not (out / "report.md").exists()


def test_simreg_report(tmp_path, capsys):
    """1-NN and linear beside the paper's; a row is charged its training cell and its k-NN and
    linear-probe cells, the table also the teacher-feature cache its rows share."""
    out = tmp_path / "out"
    folder = str(out / "simreg" / "simreg_moco_resnet18_seed0")
    gpu = {"device": "cuda", "processes": 1}
    _summary(folder, last={"epoch": 130}, train_seconds=7200, wall_seconds=7920, processes=4, device="cuda",
             knn={"top1": {"1": 55.0, "20": 58.0}, "wall_seconds": 360, **gpu},
             linear={"last": {"top1": 65.5}, "wall_seconds": 1800, **gpu})
    index = out / "teacher_feats" / "moco_imagenet_train.json"
    index.parent.mkdir(parents=True)
    index.write_text(json.dumps({"format": 1, "cost": {"wall_seconds": 900, "processes": 4, "device": "cuda"}}))
    labels = {"table": "simreg", "paper_row": 1, "row": "simreg_moco_resnet18", "student": "resnet18",
              "teacher": "moco_v2_800ep_pretrain.pth.tar", "seed": 0}
    _manifest(out, [{"name": "teacher_feats/moco_imagenet_train", "folder": str(index.parent),
                     "labels": {"table": "simreg", "kind": "teacher_feats", "index": str(index)}},
                    {"name": "simreg/simreg_moco_resnet18_seed0", "folder": folder, "labels": labels},
                    {"name": "simreg/simreg_moco_resnet18_seed0/knn", "folder": folder, "labels": {}}],
              {"kind": "simreg", "paper": "simreg", "protocol": "SimReg table; test"})
    md = make_table(["--grid", out], capsys)
    row = next(line for line in md.splitlines() if line.startswith("| simreg_moco_resnet18 "))
    assert "MoCo-v2 ResNet-50 → resnet18" in row
    # 7920 s x 4 + 360 s + 1800 s = 9.4 GPU-hours; the epochs alone 7200 s x 4 = 8
    assert "| 55.00 (n=1) | 54.80 | +0.20 | 65.50 (n=1) | 65.10 | +0.40 | 9.400 | 8.000 |" in row
    assert "Cost: 10.400 GPU-hours for 1 finished training cells of 1" in md   # + the cache, 900 s x 4
    assert "the teacher-feature caches, 1.000" in md
    assert float(next(csv.DictReader(open(out / "report.csv")))["hours"]) == pytest.approx(9.4)
    from PIL import Image
    assert Image.open(out / "report.png").size[1] == 400


@pytest.mark.slow
def test_loading_a_teacher_off_the_paper_warns(tmp_path, cifar_root):
    torch.manual_seed(0)
    path = tmp_path / "resnet56_vanilla" / "ckpt_epoch_240.pth"
    path.parent.mkdir()
    torch.save({"epoch": 240, "model": models.create("resnet56", 100).state_dict()}, path)   # untrained: ~1 %
    train_student.main(["--dataset", "cifar100", "--data-root", cifar_root, "--method", "kd", "--teacher", str(path),
                        "--student", "resnet8", "--epochs", "1", "--batch-size", "100", "--save-dir", str(tmp_path),
                        "--name", "s", "--no-progress", "--device", "cpu"])
    log = (tmp_path / "s" / "log.txt").read_text()
    assert "warning: teacher resnet56 has test top-1" in log and "below the SSKD paper's 73.44" in log
