"""Tables declared as data and expanded into cells: a distillation grid (teacher -> student pairs
x rows x seeds, with flag overrides), of which the SSKD tables are two presets, and the SimReg
table (per row: teacher features cached, student trained, 1-NN / 20-NN, linear probe). Each
teacher is a cell (unless a published checkpoint is given) that its students need."""
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Union

from core.dataclass_flags import flag_field
from core.validate import non_negative_float, non_negative_int, positive_int

from .cells import Cell

# a paper row -> (our --method, its loss weights); None: the method's own standard weights
ROWS = {"student": ("ce", None), "KD": ("kd", None), "FitNet": ("hint", "plus_kd"), "AT": ("attention", "plus_kd"),
        "SP": ("similarity", "plus_kd"), "VID": ("vid", "plus_kd"), "RKD": ("rkd", "plus_kd"),
        "PKT": ("pkt", "plus_kd"), "AB": ("abound", "plus_kd"), "FT": ("factor", "plus_kd"),
        "CRD": ("crd", ["-r", "1", "-a", "1", "-b", "0.8"]), "SSKD": ("sskd", None),
        # the later baselines, each with its authors' CIFAR weights (the method's own)
        "DKD": ("dkd", None), "ReviewKD": ("reviewkd", None), "DIST": ("dist", None),
        "KD+LS": ("kd", ["--logit-stand"]), "DKD+LS": ("dkd", ["--logit-stand"])}
# the rows of the SSKD paper's tables (the SSKD runner's default)
SSKD_ROWS = ["student", "KD", "FitNet", "AT", "SP", "VID", "RKD", "PKT", "AB", "FT", "CRD", "SSKD"]

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
    pairs: List[str] = flag_field("space-separated teacher:student pairs")
    rows: List[str] = flag_field("space-separated rows: paper rows (" + " ".join(ROWS) + ") or any --method")
    seeds: List[int] = flag_field("space-separated student seeds", factory=lambda: [0], parse=non_negative_int)
    dataset: str = flag_field("the data set of every cell", "cifar100")
    data_root: str = flag_field("the data set's folder", "./data")
    download: bool = flag_field("download the data set (CIFAR) first", False)
    epochs: Optional[int] = flag_field("epochs of every cell (default: each method's recipe, 240 for CIFAR)", None,
                                       parse=positive_int)
    teacher_epochs: Optional[int] = flag_field("epochs of the teachers trained here (default: --epochs, else the "
                                               "recipe)", None, parse=positive_int)
    teacher_seed: int = flag_field("seed of the teachers trained here", 0, parse=non_negative_int)
    # SSKD used the best-test-epoch teacher; RepDistiller the last
    teacher_ckpt: str = flag_field("which checkpoint of a teacher trained here its students load", "best",
                                   choices=("best", "last"))
    pretrained_teachers: Optional[str] = flag_field(
        "folder of published teachers, <arch>_vanilla/ckpt_epoch_240.pth (scripts/fetch_teachers.sh)", None)
    baselines: str = flag_field("plus_kd: the feature baselines add KD (the SSKD tables); alone: CE + method "
                                "(RepDistiller's)", "plus_kd", choices=("plus_kd", "alone"))
    kd_weight: float = flag_field("KD's weight (alpha) beside a plus_kd baseline", 1.0, parse=non_negative_float)
    extra_args: List[str] = flag_field("appended to every command", factory=list)
    student_args: List[str] = flag_field("appended to student commands", factory=list)
    # row -> extra flags of its cells (a grid file's field: no flag)
    overrides: Dict[str, List[str]] = field(default_factory=dict)

    def check(self):
        for pair in self.pairs:
            if pair.count(":") != 1 or not all(pair.split(":")):
                raise ValueError(f"pair '{pair}' is not teacher:student (e.g. resnet56:resnet20)")
        if self.baselines not in ("plus_kd", "alone"):
            raise ValueError(f"baselines '{self.baselines}': choose plus_kd or alone")
        unknown = set(self.overrides) - set(self.rows)
        if unknown:
            raise ValueError(f"overrides for rows not in the grid: {', '.join(sorted(unknown))}")


