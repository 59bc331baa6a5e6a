"""Print results from summary.json files.

Without --paper: one line per run found under --runs (used by run.sh).
With --paper same_architecture|cross_architecture: the SSKD table layout written by the table
launchers (<runs>/<teacher>_to_<student>/<Row>_seed<k>/, <runs>/teachers/<arch>_seed<k>/), with our
mean over seeds, the published number and the difference."""
import argparse
import json
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PAPER_TABLES = os.path.join(HERE, "paper_tables.json")


def read_summary(folder):
    path = os.path.join(folder, "summary.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def all_runs(root):
    for dirpath, _, files in sorted(os.walk(root)):
        if "summary.json" in files and "init_cache" not in dirpath:
            yield os.path.relpath(dirpath, root), read_summary(dirpath)


def print_runs(root, title):
    rows = [(name, s.get("arch", "?"), s.get("method", "teacher"), s["last"]["top1"], s["best"]["top1"])
            for name, s in all_runs(root) if s.get("last")]
    if not rows:
        print(f"no summary.json under {root}", file=sys.stderr)
        return 1
    if title:
        print(title)
    width = max(len(r[0]) for r in rows)
    print(f"{'run':<{width}}  {'arch':<12} {'method':<10} {'top-1 last':>10} {'top-1 best':>10}")
    for name, arch, method, last, best in rows:
        print(f"{name:<{width}}  {arch:<12} {method:<10} {last:>10.2f} {best:>10.2f}")
    return 0


def seed_values(folder, prefix, metric):
    """`metric` top-1 of every <prefix>_seed<k> run in `folder`."""
    values = []
    if os.path.isdir(folder):
        for name in sorted(os.listdir(folder)):
            if name.startswith(prefix + "_seed"):
                s = read_summary(os.path.join(folder, name))
                if s and s.get(metric):
                    values.append(s[metric]["top1"])
    return values


def cell(values, published):
    if not values:
        return f"{'-':>13} {published:>6.2f} {'':>6}"
    mean = statistics.mean(values)
    spread = f"±{statistics.stdev(values):.2f}" if len(values) > 1 else ""
    return f"{mean:>7.2f}{spread:<6} {published:>6.2f} {mean - published:>+6.2f}"


def print_paper_table(root, table, metric):
    with open(PAPER_TABLES) as f:
        spec = json.load(f)["sskd_tables"][table]
    print(f"SSKD table '{table}' — {spec['metric']}, ours = {metric} epoch, mean over seeds "
          f"(columns: ours, paper, difference)")
    for col in spec["columns"]:
        t, s = col["teacher"], col["student"]
        pair_dir = os.path.join(root, f"{t}_to_{s}")
        print(f"\n{t} -> {s}")
        print(f"  {'teacher':<8} {cell(seed_values(os.path.join(root, 'teachers'), t, metric), col['teacher_acc'])}")
        print(f"  {'student':<8} {cell(seed_values(pair_dir, 'student', metric), col['student_acc'])}")
        for row, published in col["methods"].items():
            print(f"  {row:<8} {cell(seed_values(pair_dir, row, metric), published)}")
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", required=True, help="folder holding experiment folders")
    p.add_argument("--title", default="")
    p.add_argument("--paper", choices=["same_architecture", "cross_architecture"], default=None)
    p.add_argument("--metric", choices=["best", "last"], default="best")
    args = p.parse_args(argv)
    if args.paper:
        return print_paper_table(args.runs, args.paper, args.metric)
    return print_runs(args.runs, args.title)


if __name__ == "__main__":
    sys.exit(main())
