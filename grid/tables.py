"""Tables declared as data and expanded into cells: a distillation grid (teacher -> student pairs
x rows x seeds, with flag overrides), of which the SSKD tables are two presets. Each teacher is a
cell (unless a published checkpoint is given) that its students need."""
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from .cells import Cell

# a paper row -> (our --method, its loss weights); None: the method's own standard weights
ROWS = {"student": ("ce", None), "KD": ("kd", None), "FitNet": ("hint", "plus_kd"), "AT": ("attention", "plus_kd"),
        "SP": ("similarity", "plus_kd"), "VID": ("vid", "plus_kd"), "RKD": ("rkd", "plus_kd"),
        "PKT": ("pkt", "plus_kd"), "AB": ("abound", "plus_kd"), "FT": ("factor", "plus_kd"),
        "CRD": ("crd", ["-r", "1", "-a", "1", "-b", "0.8"]), "SSKD": ("sskd", None)}

SSKD_PAIRS = {
    "same_architecture": ["wrn_40_2:wrn_16_2", "wrn_40_2:wrn_40_1", "resnet56:resnet20", "resnet32x4:resnet8x4",
                          "vgg13:vgg8"],
    "cross_architecture": ["vgg13:MobileNetV2", "ResNet50:MobileNetV2", "ResNet50:vgg8", "resnet32x4:ShuffleV1",
                           "resnet32x4:ShuffleV2", "wrn_40_2:ShuffleV1"],
}


@dataclass
class DistillationGrid:
    """pairs 'teacher:student'; rows: paper rows (ROWS) or any --method name; seeds of the students.
    `baselines` 'plus_kd' adds KD (alpha = kd_weight) to the feature baselines, as the SSKD tables;
    'alone' trains them with CE + method only (RepDistiller's tables)."""
    pairs: List[str]
    rows: List[str]
    seeds: List[int] = field(default_factory=lambda: [0])
    dataset: str = "cifar100"
    data_root: str = "./data"
    download: bool = False
    epochs: Optional[int] = None
    teacher_epochs: Optional[int] = None
    teacher_seed: int = 0
    teacher_ckpt: str = "best"            # SSKD used the best-test-epoch teacher; RepDistiller the last
    pretrained_teachers: Optional[str] = None   # RepDistiller's <arch>_vanilla/ckpt_epoch_240.pth files
    baselines: str = "plus_kd"
    kd_weight: float = 1.0
    extra_args: List[str] = field(default_factory=list)     # every command
    student_args: List[str] = field(default_factory=list)   # student commands
    overrides: Dict[str, List[str]] = field(default_factory=dict)   # row -> extra flags of its cells

    def check(self):
        for pair in self.pairs:
            if pair.count(":") != 1 or not all(pair.split(":")):
                raise ValueError(f"pair '{pair}' is not teacher:student (e.g. resnet56:resnet20)")
        if self.baselines not in ("plus_kd", "alone"):
            raise ValueError(f"baselines '{self.baselines}': choose plus_kd or alone")
        unknown = set(self.overrides) - set(self.rows)
        if unknown:
            raise ValueError(f"overrides for rows not in the grid: {', '.join(sorted(unknown))}")


def _published_teacher(grid, arch):
    if not grid.pretrained_teachers:
        return None
    path = os.path.join(grid.pretrained_teachers, f"{arch}_vanilla", "ckpt_epoch_240.pth")
    return path if os.path.isfile(path) else None


def _row_method(grid, row):
    method, weights = ROWS.get(row, (row, None))
    if weights == "plus_kd":
        weights = ["-r", "1", "-a", f"{grid.kd_weight:g}"] if grid.baselines == "plus_kd" else ["-r", "1", "-a", "0"]
    return method, list(weights or [])


def expand(grid, out):
    """The cells of `grid`, writing under `out`: teachers/<arch>_seed<k>, <t>_to_<s>/<row>_seed<k>."""
    grid.check()
    data = ["--dataset", grid.dataset, "--data-root", grid.data_root] + (["--download"] if grid.download else [])
    cells, teachers = [], {}
    for pair in grid.pairs:
        t = pair.split(":")[0]
        if t in teachers:
            continue
        published = _published_teacher(grid, t)
        if published:
            teachers[t] = (published, [])
            continue
        name = f"{t}_seed{grid.teacher_seed}"
        folder = os.path.join(out, "teachers", name)
        epochs = grid.teacher_epochs or grid.epochs
        args = data + ["--arch", t, "--seed", str(grid.teacher_seed), "--save-dir", os.path.join(out, "teachers"),
                       "--name", name, "--no-progress"] + (["--epochs", str(epochs)] if epochs else []) + grid.extra_args
        cells.append(Cell(f"teachers/{name}", "train_teacher.py", args, folder))
        teachers[t] = (os.path.join(folder, "ckpt", f"{grid.teacher_ckpt}.pth"), [f"teachers/{name}"])
    for pair in grid.pairs:
        t, s = pair.split(":")
        ckpt, needs = teachers[t]
        for row in grid.rows:
            method, weights = _row_method(grid, row)
            for seed in grid.seeds:
                save_dir = os.path.join(out, f"{t}_to_{s}")
                name = f"{row}_seed{seed}"
                args = (data + ["--method", method, "--teacher", ckpt, "--student", s, *weights, "--seed", str(seed),
                                "--save-dir", save_dir, "--name", name, "--init-cache", os.path.join(out, "init_cache"),
                                "--no-progress"]
                        + (["--epochs", str(grid.epochs)] if grid.epochs else [])
                        + grid.extra_args + grid.student_args + grid.overrides.get(row, []))
                cells.append(Cell(f"{t}_to_{s}/{name}", "train_student.py", args, os.path.join(save_dir, name),
                                  needs=list(needs)))
    return cells


def from_file(spec):
    """A user-written grid (a JSON object with DistillationGrid's fields)."""
    known = set(DistillationGrid.__dataclass_fields__)
    unknown = set(spec) - known
    if unknown:
        raise ValueError(f"unknown grid field(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
    return DistillationGrid(**spec)
