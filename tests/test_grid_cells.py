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
