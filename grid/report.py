"""The report of a grid, from its manifest and its cells' summary.json files: one row per
(pair, row) with our mean ± std over seeds (n) for the last and the best epoch, the published
number and the difference where the table is a paper's; the teachers with ours beside the paper's
(flagged when more than 1 point off); the protocol; hours per cell and per table. Written as
markdown, CSV and a PNG chart (ours vs paper per cell, error bars over seeds)."""
import csv
import json
import os
import re
import statistics

TEACHER_TOLERANCE = 1.0   # points: a teacher further than this from the paper's is flagged
CELL = re.compile(r"^(?P<group>.+)/(?P<row>[^/]+)_seed(?P<seed>\d+)$")


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def published(paper, teacher, student):
    """The paper's column for a pair: {'teacher_acc', 'student_acc', 'methods'} or None."""
    for col in (paper or {}).get("columns", []):
        if col["teacher"] == teacher and col["student"] == student:
            return col
    return None


def _stats(values):
    if not values:
        return None
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values)}


def collect(manifest, paper=None):
    """Rows of the report: dicts with group, row, last / best stats, paper, hours, seeds."""
    groups = {}
    for cell in manifest["cells"]:
        m = CELL.match(cell["name"])
        if not m:
            continue
        s = read_json(os.path.join(cell["folder"], "summary.json"))
        entry = groups.setdefault((m["group"], m["row"]), {"last": [], "best": [], "hours": 0.0, "seeds": [],
                                                            "arch": None, "folders": []})
        entry["folders"].append(cell["folder"])
        if not s or not s.get("last") or "top1" not in s["last"]:
            continue
        entry["last"].append(s["last"]["top1"])
        entry["best"].append((s.get("best") or s["last"])["top1"])
        entry["seeds"].append(int(m["seed"]))
        entry["hours"] += s.get("train_seconds", 0.0) * s.get("processes", 1) / 3600
        entry["arch"] = s.get("arch")
    rows = []
    for (group, row), e in groups.items():
        if group == "teachers":
            teacher, student, kind = e["arch"] or row, None, "teacher"
        else:
            teacher, student = group.split("_to_")
            kind = "student"
        col = published(paper, teacher, student) if student else next(
            (c for c in (paper or {}).get("columns", []) if c["teacher"] == (e["arch"] or row)), None)
        if kind == "teacher":
            ref = col["teacher_acc"] if col else None
        else:
            ref = (col["student_acc"] if row == "student" else col["methods"].get(row)) if col else None
        rows.append({"kind": kind, "group": group, "row": row, "last": _stats(e["last"]), "best": _stats(e["best"]),
                     "paper": ref, "hours": e["hours"], "cells": len(e["folders"])})
    return rows


def _fmt(stats, metric):
    s = stats[metric]
    if s is None:
        return "-"
    return f"{s['mean']:.2f} ± {s['std']:.2f} (n={s['n']})" if s["n"] > 1 else f"{s['mean']:.2f} (n=1)"


def _diff(stats, metric):
    s = stats[metric]
    return f"{s['mean'] - stats['paper']:+.2f}" if s is not None and stats["paper"] is not None else ""


def flagged(row, metric):
    s = row[metric]
    return (row["kind"] == "teacher" and s is not None and row["paper"] is not None
            and abs(s["mean"] - row["paper"]) > TEACHER_TOLERANCE)


def markdown(rows, protocol, metric):
    lines = [f"Protocol: {protocol}", "",
             "| pair | row | ours, last epoch | ours, best epoch | paper | ours − paper (" + metric + ") | hours |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        flag = " ⚠ teacher more than 1 point off the paper" if flagged(r, metric) else ""
        paper = f"{r['paper']:.2f}" if r["paper"] is not None else "-"
        lines.append(f"| {r['group']} | {r['row']} | {_fmt(r, 'last')} | {_fmt(r, 'best')} | {paper} | "
                     f"{_diff(r, metric)}{flag} | {r['hours']:.3f} |")
    total = sum(r["hours"] for r in rows)
    lines += ["", f"Total: {total:.3f} hours over {sum(r['cells'] for r in rows)} cells "
                  f"(wall time of the epochs x processes, from the cells' summary.json)."]
    return "\n".join(lines) + "\n"


def write_csv(rows, path):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["kind", "pair", "row", "last_mean", "last_std", "best_mean", "best_std", "n", "paper", "hours"])
        for r in rows:
            last, best = r["last"] or {}, r["best"] or {}
            w.writerow([r["kind"], r["group"], r["row"], last.get("mean"), last.get("std"), best.get("mean"),
                        best.get("std"), last.get("n", 0), r["paper"], round(r["hours"], 4)])


def write_png(rows, path, metric, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    shown = [r for r in rows if r[metric] is not None]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.5 * len(shown) + 2), 4.0), dpi=100)
    x = range(len(shown))
    ax.bar(x, [r[metric]["mean"] for r in shown], yerr=[r[metric]["std"] for r in shown], capsize=3,
           color="tab:blue", label=f"ours ({metric} epoch, mean ± std over seeds)")
    papers = [(i, r["paper"]) for i, r in enumerate(shown) if r["paper"] is not None]
    if papers:
        ax.scatter([i for i, _ in papers], [p for _, p in papers], color="tab:red", marker="D", zorder=3,
                   label="paper")
    ax.set_xticks(list(x))
    ax.set_xticklabels([f"{r['group']}\n{r['row']}" for r in shown], rotation=90, fontsize=7)
    ax.set_ylabel("top-1 (%)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_reports(manifest_path, out_prefix, paper=None, metric="best", protocol=""):
    """<out_prefix>.md, .csv and .png; returns the rows."""
    manifest = read_json(manifest_path)
    if manifest is None:
        raise ValueError(f"no grid manifest at {manifest_path}")
    rows = collect(manifest, paper)
    title = protocol.split(";")[0] if protocol else "grid"
    with open(out_prefix + ".md", "w") as f:
        f.write(markdown(rows, protocol, metric))
    write_csv(rows, out_prefix + ".csv")
    write_png(rows, out_prefix + ".png", metric, title)
    return rows
