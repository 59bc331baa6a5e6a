"""The report of a grid, from its manifest and its cells' summary.json files, written as markdown,
CSV and a PNG chart (ours vs paper per cell, error bars over seeds).

A distillation grid: one row per (pair, row) with our mean ± std over seeds (n) for the last and
the best epoch, the published number and the difference where the table is a paper's; the
teachers with ours beside the paper's (flagged when more than 1 point off). The SimReg table: one
row per table row with 1-NN and linear top-1 beside the paper's. Both: the protocol line, and
device-hours per cell and for the table: each cell's whole wall time (process start to summary,
over its resumes, init phases included) × processes, and beside it the epochs' share alone."""
import csv
import os
import statistics

from core.jsonio import RecordError, read_json_object
from core.published import teacher_column, teacher_is_off


def read_json(path):
    """A record as a dict; None where there is none yet (a cell not run); a damaged one is a
    RecordError naming it (make_table.py prints it as one line)."""
    if not os.path.isfile(path):
        return None
    try:
        return read_json_object(path)
    except RecordError as e:
        raise RecordError(f"{e} (delete it and run the table again to recompute that cell)") from None


def _stats(values):
    if not values:
        return None
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values)}


def _hours(summary, epochs_only=False):
    """The cell's device-hours: its whole wall time (or its epochs' alone; a summary from before the
    whole wall time was recorded: its epochs') × processes."""
    seconds = summary.get("train_seconds", 0.0)
    if not epochs_only:
        seconds = summary.get("wall_seconds", seconds)
    return seconds * summary.get("processes", 1) / 3600


def _device(summaries):
    kinds = {s.get("device") for s in summaries if s.get("device")}
    return "GPU-hours" if kinds == {"cuda"} else ("CPU-hours" if kinds == {"cpu"} else "device-hours")


# --- distillation grids -------------------------------------------------------------------------

def collect_distill(manifest, paper=None):
    """Rows: dicts with kind (teacher / student), group, row, last / best stats, paper, hours, cells."""
    groups, summaries, loaded = {}, [], {}
    for cell in manifest["cells"]:
        labels = cell.get("labels") or {}
        if labels.get("table") != "distill":
            continue
        entry = groups.setdefault((labels["group"], labels["row"]), {"last": [], "best": [], "hours": 0.0,
                                                                      "epoch_hours": 0.0, "cells": 0})
        entry["cells"] += 1
        s = read_json(os.path.join(cell["folder"], "summary.json"))
        if not s or not s.get("last") or "top1" not in s["last"]:
            continue
        if labels["group"] != "teachers" and s.get("teacher_top1") is not None:
            loaded.setdefault(labels["group"].split("_to_")[0], s["teacher_top1"])
        summaries.append(s)
        entry["last"].append(s["last"]["top1"])
        entry["best"].append((s.get("best") or s["last"])["top1"])
        entry["hours"] += _hours(s)
        entry["epoch_hours"] += _hours(s, epochs_only=True)
    trained = {row for group, row in groups if group == "teachers"}
    for arch, top1 in loaded.items():   # a published teacher: its top-1 as measured when a student loaded it
        if arch not in trained:
            groups[("teachers", arch)] = {"last": [top1], "best": [top1], "hours": 0.0, "epoch_hours": 0.0,
                                          "cells": 0, "loaded": True}
    rows = []
    for (group, row), e in groups.items():
        if group == "teachers":
            col, kind = teacher_column(paper, row), "teacher"
            ref = col["teacher_acc"] if col else None
        else:
            teacher, student = group.split("_to_")
            kind = "student"
            col = next((c for c in (paper or {}).get("columns", [])
                        if c["teacher"] == teacher and c["student"] == student), None)
            ref = (col["student_acc"] if row == "student" else col["methods"].get(row)) if col else None
        rows.append({"kind": kind, "group": group, "row": row, "last": _stats(e["last"]), "best": _stats(e["best"]),
                     "paper": ref, "hours": e["hours"], "epoch_hours": e["epoch_hours"], "cells": e["cells"],
                     "done": 0 if e.get("loaded") else len(e["last"]), "loaded": bool(e.get("loaded"))})
    rows.sort(key=lambda r: r["kind"] != "teacher")   # the teachers first, as the paper's first row
    return rows, _device(summaries)


def _fmt(s):
    if s is None:
        return "-"
    return f"{s['mean']:.2f} ± {s['std']:.2f} (n={s['n']})" if s["n"] > 1 else f"{s['mean']:.2f} (n=1)"


def _diff(s, paper):
    return f"{s['mean'] - paper:+.2f}" if s is not None and paper is not None else ""