def published_teacher(grid, arch):
    """RepDistiller's <arch>_vanilla/ckpt_epoch_240.pth, else SSKD's teacher_<arch>_seed<k>/ckpt/best.pth
    (scripts/fetch_teachers.py puts them there), else None: the teacher is trained."""
    if not grid.pretrained_teachers:
        return None
    for path in (os.path.join(grid.pretrained_teachers, f"{arch}_vanilla", "ckpt_epoch_240.pth"),
                 os.path.join(grid.pretrained_teachers, f"teacher_{arch}_seed{grid.teacher_seed}", "ckpt", "best.pth")):
        if os.path.isfile(path):
            return path
    return None


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
        published = published_teacher(grid, t)
        if published:
            teachers[t] = (published, [])
            continue
        name = f"{t}_seed{grid.teacher_seed}"
        folder = os.path.join(out, "teachers", name)
        epochs = grid.teacher_epochs or grid.epochs
        args = data + ["--arch", t, "--seed", str(grid.teacher_seed), "--save-dir", os.path.join(out, "teachers"),
                       "--name", name, "--no-progress"] + (["--epochs", str(epochs)] if epochs else []) + grid.extra_args
        cells.append(Cell(f"teachers/{name}", "train_teacher.py", args, folder,
                          labels={"table": "distill", "group": "teachers", "row": t, "seed": grid.teacher_seed}))
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
                                  needs=list(needs), labels={"table": "distill", "group": f"{t}_to_{s}", "row": row,
                                                             "seed": seed}))
    return cells


# the SimReg paper's rows: teacher file (as published), its format, the student, cached as the paper
SIMREG_ROWS = [
    {"teacher": "moco_v2_800ep_pretrain.pth.tar", "format": "moco", "student": "mobilenet_v2", "cached": False,
     "name": "simreg_moco_mobilenet"},
    {"teacher": "moco_v2_800ep_pretrain.pth.tar", "format": "moco", "student": "resnet18", "cached": False,
     "name": "simreg_moco_resnet18"},
    {"teacher": "simclr_r50x4.pth", "format": "simclr_x4_flat", "student": "resnet50", "cached": True,
     "name": "simreg_simclr_resnet50"},
    {"teacher": "byol_r50_converted.pth", "format": "byol", "student": "resnet18", "cached": True,
     "name": "simreg_byol_resnet18"},
    {"teacher": "swav_400ep_bs256_pretrain.pth.tar", "format": "swav", "student": "resnet18", "cached": True,
     "name": "simreg_swav_resnet18"},
]
ROW_FIELDS = {"teacher", "format", "student", "cached", "name"}


@dataclass
class SimRegTable:
    """rows: indices of SIMREG_ROWS (the paper's table) or rows written out as dicts with
    ROW_FIELDS (teacher: a path, or a file name in weights_dir). mlp_layers, epochs and batch_size
    None leave the method's own value (losses/simreg.py: its recipe and head; the batch is global,
    over `nproc` processes): a command carries only what was set. `cached` None keeps each row's own
    choice (the paper cached rows 2-4)."""
    rows: List[Union[int, dict]] = flag_field(f"space-separated rows of the table (0-{len(SIMREG_ROWS) - 1})",
                                              factory=lambda: list(range(len(SIMREG_ROWS))), parse=non_negative_int)
    seeds: List[int] = flag_field("space-separated student seeds", factory=lambda: [0], parse=non_negative_int)
    dataset: str = flag_field("the data set of every cell", "imagenet", choices=("imagenet", "imagenet100"))
    data_root: str = flag_field("ImageFolder with train/ and val/", "./data/imagenet")
    weights_dir: str = flag_field("the teachers' published files", "./weights")
    cached: Optional[bool] = flag_field("1: every row from cached teacher features, 0: none (default: as the paper, "
                                        "rows 2-4)", None)
    mlp_layers: Optional[int] = flag_field("layers of the prediction head (default: the method's, train_student.py "
                                           "--help)", None, parse=positive_int)
    epochs: Optional[int] = flag_field("training epochs (default: the method's recipe)", None, parse=positive_int)
    batch_size: Optional[int] = flag_field("global batch over the processes of a cell (default: the method's recipe)",
                                           None, parse=positive_int)
    nproc: int = flag_field("processes (GPUs) per node of a caching / training cell", 4, parse=positive_int)
    nodes: int = flag_field("nodes per caching / training cell (--executor slurm)", 1, parse=positive_int)
    ks: str = flag_field("the k of the k-NN evaluations", "1,20")
    extra_args: List[str] = flag_field("appended to the caching and training commands", factory=list)
    train_args: List[str] = flag_field("appended to the training commands", factory=list)
    linear_args: List[str] = flag_field("appended to eval_linear.py, e.g. --use-cache", factory=list)
    knn_args: List[str] = flag_field("appended to eval_knn.py", factory=list)

    def set_flags(self):
        """The training flags of the fields a user set (None: the method's own value)."""
        values = (("--mlp-layers", self.mlp_layers), ("--epochs", self.epochs), ("--batch-size", self.batch_size))
        return [x for flag, value in values if value is not None for x in (flag, str(value))]

    def cached_rows(self):
        """The names of the rows trained from cached teacher features."""
        return [row["name"] for _, row in self.resolved_rows() if (row["cached"] if self.cached is None
                                                                    else self.cached)]

    def resolved_rows(self):
        """[(paper row index or None, row dict)]"""
        out = []
        for r in self.rows:
            if isinstance(r, bool) or not isinstance(r, (int, dict)):
                raise ValueError(f"SimReg row {r!r}: give a row of the paper (0-{len(SIMREG_ROWS) - 1}) or a dict "
                                 f"with {', '.join(sorted(ROW_FIELDS))}")
            if isinstance(r, int):
                if not 0 <= r < len(SIMREG_ROWS):
                    raise ValueError(f"no row {r} in the SimReg table (rows are 0-{len(SIMREG_ROWS) - 1})")
                out.append((r, dict(SIMREG_ROWS[r])))
            else:
                if set(r) != ROW_FIELDS:
                    raise ValueError(f"SimReg row {r}: needs exactly the fields {', '.join(sorted(ROW_FIELDS))}")
                out.append((None, dict(r)))
        if len({row["name"] for _, row in out}) != len(out):
            raise ValueError("two SimReg rows have the same name")
        if self.nproc < 1 or self.nodes < 1:
            raise ValueError(f"nproc {self.nproc}, nodes {self.nodes}: at least 1 process on 1 node per cell")
        return out


