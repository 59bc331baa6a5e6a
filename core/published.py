"""The published numbers the project is compared against, read in this one place: paper_tables.json
beside this file holds the SSKD paper's CIFAR-100 tables (with the later methods' published numbers
and their sources) and the SimReg ImageNet table."""
import functools
import json
import os

from .errors import UserError

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "paper_tables.json")
TEACHER_TOLERANCE = 1.0   # points: a teacher further than this from the paper's is flagged


@functools.lru_cache(maxsize=1)
def tables():
    """{'sskd_tables': {name: table}, 'simreg_table': table} (read once; do not modify it)."""
    try:
        with open(PATH) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read the published tables {PATH} ({e}); restore the file from the repository") from None
    if not isinstance(data, dict) or not {"sskd_tables", "simreg_table"} <= set(data):
        raise UserError(f"{PATH} is damaged (no sskd_tables / simreg_table); restore the file from the repository")
    return data


def teacher_column(table, arch):
    """The first column of a paper table whose teacher is `arch`."""
    return next((c for c in (table or {}).get("columns", []) if c["teacher"] == arch), None)


def teacher_top1(arch):
    """(the SSKD tables' CIFAR-100 top-1 of teacher `arch`, the table's name) or (None, None)."""
    for name, table in sorted(tables()["sskd_tables"].items()):
        col = teacher_column(table, arch)
        if col:
            return col["teacher_acc"], name
    return None, None


def teacher_is_off(ours, published):
    return published is not None and ours is not None and abs(ours - published) > TEACHER_TOLERANCE


def teacher_warning(arch, top1):
    """The line to print when a teacher's measured top-1 is more than 1 point off the paper's."""
    paper, table = teacher_top1(arch)
    if not teacher_is_off(top1, paper):
        return None
    return (f"warning: teacher {arch} has test top-1 {top1:.2f}, {abs(top1 - paper):.2f} points "
            f"{'below' if top1 < paper else 'above'} the SSKD paper's {paper:.2f} (table {table}): the students' "
            f"numbers will not be comparable with the paper's")
