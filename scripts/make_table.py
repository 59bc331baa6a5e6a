"""Print results from summary.json files.

Without --paper: one line per run found under --runs (used by run.sh).
With --simreg-row N: one SimReg run (--runs = its folder) beside row N of the SimReg table.
With --paper same_architecture|cross_architecture: the SSKD table layout written by the table
launchers (<runs>/<teacher>_to_<student>/<Row>_seed<k>/, <runs>/teachers/<arch>_seed<k>/), with our
mean over seeds, the published number and the difference.
With --grid OUT: the report of a grid run by scripts/run_table.py (OUT/report.md, .csv, .png: mean
± std over seeds, the paper's number and the difference for the last and the best epoch, teachers
flagged when more than 1 point off the paper, the protocol and the device-hours); prints the
markdown."""
import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from core import published  # noqa: E402
from core.cli import exit_on_user_error  # noqa: E402
from core.jsonio import read_json_object  # noqa: E402
from grid import report  # noqa: E402


def read_summary(folder):
    path = os.path.join(folder, "summary.json")
    if not os.path.isfile(path):
        return None
    return read_json_object(path)


def all_runs(root):
    for dirpath, _, files in sorted(os.walk(root)):
        if "summary.json" in files and "init_cache" not in dirpath:
            yield os.path.relpath(dirpath, root), read_summary(dirpath)


def _fmt(value):
    return f"{value:.2f}" if isinstance(value, (int, float)) else "-"


def print_runs(root, title):
    """One line per run: classification top-1 (last / best test epoch) and, where evaluated, the
    backbone's 1-NN and linear-probe top-1 (SimReg students)."""
    rows = []
    for name, s in all_runs(root):
        if not s.get("last"):
            continue
        knn = s.get("knn", {}).get("top1", {}).get("1")
        linear = (s.get("linear") or {}).get("last", {}).get("top1")
        rows.append((name, s.get("arch", "?"), s.get("method", "teacher"), s["last"].get("top1"),
                     (s.get("best") or {}).get("top1"), knn, linear))
    if not rows:
        print(f"no summary.json under {root}", file=sys.stderr)
        return 1
    if title:
        print(title)
    width = max(len(r[0]) for r in rows)
    print(f"{'run':<{width}}  {'arch':<10} {'method':<8} {'top-1 last':>10} {'top-1 best':>10} {'1-NN':>7} {'linear':>7}")
    for name, arch, method, last, best, knn, linear in rows:
        print(f"{name:<{width}}  {arch:<10} {method:<8} {_fmt(last):>10} {_fmt(best):>10} {_fmt(knn):>7} {_fmt(linear):>7}")
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
    spec = published.tables()["sskd_tables"][table]
    print(f"SSKD table '{table}' — {spec['metric']}, ours = {metric} epoch, mean over seeds "
          f"(columns: ours, paper, difference)")
    for col in spec["columns"]:
        t, s = col["teacher"], col["student"]
        pair_dir = os.path.join(root, f"{t}_to_{s}")
        print(f"\n{t} -> {s}")
        print(f"  {'teacher':<8} {cell(seed_values(os.path.join(root, 'teachers'), t, metric), col['teacher_acc'])}")
        print(f"  {'student':<8} {cell(seed_values(pair_dir, 'student', metric), col['student_acc'])}")
        for row, paper in col["methods"].items():
            print(f"  {row:<8} {cell(seed_values(pair_dir, row, metric), paper)}")
    return 0


def print_simreg_row(run_folder, row):
    """Our 1-NN and linear top-1 of one SimReg run beside the published row."""
    spec = published.tables()["simreg_table"]["rows"][row]
    s = read_summary(run_folder) or {}
    ours_nn = s.get("knn", {}).get("top1", {}).get("1")
    ours_lin = (s.get("linear") or {}).get("last", {}).get("top1")
    print(f"SimReg: {spec['teacher']} -> {spec['student']} (ImageNet top-1)")
    for label, ours, paper in (("1-NN", ours_nn, spec["nn1"]), ("linear", ours_lin, spec["linear"])):
        diff = f"{ours - paper:+.2f}" if isinstance(ours, (int, float)) else ""
        print(f"  {label:<7} ours {_fmt(ours):>6}  paper {paper:6.2f}  {diff}")
    return 0


def print_grid_report(out, metric=None):
    """Write <out>/report.md, .csv and .png from the grid's manifest and print the markdown."""
    paper_tables = published.tables()
    prefix = os.path.join(out, "report")
    try:
        text = report.write_reports(os.path.join(out, "grid", "manifest.json"), prefix, paper_tables, metric)
    except ValueError as e:
        print(f"make_table.py: {e}", file=sys.stderr)
        return 2
    print(text)
    print(f"report: {prefix}.md, {prefix}.csv, {prefix}.png")
    return 0


@exit_on_user_error
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", default=None, help="folder holding experiment folders")
    p.add_argument("--grid", default=None, help="the --out folder of scripts/run_table.py")
    p.add_argument("--title", default="")
    p.add_argument("--paper", choices=["same_architecture", "cross_architecture"], default=None)
    p.add_argument("--metric", choices=["best", "last"], default=None,
                   help="epoch compared with the paper (default: best; for --grid, the one it was run with)")
    p.add_argument("--simreg-row", type=int, default=None, help="row of the SimReg table (0-4) for --runs = one run")
    args = p.parse_args(argv)
    if (args.grid is None) == (args.runs is None):
        p.error("give --runs or --grid")
    if args.grid:
        return print_grid_report(args.grid, args.metric)
    args.metric = args.metric or "best"
    if args.simreg_row is not None:
        return print_simreg_row(args.runs, args.simreg_row)
    if args.paper:
        return print_paper_table(args.runs, args.paper, args.metric)
    return print_runs(args.runs, args.title)


if __name__ == "__main__":
    sys.exit(main())