def expand_simreg(table, out):
    """The cells of the SimReg table under `out`: teacher_feats/<format>_<dataset>_train (cached rows),
    simreg/<name>_seed<k> (training), then .../knn and .../linear (evaluations, one after the other:
    both write the run's summary.json)."""
    data = ["--dataset", table.dataset, "--data-root", table.data_root]
    cells, caches = [], {}
    for paper_row, row in table.resolved_rows():
        teacher = row["teacher"] if os.path.isabs(row["teacher"]) or os.path.dirname(row["teacher"]) \
            else os.path.join(table.weights_dir, row["teacher"])
        cached = row["cached"] if table.cached is None else table.cached
        source, needs = ["--teacher", teacher, "--teacher-format", row["format"]], []
        if cached:
            prefix = os.path.join(out, "teacher_feats", f"{row['format']}_{table.dataset}_train")
            name = f"teacher_feats/{os.path.basename(prefix)}"
            if name not in caches:
                args = ["--teacher", teacher, "--teacher-format", row["format"], *data, "--split", "train",
                        "--out", prefix, "--no-progress", *table.extra_args]
                # the report charges a cache (shared by the rows of its teacher) to the table, from its index
                caches[name] = Cell(name, "cache_features.py", args, os.path.dirname(prefix), nproc=table.nproc,
                                    nodes=table.nodes, resumable=False, done_file=prefix + ".json",
                                    labels={"table": "simreg", "kind": "teacher_feats", "index": prefix + ".json"})
                cells.append(caches[name])
            source, needs = ["--teacher-feats", prefix], [name]
        for seed in table.seeds:
            run = f"{row['name']}_seed{seed}"
            folder = os.path.join(out, "simreg", run)
            labels = {"table": "simreg", "paper_row": paper_row, "row": row["name"], "student": row["student"],
                      "teacher": os.path.basename(teacher), "seed": seed}
            train = Cell(f"simreg/{run}", "train_student.py",
                         ["--method", "simreg", *data, *source, "--student", row["student"], *table.set_flags(),
                          "--seed", str(seed), "--save-dir", os.path.join(out, "simreg"), "--name", run,
                          "--no-progress", *table.extra_args, *table.train_args],
                         folder, needs=list(needs), nproc=table.nproc, nodes=table.nodes, labels=labels)
            ckpt = os.path.join(folder, "ckpt", "last.pth")
            knn = Cell(f"simreg/{run}/knn", "eval_knn.py",
                       ["--checkpoint", ckpt, *data, "-k", table.ks, *table.knn_args], folder, needs=[train.name],
                       resumable=False, done_key="knn")
            linear = Cell(f"simreg/{run}/linear", "eval_linear.py",
                          ["--checkpoint", ckpt, *data, "--eval-every", "40", "--seed", str(seed), "--no-progress",
                           *table.linear_args], folder, needs=[knn.name], resumable=False, done_key="linear")
            cells += [train, knn, linear]
    return cells


def from_file(spec):
    """A user-written grid: a JSON object with DistillationGrid's fields, or with "kind": "simreg"
    and SimRegTable's."""
    spec = dict(spec)
    kind = spec.pop("kind", "distill")
    if kind not in ("distill", "simreg"):
        raise ValueError(f"grid kind '{kind}': choose distill or simreg")
    cls = SimRegTable if kind == "simreg" else DistillationGrid
    known = set(cls.__dataclass_fields__)
    unknown = set(spec) - known
    if unknown:
        raise ValueError(f"unknown grid field(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
    return cls(**spec)


def cells_of(table, out):
    """The cells of either kind of table."""
    return expand_simreg(table, out) if isinstance(table, SimRegTable) else expand(table, out)