def _paper(value):
    return f"{value:.2f}" if value is not None else "-"


def flagged(row, metric):
    s = row[metric]
    return row["kind"] == "teacher" and s is not None and teacher_is_off(s["mean"], row["paper"])


def _footer(rows, unit, caching=None):
    """The cost line; `caching`: the SimReg table's feature caches (shared by rows, in the total)."""
    total = sum(r["hours"] for r in rows) + (caching or 0.0)
    done = sum(r["done"] for r in rows)
    per_cell = total / done if done else 0.0
    epochs = sum(r.get("epoch_hours", 0.0) for r in rows)
    evaluations = "" if caching is None else (f"; a row's figure includes its k-NN and linear-probe cells, and the "
                                              f"total the teacher-feature caches, {caching:.3f}")
    return ["", f"Cost: {total:.3f} {unit} for {done} finished training cells of {sum(r['cells'] for r in rows)} "
                f"({per_cell:.3f} per cell; each cell's whole wall time, from its launch to its summary with its "
                f"init phase, × processes, from the cells' records{evaluations}; the epochs alone: "
                f"{epochs:.3f})."]


def markdown_distill(rows, protocol, metric, unit):
    lines = [f"Protocol: {protocol}", "",
             f"| pair | row | ours, last epoch | ours, best epoch | paper | ours − paper ({metric}) | {unit} | "
             f"epochs only |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        flag = " ⚠ teacher more than 1 point off the paper" if flagged(r, metric) else ""
        row = f"{r['row']} (loaded; top-1 measured by its students)" if r.get("loaded") else r["row"]
        lines.append(f"| {r['group']} | {row} | {_fmt(r['last'])} | {_fmt(r['best'])} | {_paper(r['paper'])} | "
                     f"{_diff(r[metric], r['paper'])}{flag} | {r['hours']:.3f} | {r['epoch_hours']:.3f} |")
    return "\n".join(lines + _footer(rows, unit)) + "\n"


def csv_distill(rows, path):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["kind", "pair", "row", "last_mean", "last_std", "best_mean", "best_std", "n", "paper", "hours",
                    "epoch_hours", "teacher_off"])
        for r in rows:
            last, best = r["last"] or {}, r["best"] or {}
            w.writerow([r["kind"], r["group"], r["row"], last.get("mean"), last.get("std"), best.get("mean"),
                        best.get("std"), last.get("n", 0), r["paper"], round(r["hours"], 4),
                        round(r["epoch_hours"], 4), int(flagged(r, "best") or flagged(r, "last"))])


# --- the SimReg table ---------------------------------------------------------------------------

def collect_simreg(manifest, paper=None):
    """(rows, unit, caching hours). Rows: dicts with row, teacher, student, nn1 / linear stats, the
    paper's, hours (training, k-NN and linear cells), epoch_hours, cells."""
    groups, summaries, caching = {}, [], 0.0
    for cell in manifest["cells"]:
        labels = cell.get("labels") or {}
        if labels.get("table") != "simreg":
            continue
        if labels.get("kind") == "teacher_feats":   # a cache shared by rows: charged to the table
            index = read_json(labels["index"])
            if index and isinstance(index.get("cost"), dict):
                summaries.append(index["cost"])
                caching += _hours(index["cost"])
            continue
        e = groups.setdefault(labels["row"], {"labels": labels, "nn1": [], "linear": [], "hours": 0.0,
                                              "epoch_hours": 0.0, "cells": 0, "done": 0})
        e["cells"] += 1
        s = read_json(os.path.join(cell["folder"], "summary.json"))
        if not s:
            continue
        summaries.append(s)
        if s.get("last"):
            e["done"] += 1
            # the training cell and its k-NN and linear-probe cells (their results carry their own cost)
            e["hours"] += _hours(s) + sum(_hours(s[tool]) for tool in ("knn", "linear")
                                          if isinstance(s.get(tool), dict))
            e["epoch_hours"] += _hours(s, epochs_only=True)
        nn1 = ((s.get("knn") or {}).get("top1") or {}).get("1")
        linear = ((s.get("linear") or {}).get("last") or {}).get("top1")
        if nn1 is not None:
            e["nn1"].append(nn1)
        if linear is not None:
            e["linear"].append(linear)
    rows = []
    published = (paper or {}).get("rows", [])
    for name, e in groups.items():
        k = e["labels"].get("paper_row")
        ref = published[k] if k is not None and k < len(published) else {}
        rows.append({"row": name, "teacher": ref.get("teacher", e["labels"]["teacher"]), "student": e["labels"]["student"],
                     "nn1": _stats(e["nn1"]), "linear": _stats(e["linear"]), "paper_nn1": ref.get("nn1"),
                     "paper_linear": ref.get("linear"), "hours": e["hours"], "epoch_hours": e["epoch_hours"],
                     "cells": e["cells"], "done": e["done"]})
    return rows, _device(summaries), caching


