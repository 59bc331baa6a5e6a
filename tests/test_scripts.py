"""Table launchers (dry run and a tiny real run) and make_table.py."""
import json
import os
import shlex
import subprocess
import sys

import pytest

import train_student
import train_teacher
from conftest import make_table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _dry_run(script, **env):
    """The launcher's commands, each as [python, script name, args...] (torchrun kept in front)."""
    out = subprocess.run(["bash", os.path.join(ROOT, "scripts", script)], capture_output=True, text=True,
                         env={**os.environ, "DRY_RUN": "1", "PY": sys.executable, **env}, check=True)
    cmds = []
    for line in out.stdout.splitlines():
        if line.strip():
            c = shlex.split(line)
            cmds.append([a[len(ROOT) + 1:] if a.startswith(ROOT + os.sep) and not a.startswith(sys.executable) else a
                         for a in c])
    return cmds


@pytest.mark.slow
def test_same_architecture_dry_run_lists_every_cell():
    cmds = _dry_run("sskd_table_same_arch.sh", SEEDS="0 1")
    teachers = [c for c in cmds if c[1] == "train_teacher.py"]
    students = [c for c in cmds if c[1] == "train_student.py"]
    assert [c[c.index("--arch") + 1] for c in teachers] == ["wrn_40_2", "resnet56", "resnet32x4", "vgg13"]
    assert len(students) == 5 * 12 * 2
    assert cmds[-1][1:] == ["scripts/make_table.py", "--grid", "save/tables/same_architecture"]
    for c in teachers:
        train_teacher.parse_args(c[2:])       # every command is valid for its script
    by_name = {}
    for c in students:
        args = train_student.parse_args(c[2:])
        by_name[(args.student, args.name)] = args
    fitnet = by_name[("wrn_16_2", "FitNet_seed0")]
    assert fitnet.method == "hint" and fitnet.alpha == 1 and fitnet.gamma == 1 and fitnet.beta is None
    crd = by_name[("resnet8x4", "CRD_seed1")]
    assert (crd.method, crd.gamma, crd.alpha, crd.beta) == ("crd", 1, 1, 0.8)
    kd = by_name[("vgg8", "KD_seed0")]
    assert kd.method == "kd" and kd.alpha is None   # its standard 0.1 / 0.9
    assert by_name[("wrn_40_1", "SSKD_seed0")].teacher.endswith("wrn_40_2_seed0/ckpt/best.pth")


@pytest.mark.slow
def test_cross_architecture_dry_run_options():
    cmds = _dry_run("sskd_table_cross_arch.sh", BASELINES="alone", ROWS="AT CRD",
                    PAIRS="resnet32x4:ShuffleV1")
    students = [train_student.parse_args(c[2:]) for c in cmds if c[1] == "train_student.py"]
    assert [(a.method, a.alpha) for a in students] == [("attention", 0), ("crd", 1)]
    assert students[0].lr == 0.01   # ShuffleV1 student: the reference's low learning rate


@pytest.mark.slow
def test_tiny_real_table_run(tmp_path, cifar_root):
    env = {"DATA_ROOT": cifar_root, "SAVE_DIR": str(tmp_path), "PAIRS": "resnet8:resnet8", "ROWS": "KD SSKD",
           "EPOCHS": "1", "GPUS": "", "EXTRA_ARGS": "--batch-size 100 --no-progress --device cpu", "STUDENT_ARGS": "--t-epochs 1",
           "PY": sys.executable}
    subprocess.run(["bash", os.path.join(ROOT, "scripts", "sskd_table_same_arch.sh")], check=True,
                   env={**os.environ, **env}, capture_output=True, text=True)
    out = tmp_path / "same_architecture"
    for folder in ("teachers/resnet8_seed0", "resnet8_to_resnet8/KD_seed0", "resnet8_to_resnet8/SSKD_seed0"):
        s = json.loads((out / folder / "summary.json").read_text())
        assert s["epochs"] == 1 and 0 <= s["best"]["top1"] <= 100
    # a second call finds every cell done, starts nothing and writes the report again
    again = subprocess.run(["bash", os.path.join(ROOT, "scripts", "sskd_table_same_arch.sh")], check=True,
                           env={**os.environ, **env}, capture_output=True, text=True)
    assert "start " not in again.stdout and "3 done" in again.stdout
    assert "Protocol: SSKD table same_architecture" in again.stdout and (out / "report.md").is_file()


def test_make_table_paper_layout(tmp_path, capsys):
    def write(folder, top1):
        os.makedirs(folder)
        with open(os.path.join(folder, "summary.json"), "w") as f:
            json.dump({"last": {"top1": top1 - 1}, "best": {"top1": top1}}, f)

    write(tmp_path / "teachers" / "wrn_40_2_seed0", 76.0)
    write(tmp_path / "wrn_40_2_to_wrn_16_2" / "SSKD_seed0", 76.0)
    write(tmp_path / "wrn_40_2_to_wrn_16_2" / "SSKD_seed1", 77.0)
    out = make_table(["--runs", tmp_path, "--paper", "same_architecture"], capsys)
    sskd = [line for line in out.splitlines() if line.startswith("  SSKD ")][0]
    assert "76.50±0.71" in sskd and "76.04" in sskd and "+0.46" in sskd
    teacher = [line for line in out.splitlines() if line.startswith("  teacher ")][0]
    assert "76.00" in teacher and "-0.46" in teacher


