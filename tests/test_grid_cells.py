"""Cells without running them: the order of a table's cells, the torchrun command of a cell over
several nodes as each SLURM node starts it, and the resume decision all nodes share."""
import json
import os
import types

import pytest

from grid import slurm, tables
from grid.cells import ROOT, Cell, in_order


def test_simreg_table_cells_and_their_order(tmp_path):
    table = tables.SimRegTable(rows=[1, 3], nproc=4, nodes=2)
    cells = in_order(tables.expand_simreg(table, str(tmp_path)))
    names = [c.name for c in cells]
    assert names == ["simreg/simreg_moco_resnet18_seed0", "simreg/simreg_moco_resnet18_seed0/knn",
                     "simreg/simreg_moco_resnet18_seed0/linear", "teacher_feats/byol_imagenet_train",
                     "simreg/simreg_byol_resnet18_seed0", "simreg/simreg_byol_resnet18_seed0/knn",
                     "simreg/simreg_byol_resnet18_seed0/linear"]
    by_name = {c.name: c for c in cells}
    assert by_name["simreg/simreg_byol_resnet18_seed0"].needs == ["teacher_feats/byol_imagenet_train"]
    assert by_name["simreg/simreg_byol_resnet18_seed0/linear"].needs == ["simreg/simreg_byol_resnet18_seed0/knn"]
    assert [c.nodes for c in cells] == [2, 1, 1, 2, 2, 1, 1]
    with pytest.raises(ValueError, match="only the slurm executor"):
        by_name["simreg/simreg_moco_resnet18_seed0"].command()
    with pytest.raises(ValueError, match="no row 9"):
        tables.SimRegTable(rows=[9]).resolved_rows()


def test_eval_cell_is_done_when_its_result_is_in_the_summary(tmp_path):
    cell = Cell("r/knn", "eval_knn.py", [], str(tmp_path), resumable=False, done_key="knn")
    assert not cell.is_done()
    (tmp_path / "summary.json").write_text(json.dumps({"last": {"top1": 1.0}}))
    assert not cell.is_done()
    (tmp_path / "summary.json").write_text(json.dumps({"last": {"top1": 1.0}, "knn": {"top1": {"1": 2.0}}}))
    assert cell.is_done()


def test_multi_node_job_commands_and_shared_resume_decision(tmp_path, monkeypatch):
    folder = tmp_path / "run"
    (folder / "ckpt").mkdir(parents=True)
    (folder / "ckpt" / "last.pth").write_bytes(b"x")   # the run has started: every node must resume
    cell = Cell("simreg/x_seed0", "train_student.py", ["--method", "simreg"], str(folder), nproc=4, nodes=2)
    started = []

    class FakeProc:
        def __init__(self, command, **_):
            started.append(command)

        def wait(self):
            return 0

    monkeypatch.setattr(slurm.subprocess, "Popen", FakeProc)
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    log = str(tmp_path / "cell.log")
    for node in (0, 1):
        env = types.SimpleNamespace(node=node, hostnames=["gpu-a", "gpu-b"], job_id="42")
        monkeypatch.setattr("submitit.JobEnvironment", lambda env=env: env)
        assert slurm.CellJob(cell, log)() == 0
    for node, command in enumerate(started):
        i = command.index("torch.distributed.run")
        assert command[i + 1:i + 8] == ["--nnodes=2", f"--node_rank={node}", "--nproc_per_node=4",
                                        "--rdzv_backend=c10d", "--rdzv_endpoint=gpu-a:29400", "--rdzv_id=42",
                                        os.path.join(ROOT, "train_student.py")]
        assert command[-1] == "--resume"
    assert open(log + ".resume-42.1").read() == "1"
    assert os.path.isfile(log + ".node1")   # each other node logs beside node 0


@pytest.mark.slow
def test_a_method_default_has_one_owner(monkeypatch, tmp_path, capsys, digits_teacher):
    """SimReg's head depth and weight decay changed in losses/simreg.py alone show in
    train_student.py --help, stay out of the SimReg grid's training command (which carries only what
    the user set), and reach the run's args.json and recorded hyper-parameters."""
    import dataclasses

    import train_student
    from core.jsonio import read_json
    from losses.simreg import SimReg
    head = SimReg.hparams[0]
    assert head.name == "mlp_layers"
    monkeypatch.setattr(SimReg, "hparams", (dataclasses.replace(head, default=2), *SimReg.hparams[1:]))
    monkeypatch.setattr(SimReg, "recipe", dataclasses.replace(SimReg.recipe, weight_decay=3e-4))
    with pytest.raises(SystemExit):
        train_student.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "simreg: -r 0 -a 0 -b 1; kd_T 4.0, mlp_layers 2" in text and "weight_decay=0.0003" in text
    table = tables.SimRegTable(rows=[{"teacher": digits_teacher["ckpt"], "format": "ours", "student": "resnet8",
                                      "cached": False, "name": "one"}], dataset="digits", epochs=1, nproc=1)
    train = next(c for c in tables.expand_simreg(table, str(tmp_path)) if c.script == "train_student.py")
    assert "--epochs" in train.args and not {"--mlp-layers", "--weight-decay", "--batch-size"} & set(train.args)
    train_student.main(train.args + ["--save-every", "0"])
    recorded = read_json(os.path.join(train.folder, "args.json"))
    summary = read_json(os.path.join(train.folder, "summary.json"))
    assert recorded["args"]["weight_decay"] == 3e-4 and recorded["args"]["epochs"] == 1
    assert recorded["args"]["batch_size"] == SimReg.recipe.batch_size
    assert summary["hparams"]["mlp_layers"] == 2


