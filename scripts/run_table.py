"""Run a whole table: expand it into cells (teachers before the students that need them), run
them with an executor, and continue where it stopped when run again.

    python scripts/run_table.py sskd --table same_architecture --out save/tables --gpus 0,1,2,3 --per-gpu 2
    python scripts/run_table.py grid my_grid.json --out save/mine --workers 2
    python scripts/run_table.py sskd --table same_architecture --out save/tables --status
    python scripts/run_table.py ... --dry-run

A cell's state is read from its run folder (summary.json: done; run.lock held: running; args.json
or a checkpoint: interrupted, continued with --resume), so running the same command again skips
finished cells, resumes interrupted ones and never starts a second process on a run folder. A
failed cell fails only the cells that need it. <out>/grid/ holds the manifest (what was launched,
where, with which code revision), one record and one log per cell."""
import argparse
import json
import os
import shlex
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from core.dataclass_flags import add_dataclass_args, dataclass_values  # noqa: E402
from core.errors import UserError  # noqa: E402
from core.validate import Parser, writable_folder  # noqa: E402
from grid import tables  # noqa: E402
from grid.cells import ROOT, in_order  # noqa: E402
from grid.local import LocalExecutor  # noqa: E402
from grid.state import DONE, Records, cell_state  # noqa: E402
from make_table import print_grid_report  # noqa: E402


# DistillationGrid fields an SSKD table fixes: its paper's data set; overrides are a grid file's
SSKD_FIXED = ("dataset", "overrides")


def parse_args(argv=None):
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="kind", required=True)
    sskd = sub.add_parser("sskd", help="an SSKD paper table (CIFAR-100)")
    sskd.add_argument("--table", choices=sorted(tables.SSKD_PAIRS), required=True)
    # the table's data set is the paper's; the pairs and rows default to the table's
    add_dataclass_args(sskd, tables.DistillationGrid, skip=SSKD_FIXED,
                       shown_defaults={"pairs": "the table's", "rows": "the SSKD paper's: " + " ".join(tables.SSKD_ROWS)})
    simreg = sub.add_parser("simreg", help="the SimReg paper table (ImageNet)")
    add_dataclass_args(simreg, tables.SimRegTable, renamed={"nproc": "--nproc-per-node"})
    user = sub.add_parser("grid", help="a grid written as JSON (the fields of grid.tables.DistillationGrid, or "
                                       '"kind": "simreg" and those of SimRegTable)')
    user.add_argument("file")
    for q in (sskd, simreg, user):
        q.add_argument("--out", required=True, help="where the cells' run folders go")
        q.add_argument("--executor", choices=("local", "slurm"), default="local")
        q.add_argument("--gpus", default=None, help="comma list of GPU ids for the local executor")
        q.add_argument("--per-gpu", type=int, default=1, help="cells sharing one GPU")
        q.add_argument("--workers", type=int, default=1, help="concurrent CPU cells when there are no --gpus")
        slurm = q.add_argument_group("slurm executor (submitit)")
        slurm.add_argument("--partition", default=None)
        slurm.add_argument("--time-min", type=int, default=24 * 60, help="time limit per cell (a cell that hits it "
                                                                             "checkpoints and is requeued)")
        slurm.add_argument("--gpus-per-cell", type=int, default=1, help="GPUs of a one-process cell (a torchrun "
                                                                         "cell gets one per process)")
        slurm.add_argument("--cpus-per-cell", type=int, default=8)
        slurm.add_argument("--mem-gb", type=int, default=None)
        slurm.add_argument("--account", default=None)
        slurm.add_argument("--qos", default=None)
        slurm.add_argument("--max-running", type=int, default=None,
                           help="at most this many cells of the grid run at once (array throttling)")
        q.add_argument("--status", action="store_true", help="print every cell's state and exit")
        q.add_argument("--dry-run", action="store_true", help="print the commands and exit")
        q.add_argument("--metric", choices=("best", "last"), default="best",
                       help="the epoch compared with the paper in the report (SSKD reports the best)")
    return p.parse_args(argv)


def check_rows(grid):
    """Every row of a distillation grid is a paper row or one of our methods."""
    if isinstance(grid, tables.SimRegTable):
        return
    import losses
    for row in grid.rows:
        if row not in tables.ROWS and row not in losses.METHODS:
            raise ValueError(f"unknown row '{row}' (rows: {' '.join(tables.ROWS)}, or a method: "
                             f"{' '.join(sorted(losses.METHODS))})")


def build_grid(args):
    if args.kind == "sskd":
        given = dataclass_values(args, tables.DistillationGrid)
        given.setdefault("pairs", tables.SSKD_PAIRS[args.table])
        given.setdefault("rows", list(tables.SSKD_ROWS))
        grid = tables.DistillationGrid(**given)
    elif args.kind == "simreg":
        grid = tables.SimRegTable(**dataclass_values(args, tables.SimRegTable))
    else:
        try:
            with open(args.file) as f:
                spec = json.load(f)
        except ValueError as e:
            raise ValueError(f"{args.file}: not JSON ({e})") from None
        if not isinstance(spec, dict):
            raise ValueError(f"{args.file}: a grid is a JSON object")
        grid = tables.from_file(spec)
    check_rows(grid)
    return grid


