"""Print a table of the runs under a folder from their summary.json files: one row per run
(teacher runs and student runs), with the last and best top-1; with --paper TABLE, the SSKD table
layout with the published number and the difference."""
import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAPER = os.path.join(os.path.dirname(ROOT), "shared", "data", "paper_tables.json")


def find_summaries(folder):
    for dirpath, _, files in os.walk(folder):
        if "summary.json" in files and "init_cache" not in dirpath:
            with open(os.path.join(dirpath, "summary.json")) as f:
                yield os.path.relpath(dirpath, folder), json.load(f)


def run_rows(folder):
    rows = []
    for name, s in sorted(find_summaries(folder)):
        if "last" not in s:
            continue
        role = s.get("method", "teacher")
        rows.append((name, s.get("arch", "?"), role, s["last"]["top1"], s["best"]["top1"]))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs", required=True, help="folder holding experiment folders")
    p.add_argument("--title", default="")
    args = p.parse_args(argv)
    rows = run_rows(args.runs)
    if not rows:
        print(f"no summary.json under {args.runs}", file=sys.stderr)
        return 1
    if args.title:
        print(args.title)
    width = max(len(r[0]) for r in rows)
    print(f"{'run':<{width}}  {'arch':<12} {'method':<10} {'top-1 last':>10} {'top-1 best':>10}")
    for name, arch, role, last, best in rows:
        print(f"{name:<{width}}  {arch:<12} {role:<10} {last:>10.2f} {best:>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