def _flag_value(f, hint):
    """A command-line text for a field and the value it must give: from the field's type (choices: the last)."""
    import typing
    kind = typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Union else hint
    if typing.get_origin(kind) is list:
        item = typing.get_args(kind)[0]
        return ("3 4", [3, 4]) if item is int or typing.get_origin(item) is typing.Union else ("x y", ["x", "y"])
    if kind is bool:
        return ("1", True) if hint is not bool else (None, True)
    if f.metadata.get("choices"):
        return f.metadata["choices"][-1], f.metadata["choices"][-1]
    return {int: ("3", 3), float: ("0.5", 0.5), str: ("x", "x")}[kind]


@pytest.mark.parametrize("kind", ["sskd", "simreg"])
def test_runner_flags_are_the_grid_dataclass_fields(kind, tmp_path):
    """run_table.py's table flags come from the grid dataclasses: a flag left out leaves the field's
    own default, every field (but those the SSKD table fixes: its data set, a grid file's overrides)
    has a flag, and a flag set reaches its field."""
    import dataclasses
    import typing

    from conftest import import_script
    run_table = import_script("scripts/run_table.py")
    cls = tables.DistillationGrid if kind == "sskd" else tables.SimRegTable
    head = [kind] + (["--table", "cross_architecture"] if kind == "sskd" else [])
    out = ["--out", str(tmp_path)]
    untouched = run_table.build_grid(run_table.parse_args(head + out))
    assert untouched == (tables.DistillationGrid(pairs=tables.SSKD_PAIRS["cross_architecture"], rows=tables.SSKD_ROWS)
                         if kind == "sskd" else tables.SimRegTable())
    fixed = run_table.SSKD_FIXED if kind == "sskd" else ()
    renamed = {"nproc": "--nproc-per-node"}
    given = {"pairs": ("a:b c:d", ["a:b", "c:d"]), "rows": ("KD CRD", ["KD", "CRD"]) if kind == "sskd" else ("1 3", [1, 3])}
    hints = typing.get_type_hints(cls)
    argv, want = list(head), {}
    for f in dataclasses.fields(cls):
        if f.name in fixed:
            continue
        text, value = given.get(f.name) or _flag_value(f, hints[f.name])
        argv += [renamed.get(f.name, "--" + f.name.replace("_", "-"))] + ([text] if text is not None else [])
        want[f.name] = value
    grid = run_table.build_grid(run_table.parse_args(argv + out))
    assert {name: getattr(grid, name) for name in want} == want   # a field without its flag: argparse exits


def test_a_new_grid_field_gets_its_flag_or_fails_loudly():
    """A field added to a dataclass appears on the command line with its help and default; one
    whose type has no flag form stops the parser's construction unless it is skipped."""
    import argparse
    from dataclasses import dataclass, field
    from typing import Dict, List, Optional

    from core.dataclass_flags import add_dataclass_args, dataclass_values, flag_field

    @dataclass
    class Toy:
        widths: List[int] = flag_field("the widths", factory=lambda: [2, 3])
        warm: Optional[bool] = None
        lr: float = flag_field("a rate of 50%", 0.1)
        table: Dict[str, int] = field(default_factory=dict)

    with pytest.raises(TypeError, match="Toy.table"):
        add_dataclass_args(argparse.ArgumentParser(), Toy)
    parser = argparse.ArgumentParser()
    add_dataclass_args(parser, Toy, skip=("table",))
    assert "the widths (default: 2 3)" in " ".join(parser.format_help().split())
    assert "a rate of 50% (default: 0.1)" in " ".join(parser.format_help().split())
    assert Toy(**dataclass_values(parser.parse_args([]), Toy)) == Toy()
    assert dataclass_values(parser.parse_args(["--widths", "5", "--warm", "0"]), Toy) == {"widths": [5], "warm": False}