def revision():
    try:
        return subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def write_manifest(path, argv, cells, executor, spec):
    manifest = {"command": [sys.executable, *sys.argv] if argv is None else argv, "revision": revision(),
                "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "executor": executor,
                "report": spec,
                "cells": [{"name": c.name, "script": c.script, "command": c.shown_command(), "folder": c.folder,
                           "needs": c.needs, "nproc": c.nproc, "labels": c.labels} for c in cells]}
    runs = []
    if os.path.isfile(path):
        try:
            with open(path) as f:
                runs = json.load(f).get("runs", [])
        except ValueError:
            runs = []
    manifest["runs"] = runs + [{"started": manifest["started"], "revision": manifest["revision"],
                                "host": manifest["host"], "executor": executor}]
    with open(path + ".tmp", "w") as f:
        json.dump(manifest, f, indent=1)
    os.replace(path + ".tmp", path)


def report_spec(args, grid):
    """What the report needs to know of the grid (kept in the manifest, so that
    `make_table.py --grid OUT` can write it again): its kind, the paper table, metric, protocol."""
    simreg = isinstance(grid, tables.SimRegTable)
    if args.kind == "sskd":
        paper, what = args.table, f"SSKD table {args.table}"
    elif args.kind == "simreg":
        paper, what = "simreg", "SimReg table"
    else:
        paper, what = None, f"grid {args.file}"
    if simreg:
        cached = ", ".join(grid.cached_rows()) or "no row"
        text = (f"{what}; {grid.dataset}, {grid.epochs} epochs, batch {grid.batch_size} over "
                f"{grid.nproc * grid.nodes} processes, {grid.mlp_layers}-layer head; teacher features cached for "
                f"{cached}; seeds {', '.join(map(str, grid.seeds))}; metric: top-1 of 1-NN (k-NN {grid.ks}) and of the linear "
                f"probe (its last epoch)")
    else:
        archs = list(dict.fromkeys(p.split(":")[0] for p in grid.pairs))
        loaded = {a: path for a in archs if (path := tables.published_teacher(grid, a))}
        trained = [a for a in archs if a not in loaded]
        teachers = "; ".join(
            ([f"teachers {', '.join(loaded)} loaded from {grid.pretrained_teachers}"] if loaded else []) +
            ([f"teachers {', '.join(trained)} trained here (seed {grid.teacher_seed}, their {grid.teacher_ckpt} "
              f"checkpoint)"] if trained else []))
        epochs = f"{grid.epochs} epochs" if grid.epochs else (
            "the reference recipe (240 epochs, SGD lr 0.05 x0.1 at 150/180/210, batch 64; lr 0.01 for MobileNetV2 "
            "and ShuffleNet students)" if grid.dataset == "cifar100" else "the methods' recipes")
        text = (f"{what}; {grid.dataset}, {epochs}, seeds {', '.join(map(str, grid.seeds))}, baselines "
                f"{grid.baselines}; {teachers}; metric: top-1 of the {args.metric} epoch")
    return {"kind": "simreg" if simreg else "distill", "paper": paper, "metric": args.metric, "protocol": text}


def print_status(cells, records):
    counts = {}
    width = max(len(c.name) for c in cells)
    for c in cells:
        st = cell_state(c, records)
        counts[st.state] = counts.get(st.state, 0) + 1
        where = f"  log {st.log}" if st.log and st.state != DONE else ""
        print(f"{c.name:<{width}}  {st.state:<11} {st.detail}{where}".rstrip())
    print(", ".join(f"{n} {s}" for s, n in sorted(counts.items())))


def gpu_list(text):
    if not text:
        return None
    try:
        return [int(g) for g in text.split(",")]
    except ValueError:
        raise ValueError(f"--gpus '{text}': a comma list of GPU ids, e.g. 0,1,2,3") from None


def make_executor(args, records):
    if args.executor == "slurm":
        from grid.slurm import SlurmExecutor
        return SlurmExecutor(records, os.path.join(args.out, "grid", "submitit"), partition=args.partition,
                             time_min=args.time_min, gpus=args.gpus_per_cell, cpus=args.cpus_per_cell,
                             account=args.account, qos=args.qos, mem_gb=args.mem_gb, max_running=args.max_running)
    return LocalExecutor(records, gpus=gpu_list(args.gpus), per_gpu=args.per_gpu, workers=args.workers)


def main(argv=None):
    args = parse_args(argv)
    try:
        args.out = os.path.abspath(writable_folder(args.out, "--out"))   # the cells' folders, wherever a cell starts
        grid = build_grid(args)
        cells = in_order(tables.cells_of(grid, args.out))
        if args.executor == "local" and any(c.nodes > 1 for c in cells):
            raise ValueError("cells over several nodes (--nodes) need --executor slurm")
        gpu_list(args.gpus)
    except (ValueError, OSError, TypeError, UserError) as e:
        print(f"run_table.py: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        for c in cells:
            print(shlex.join(c.shown_command()))
        print(shlex.join([sys.executable, os.path.join(ROOT, "scripts", "make_table.py"), "--grid", args.out]))
        return 0
    records = Records(os.path.join(args.out, "grid"))
    if args.status:
        print_status(cells, records)
        return 0
    write_manifest(os.path.join(args.out, "grid", "manifest.json"), argv, cells, args.executor,
                   report_spec(args, grid))
    executor = make_executor(args, records)
    try:
        final = executor.run(cells)
    except KeyboardInterrupt as e:
        print(f"run_table.py: stopped ({e}); run the same command again to continue", file=sys.stderr)
        return 75
    failed = [n for n, s in final.items() if s != DONE]
    print_status(cells, records)
    print_grid_report(args.out)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
