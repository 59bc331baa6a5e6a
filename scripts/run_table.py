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
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from grid import report, tables  # noqa: E402
from grid.cells import ROOT, in_order  # noqa: E402
from grid.local import LocalExecutor  # noqa: E402
from grid.state import DONE, Records, cell_state  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="kind", required=True)
    sskd = sub.add_parser("sskd", help="an SSKD paper table")
    sskd.add_argument("--table", choices=sorted(tables.SSKD_PAIRS), required=True)
    sskd.add_argument("--pairs", default=None, help="space-separated teacher:student pairs (default: the table's)")
    sskd.add_argument("--rows", default=" ".join(tables.ROWS), help="space-separated paper rows")
    sskd.add_argument("--seeds", default="0")
    sskd.add_argument("--data-root", default="./data")
    sskd.add_argument("--download", action="store_true")
    sskd.add_argument("--epochs", type=int, default=None)
    sskd.add_argument("--teacher-seed", type=int, default=0)
    sskd.add_argument("--teacher-ckpt", choices=("best", "last"), default="best")
    sskd.add_argument("--pretrained-teachers", default=None)
    sskd.add_argument("--baselines", choices=("plus_kd", "alone"), default="plus_kd")
    sskd.add_argument("--kd-weight", type=float, default=1.0)
    sskd.add_argument("--extra-args", default="", help="appended to every command")
    sskd.add_argument("--student-args", default="", help="appended to student commands")
    user = sub.add_parser("grid", help="a grid written as JSON (the fields of grid.tables.DistillationGrid)")
    user.add_argument("file")
    for q in (sskd, user):
        q.add_argument("--out", required=True, help="where the cells' run folders go")
        q.add_argument("--executor", choices=("local", "slurm"), default="local")
        q.add_argument("--gpus", default=None, help="comma list of GPU ids for the local executor")
        q.add_argument("--per-gpu", type=int, default=1, help="cells sharing one GPU")
        q.add_argument("--workers", type=int, default=1, help="concurrent CPU cells when there are no --gpus")
        slurm = q.add_argument_group("slurm executor (submitit)")
        slurm.add_argument("--partition", default=None)
        slurm.add_argument("--time-min", type=int, default=24 * 60, help="time limit per cell (a cell that hits it "
                                                                             "checkpoints and is requeued)")
        slurm.add_argument("--gpus-per-cell", type=int, default=1)
        slurm.add_argument("--cpus-per-cell", type=int, default=8)
        slurm.add_argument("--mem-gb", type=int, default=None)
        slurm.add_argument("--account", default=None)
        slurm.add_argument("--qos", default=None)
        q.add_argument("--status", action="store_true", help="print every cell's state and exit")
        q.add_argument("--dry-run", action="store_true", help="print the commands and exit")
        q.add_argument("--metric", choices=("best", "last"), default="best",
                       help="the epoch compared with the paper in the report (SSKD reports the best)")
    return p.parse_args(argv)


def build_grid(args):
    if args.kind == "sskd":
        pairs = args.pairs.split() if args.pairs else tables.SSKD_PAIRS[args.table]
        return tables.DistillationGrid(
            pairs=pairs, rows=args.rows.split(), seeds=[int(s) for s in args.seeds.split()], data_root=args.data_root,
            download=args.download, epochs=args.epochs, teacher_seed=args.teacher_seed, teacher_ckpt=args.teacher_ckpt,
            pretrained_teachers=args.pretrained_teachers, baselines=args.baselines, kd_weight=args.kd_weight,
            extra_args=args.extra_args.split(), student_args=args.student_args.split())
    with open(args.file) as f:
        return tables.from_file(json.load(f))


def revision():
    try:
        return subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def write_manifest(path, argv, cells, executor):
    manifest = {"command": [sys.executable, *sys.argv] if argv is None else argv, "revision": revision(),
                "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "executor": executor,
                "cells": [{"name": c.name, "command": c.command(), "folder": c.folder, "needs": c.needs}
                          for c in cells]}
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


def paper_table(args):
    if args.kind != "sskd":
        return None
    with open(os.path.join(ROOT, "scripts", "paper_tables.json")) as f:
        return json.load(f)["sskd_tables"][args.table]


def protocol(args, grid):
    what = f"SSKD table {args.table}" if args.kind == "sskd" else f"grid {args.file}"
    teachers = f"teachers loaded from {grid.pretrained_teachers}" if grid.pretrained_teachers else \
        f"teachers trained here (seed {grid.teacher_seed}, their {grid.teacher_ckpt} checkpoint)"
    epochs = f"{grid.epochs} epochs" if grid.epochs else "the methods' recipes"
    return (f"{what}; {grid.dataset}, {epochs}, seeds {', '.join(map(str, grid.seeds))}, baselines "
            f"{grid.baselines}; {teachers}; metric: top-1 of the {args.metric} epoch")


def write_report(args, grid):
    prefix = os.path.join(args.out, "report")
    report.write_reports(os.path.join(args.out, "grid", "manifest.json"), prefix, paper_table(args), args.metric,
                         protocol(args, grid))
    print(f"report: {prefix}.md, {prefix}.csv, {prefix}.png")


def print_status(cells, records):
    counts = {}
    width = max(len(c.name) for c in cells)
    for c in cells:
        st = cell_state(c, records)
        counts[st.state] = counts.get(st.state, 0) + 1
        where = f"  log {st.log}" if st.log and st.state != DONE else ""
        print(f"{c.name:<{width}}  {st.state:<11} {st.detail}{where}".rstrip())
    print(", ".join(f"{n} {s}" for s, n in sorted(counts.items())))


def main(argv=None):
    args = parse_args(argv)
    try:
        grid = build_grid(args)
        cells = in_order(tables.expand(grid, args.out))
    except (ValueError, OSError, TypeError) as e:
        print(f"run_table.py: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        for c in cells:
            print(" ".join(c.command()))
        return 0
    records = Records(os.path.join(args.out, "grid"))
    if args.status:
        print_status(cells, records)
        return 0
    write_manifest(os.path.join(args.out, "grid", "manifest.json"), argv, cells, args.executor)
    if args.executor == "slurm":
        from grid.slurm import SlurmExecutor
        executor = SlurmExecutor(records, os.path.join(args.out, "grid", "submitit"), args.partition, args.time_min,
                                 args.gpus_per_cell, args.cpus_per_cell, args.account, args.qos, args.mem_gb)
    else:
        gpus = [int(g) for g in args.gpus.split(",")] if args.gpus else None
        executor = LocalExecutor(records, gpus=gpus, per_gpu=args.per_gpu, workers=args.workers)
    try:
        final = executor.run(cells)
    except KeyboardInterrupt as e:
        print(f"run_table.py: stopped ({e}); run the same command again to continue", file=sys.stderr)
        return 75
    failed = [n for n, s in final.items() if s != DONE]
    print_status(cells, records)
    write_report(args, grid)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