def markdown_simreg(rows, protocol, unit, caching=0.0):
    lines = [f"Protocol: {protocol}", "",
             f"| row | teacher → student | 1-NN, ours | paper | ours − paper | linear, ours | paper | ours − paper "
             f"| {unit} | training epochs only |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['row']} | {r['teacher']} → {r['student']} | {_fmt(r['nn1'])} | {_paper(r['paper_nn1'])} | "
                     f"{_diff(r['nn1'], r['paper_nn1'])} | {_fmt(r['linear'])} | {_paper(r['paper_linear'])} | "
                     f"{_diff(r['linear'], r['paper_linear'])} | {r['hours']:.3f} | {r['epoch_hours']:.3f} |")
    return "\n".join(lines + _footer(rows, unit, caching)) + "\n"


def csv_simreg(rows, path):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["row", "teacher", "student", "nn1_mean", "nn1_std", "linear_mean", "linear_std", "n",
                    "paper_nn1", "paper_linear", "hours", "epoch_hours"])
        for r in rows:
            nn1, linear = r["nn1"] or {}, r["linear"] or {}
            w.writerow([r["row"], r["teacher"], r["student"], nn1.get("mean"), nn1.get("std"), linear.get("mean"),
                        linear.get("std"), nn1.get("n", 0), r["paper_nn1"], r["paper_linear"], round(r["hours"], 4),
                        round(r["epoch_hours"], 4)])


# --- the chart ----------------------------------------------------------------------------------

def write_png(bars, path, title, ylabel):
    """bars: [(label, series name, stats or None, paper or None)], one group of bars per label."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    labels = list(dict.fromkeys(b[0] for b in bars))
    series = list(dict.fromkeys(b[1] for b in bars))
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.5 * len(labels) * len(series) + 2), 4.0), dpi=100)
    for j, name in enumerate(series):
        xs, means, stds, px, py = [], [], [], [], []
        for label, sname, stats, paper in bars:
            if sname != name:
                continue
            x = labels.index(label) + (j - (len(series) - 1) / 2) * width
            if stats is not None:
                xs.append(x)
                means.append(stats["mean"])
                stds.append(stats["std"])
            if paper is not None:
                px.append(x)
                py.append(paper)
        ax.bar(xs, means, width=width, yerr=stds, capsize=3, label=f"ours{' ' + name if name else ''} "
                                                                    "(mean ± std over seeds)")
        if px:
            ax.scatter(px, py, color="tab:red", marker="D", zorder=3, label="paper" if j == 0 else None)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=90, fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def paper_of(report_spec, paper_tables):
    """The published table the manifest's report section names, from paper_tables.json's data."""
    paper = (report_spec or {}).get("paper")
    if not paper or not paper_tables:
        return None
    if paper == "simreg":
        return paper_tables["simreg_table"]
    return paper_tables["sskd_tables"][paper]


def write_reports(manifest_path, out_prefix, paper_tables=None, metric=None):
    """<out_prefix>.md, .csv and .png of the grid whose manifest is at `manifest_path`; returns
    the markdown. The manifest's "report" names the kind, the paper table, the metric, the protocol."""
    manifest = read_json(manifest_path)
    if manifest is None:
        raise ValueError(f"no grid manifest at {manifest_path}")
    spec = manifest.get("report") or {}
    paper = paper_of(spec, paper_tables)
    protocol = spec.get("protocol", "")
    title = protocol.split(";")[0] if protocol else "grid"
    if spec.get("kind") == "simreg":
        rows, unit, caching = collect_simreg(manifest, paper)
        text = markdown_simreg(rows, protocol, unit, caching)
        csv_simreg(rows, out_prefix + ".csv")
        bars = [(r["row"], probe, r[probe], r[f"paper_{probe}"])
                for r in rows for probe in ("nn1", "linear")]
        write_png(bars, out_prefix + ".png", title, "ImageNet top-1 (%)")
    else:
        metric = metric or spec.get("metric", "best")
        rows, unit = collect_distill(manifest, paper)
        text = markdown_distill(rows, protocol, metric, unit)
        csv_distill(rows, out_prefix + ".csv")
        write_png([(f"{r['group']}\n{r['row']}", "", r[metric], r["paper"]) for r in rows], out_prefix + ".png",
                  title, f"top-1 (%), {metric} epoch")
    with open(out_prefix + ".md", "w") as f:
        f.write(text)
    return text