@pytest.mark.slow
def test_simreg_table_dry_run_is_valid_commands():
    import cache_features
    import eval_knn
    import eval_linear
    parsers = {"train_student.py": train_student.parse_args, "cache_features.py": cache_features.parse_args,
               "eval_knn.py": eval_knn.parse_args, "eval_linear.py": eval_linear.parse_args}
    cmds = _dry_run("simreg_table.sh")
    names = [next(a for a in c if a.endswith(".py")) for c in cmds]
    assert names[-1] == "scripts/make_table.py" and "--grid" in cmds[-1]
    # rows 2-4 cache their teacher (as the paper), SimCLR / BYOL / SwAV each into its own prefix
    cached = [c for c in cmds if "cache_features.py" in c]
    assert [c[c.index("--teacher-format") + 1] for c in cached] == ["simclr_x4_flat", "byol", "swav"]
    trained = []
    for i, (c, name) in enumerate(zip(cmds, names)):
        args = parsers[name](c[c.index(name) + 1:]) if name in parsers else None
        if name == "train_student.py":
            assert (args.method, args.epochs, args.batch_size, args.schedule) == ("simreg", 130, 256, "cosine")
            assert (args.lr, args.weight_decay, args.mlp_layers) == (0.05, 1e-4, None)   # None: the method's 4
            trained.append((args.student, args.teacher_feats is not None))
        if name in ("cache_features.py", "train_student.py"):   # 4 processes per cell
            assert c[:3] == [sys.executable, "-m", "torch.distributed.run"] and "--nproc_per_node=4" in c
        if name == "eval_linear.py":   # after the k-NN: both write the run's summary.json
            assert names[i - 1] == "eval_knn.py"
    assert trained == [("mobilenet_v2", False), ("resnet18", False), ("resnet50", True), ("resnet18", True),
                       ("resnet18", True)]
    assert names.count("eval_knn.py") == names.count("eval_linear.py") == 5
    one = _dry_run("simreg_table.sh", ROWS="1", CACHED="1")
    assert [next(a for a in c if a.endswith(".py")) for c in one][:2] == ["cache_features.py", "train_student.py"]


def test_make_table_simreg_row(tmp_path, capsys):
    (tmp_path / "summary.json").write_text(json.dumps({"last": {"epoch": 130}, "knn": {"top1": {"1": 55.0}},
                                                       "linear": {"last": {"top1": 65.5}}}))
    out = make_table(["--runs", tmp_path, "--simreg-row", "1"], capsys)
    assert "resnet18" in out and "55.00" in out and "54.80" in out and "+0.20" in out and "+0.40" in out


@pytest.mark.slow
def test_knn_and_linear_launchers(tmp_path, digits_teacher):
    train_student.main(["--dataset", "digits", "--method", "simreg", "--teacher", digits_teacher["ckpt"],
                        "--student", "resnet8", "--epochs", "1", "--batch-size", "64", "--save-dir", str(tmp_path),
                        "--name", "exp", "--no-progress"])
    env = {**os.environ, "PY": sys.executable, "PYTHON": sys.executable, "SAVE_DIR": str(tmp_path),
           "EXP_NAME": "exp", "EPOCH": "last", "DATASET": "digits", "GPU": "", "USE_CACHE": "1",
           "EXTRA_ARGS": ""}
    for script in ("knn_eval.sh", "lin_eval.sh"):
        subprocess.run(["bash", os.path.join(ROOT, script)], env=env, check=True, capture_output=True, text=True)
    summary = json.loads((tmp_path / "exp" / "summary.json").read_text())
    assert set(summary["knn"]["top1"]) == {"1", "20"} and summary["linear"]["epochs"] == 40


@pytest.mark.slow
def test_scripts_start_without_the_libraries_only_some_runs_need():
    """Importing a training or evaluation script imports neither torchvision (image folders, the
    ImageNet backbones) nor torch._dynamo (--compile; torch's optimizer imports it when it is first
    built, not before), and a run folder records library versions without importing faiss or
    scikit-learn: each costs part of a second of every process start."""
    code = ("import sys; import train_student, train_teacher, eval_knn, eval_linear, cache_features; "
            "from engine.run_folder import versions; v = versions(); "
            "print(sorted(m for m in ('torchvision', 'torch._dynamo', 'faiss', 'sklearn') if m in sys.modules)); "
            "print(v['faiss'] is not None and v['sklearn'] is not None and v['torchvision'] is not None)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.split() == ["[]", "True"], out.stdout + out.stderr


def test_recorded_versions_are_the_installed_libraries():
    import faiss
    import sklearn
    import torchvision

    from engine.run_folder import versions
    v = versions()
    assert v["faiss"] == faiss.__version__ and v["sklearn"] == sklearn.__version__
    assert v["torchvision"] == torchvision.__version__.split("+")[0]   # the distribution's version
