"""The catalogue of bad inputs: every script (and the table launchers) given a bad argument, a bad
combination or a bad file answers with exit code 2 and one line on stderr naming the problem (no
traceback), and every file saved before is byte for byte unchanged."""
import hashlib
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import cache_features
import eval_knn
import eval_linear
import train_student
import train_teacher
from conftest import ROOT, import_script, write_cifar100_folder, write_imagefolder

SCRIPTS = {"teacher": train_teacher.main, "student": train_student.main, "knn": eval_knn.main,
           "linear": eval_linear.main, "cache": cache_features.main,
           "table": import_script("scripts/make_table.py").main}
FAST = ["--no-progress", "--save-every", "0"]


def _cifar_variant(root, kind):
    """A CIFAR-100 folder whose train pickle is bad in one way."""
    write_cifar100_folder(root, n_train=20, n_test=10)
    path = os.path.join(root, "cifar-100-python", "train")
    entry = {"data": np.zeros((20, 3072), np.uint8), "fine_labels": list(range(20))}
    if kind == "truncated":
        data = open(path, "rb").read()
        open(path, "wb").write(data[: len(data) // 2])
        return root
    if kind == "not_a_dict":
        entry = [1, 2, 3]
    elif kind == "misshaped":
        entry["data"] = np.zeros((20, 100), np.uint8)
    elif kind == "labels":
        entry["fine_labels"] = [150] * 20
    elif kind == "count":
        entry["fine_labels"] = [1] * 7
    elif kind == "no_labels":
        del entry["fine_labels"]
    elif kind == "malicious":
        marker = os.path.join(root, "pwned")

        class RunsCode:
            def __reduce__(self):
                return (os.system, (f"touch {marker}",))
        entry["data"] = RunsCode()
    with open(path, "wb") as f:
        pickle.dump(entry, f, protocol=2)
    return root


@pytest.fixture(scope="module")
def ws(tmp_path_factory, digits_teacher):
    """Everything the cases need, made once: a finished run with a k-NN result, bad data folders,
    bad checkpoints, feature caches."""
    root = tmp_path_factory.mktemp("ws")
    w = {"root": root, "teacher": digits_teacher["ckpt"], "runs": str(root / "runs")}
    train_teacher.main(["--dataset", "digits", "--arch", "resnet8", "--epochs", "1", "--save-dir", w["runs"],
                        "--name", "done", *FAST])
    w["done"] = str(root / "runs" / "done" / "ckpt" / "last.pth")
    eval_knn.main(["--checkpoint", w["done"], "--dataset", "digits", "-k", "1", "--workers", "0"])
    w["cifar_good"] = write_cifar100_folder(str(root / "cifar_good"), n_train=20, n_test=10)
    for kind in ("truncated", "not_a_dict", "misshaped", "labels", "count", "no_labels", "malicious"):
        w[f"cifar_{kind}"] = _cifar_variant(str(root / f"cifar_{kind}"), kind)
    corrupt = write_imagefolder(str(root / "img_corrupt"), classes=2, train_per_class=3, val_per_class=2, size=24)
    victim = os.path.join(corrupt, "train", "n00000001", "n00000001_train_0.JPEG")
    open(victim, "wb").write(open(victim, "rb").read()[:40])
    w["img_corrupt"], w["corrupt_file"] = corrupt, victim
    empty = write_imagefolder(str(root / "img_empty"), classes=2, train_per_class=3, val_per_class=2, size=24)
    os.makedirs(os.path.join(empty, "train", "n00000009"))
    w["img_empty"] = empty
    w["img_noval"] = write_imagefolder(str(root / "img_noval"), classes=2, train_per_class=3, size=24, with_val=False)
    (root / "notes.pth").write_text("this is not a checkpoint\n")
    w["text"] = str(root / "notes.pth")
    data = open(w["done"], "rb").read()
    (root / "half.pth").write_bytes(data[: len(data) // 2])
    w["half"] = str(root / "half.pth")

    class RunsCode:
        def __reduce__(self):
            return (os.system, (f"touch {root}/pwned",))
    torch.save({"model": {}, "x": RunsCode()}, str(root / "evil.pth"))
    w["evil"] = str(root / "evil.pth")
    w["feats"] = str(root / "cache" / "digits_teacher")
    cache_features.main(["--teacher", w["teacher"], "--dataset", "digits", "--out", w["feats"], "--workers", "0",
                         "--no-progress"])
    shutil.copy(w["feats"] + ".json", str(root / "cache" / "short.json"))
    arr = np.load(w["feats"] + ".npy")
    np.save(str(root / "cache" / "short.npy"), arr[:10])
    w["short_feats"] = str(root / "cache" / "short")
    (root / "cache" / "cut.json").write_bytes(open(w["feats"] + ".json", "rb").read())
    (root / "cache" / "cut.npy").write_bytes(open(w["feats"] + ".npy", "rb").read()[:300])
    w["cut_feats"] = str(root / "cache" / "cut")
    for kind, text in (("damaged", '{"last": {"top1": 5'), ("list", "[1, 2]")):
        (root / f"records_{kind}" / "r").mkdir(parents=True)
        (root / f"records_{kind}" / "r" / "summary.json").write_text(text)
    return w


def T(w, *extra):
    return ["--dataset", "digits", "--arch", "resnet8", "--epochs", "1", "--save-dir", w["runs"], "--name", "new",
            *FAST, *extra]


def S(w, *extra):
    return ["--dataset", "digits", "--teacher", w["teacher"], "--student", "resnet8", "--epochs", "1",
            "--save-dir", w["runs"], "--name", "s", *FAST, *extra]


def CIFAR(w, kind):
    return ["--dataset", "cifar100", "--data-root", w[f"cifar_{kind}"], "--arch", "resnet8", "--epochs", "1",
            "--save-dir", w["runs"], "--name", f"c_{kind}", *FAST]


def K(w, *extra):
    return ["--checkpoint", w["done"], "--dataset", "digits", "--workers", "0", *extra]


def IMG(w, folder, *extra):
    return ["--teacher", w["teacher"], "--teacher-arch", "resnet14", "--dataset", "imagenet", "--data-root", w[folder],
            "--image-size", "24", "--workers", "0", "--no-progress", "--out", str(w["root"] / "cache" / folder), *extra]


def RESUME(w, *extra):
    return ["--dataset", "digits", "--arch", "resnet8", "--epochs", "1", "--save-dir", w["runs"], "--name", "done",
            "--resume", *FAST, *extra]


CASES = [
    # ranges and lists of the optimisation flags
    ("epochs_0", "teacher", lambda w: T(w, "--epochs", "0"), "--epochs"),
    ("epochs_text", "teacher", lambda w: T(w, "--epochs", "ten"), "not an integer"),
    ("batch_0", "teacher", lambda w: T(w, "--batch-size", "0"), "--batch-size"),
    ("lr_negative", "teacher", lambda w: T(w, "--lr", "-0.1"), "--lr"),
    ("lr_nan", "teacher", lambda w: T(w, "--lr", "nan"), "not a finite number"),
    ("decay_rate_negative", "teacher", lambda w: T(w, "--lr-decay-rate", "-1"), "--lr-decay-rate"),
    ("milestones_text", "teacher", lambda w: T(w, "--lr-decay-epochs", "150,abc"), "list of integers"),
    ("milestones_zero", "teacher", lambda w: T(w, "--lr-decay-epochs", "0,5"), "at least 1"),
    ("momentum_negative", "teacher", lambda w: T(w, "--momentum", "-0.9"), "--momentum"),
    ("weight_decay_negative", "teacher", lambda w: T(w, "--weight-decay", "-1"), "--weight-decay"),
    ("seed_negative", "teacher", lambda w: T(w, "--seed", "-3"), "--seed"),
    ("save_every_negative", "teacher", lambda w: T(w, "--save-every", "-1"), "--save-every"),
    ("ckpt_minutes_zero", "teacher", lambda w: T(w, "--ckpt-every-minutes", "0"), "--ckpt-every-minutes"),
    ("unknown_arch", "teacher", lambda w: T(w, "--arch", "resnet9000"), "resnet9000"),
    ("device_without_cuda", "teacher", lambda w: T(w, "--device", "cuda"), "CUDA is not available"),
    ("device_nonsense", "teacher", lambda w: T(w, "--device", "gpu-please"), "not a device"),
    # run folders
    ("name_escapes", "teacher", lambda w: T(w, "--name", ".."), "--name"),
    ("name_with_slash", "teacher", lambda w: T(w, "--name", "../elsewhere"), "--name"),
    ("existing_run", "teacher", lambda w: T(w, "--name", "done"), "already holds a run"),
    ("resume_nothing", "teacher", lambda w: T(w, "--name", "never", "--resume"), "no run to resume"),
    ("resume_changed_lr", "teacher", lambda w: RESUME(w, "--lr", "0.2"), "--lr 0.05 -> 0.2"),
    ("resume_changed_epochs", "teacher", lambda w: RESUME(w, "--epochs", "3"), "--epochs 1 -> 3"),
    # CIFAR-100 files
    ("cifar_missing", "teacher", lambda w: ["--dataset", "cifar100", "--data-root", str(w["root"] / "nowhere"),
                                            "--save-dir", w["runs"], *FAST], "cifar-100-python"),
    ("cifar_truncated", "teacher", lambda w: CIFAR(w, "truncated"), "truncated or not a CIFAR-100 pickle"),
    ("cifar_not_a_dict", "teacher", lambda w: CIFAR(w, "not_a_dict"), "not a dict"),
    ("cifar_misshaped", "teacher", lambda w: CIFAR(w, "misshaped"), "N x 3072 uint8"),
    ("cifar_labels_range", "teacher", lambda w: CIFAR(w, "labels"), "labels must lie in 0..99"),
    ("cifar_label_count", "teacher", lambda w: CIFAR(w, "count"), "20 images but 7 labels"),
    ("cifar_no_labels", "teacher", lambda w: CIFAR(w, "no_labels"), "no fine_labels"),
    ("cifar_malicious", "teacher", lambda w: CIFAR(w, "malicious"), "posix.system"),
    # students: methods, teachers, combinations
    ("unknown_method", "student", lambda w: S(w, "--method", "telepathy"), "unknown method"),
    ("teacher_missing", "student", lambda w: S(w, "--teacher", str(w["root"] / "nope.pth")), "not found"),
    ("teacher_text_file", "student", lambda w: S(w, "--teacher", w["text"]), "not a PyTorch checkpoint"),
    ("teacher_truncated", "student", lambda w: S(w, "--teacher", w["half"]), "truncated"),
    ("teacher_malicious", "student", lambda w: S(w, "--teacher", w["evil"]), "posix.system"),
    ("teacher_and_feats", "student", lambda w: S(w, "--method", "simreg", "--teacher-feats", w["feats"]),
     "not both"),
    ("feats_for_kd", "student", lambda w: ["--dataset", "digits", "--method", "kd", "--teacher-feats", w["feats"],
                                           "--save-dir", w["runs"], *FAST], "serves simreg only"),
    ("feats_short", "student", lambda w: ["--dataset", "digits", "--method", "simreg", "--teacher-feats",
                                          w["short_feats"], "--save-dir", w["runs"], *FAST], "damaged"),
    ("feats_truncated", "student", lambda w: ["--dataset", "digits", "--method", "simreg", "--teacher-feats",
                                              w["cut_feats"], "--save-dir", w["runs"], *FAST], "truncated"),
    ("alpha_negative", "student", lambda w: S(w, "-a", "-1"), "--alpha"),
    ("nce_k_text", "student", lambda w: S(w, "--method", "crd", "--nce-k", "many"), "not an integer"),
    ("schedule_unknown", "student", lambda w: S(w, "--schedule", "zigzag"), "--schedule"),
    ("nce_k_too_large", "student", lambda w: S(w, "--method", "crd"), "--nce-k"),
    ("teacher_other_classes", "student", lambda w: S(w, "--dataset", "cifar100", "--data-root", w["cifar_good"]),
     "classifies 10 classes"),
    # k-NN
    ("k_zero", "knn", lambda w: K(w, "-k", "0"), "at least 1"),
    ("k_text", "knn", lambda w: K(w, "-k", "one,two"), "list of integers"),
    ("k_too_large", "knn", lambda w: K(w, "-k", "100000"), "has only"),
    ("knn_text_checkpoint", "knn", lambda w: ["--checkpoint", w["text"], "--dataset", "digits"], "not a PyTorch"),
    ("knn_broken_data", "knn", lambda w: K(w, "--dataset", "cifar100", "--data-root", w["cifar_count"], "--other-dataset"),
     "7 labels"),
    ("knn_dataset_contradicts", "knn", lambda w: K(w, "--dataset", "cifar100", "--data-root", w["cifar_good"]),
     "trained on digits"),
    ("linear_dataset_contradicts", "linear", lambda w: K(w, "--dataset", "cifar100", "--data-root", w["cifar_good"]),
     "trained on digits"),
    # linear probe
    ("linear_zero_steps", "linear", lambda w: K(w, "--use-cache", "--batch-size", "100000"), "trains 0 steps"),
    ("linear_epochs_0", "linear", lambda w: K(w, "--epochs", "0"), "--epochs"),
    ("linear_schedule_text", "linear", lambda w: K(w, "--lr-schedule", "x"), "list of integers"),
    # feature caches and image folders
    ("cache_other_teacher", "cache", lambda w: ["--teacher", w["done"], "--dataset", "digits", "--out", w["feats"],
                                                "--workers", "0"], "Refusing to overwrite"),
    ("corrupt_jpeg", "cache", lambda w: IMG(w, "img_corrupt"), "cannot read image"),
    ("empty_class", "cache", lambda w: IMG(w, "img_empty"), "n00000009"),
    ("missing_val", "cache", lambda w: IMG(w, "img_noval", "--split", "val"), "val"),
    # output paths: checked before anything is written
    ("save_dir_under_file", "teacher", lambda w: T(w, "--save-dir", w["text"] + "/runs"), "is a file, not a folder"),
    ("save_dir_is_file", "student", lambda w: S(w, "--save-dir", w["text"]), "is a file, not a folder"),
    ("init_cache_under_file", "student", lambda w: S(w, "--init-cache", w["text"] + "/c"), "--init-cache"),
    ("knn_save_under_file", "knn", lambda w: K(w, "--save", w["text"] + "/knn"), "is a file, not a folder"),
    ("linear_save_under_file", "linear", lambda w: K(w, "--save", w["text"] + "/lin"), "is a file, not a folder"),
    ("cache_out_under_file", "cache", lambda w: ["--teacher", w["teacher"], "--dataset", "digits", "--workers", "0",
                                                 "--out", w["text"] + "/feats"], "is a file, not a folder"),
    # optimiser and method values against what they can mean
    ("momentum_one", "teacher", lambda w: T(w, "--momentum", "1"), "--momentum"),
    ("student_momentum_above_one", "student", lambda w: S(w, "--momentum", "1.5"), "never decay"),
    ("linear_momentum_one", "linear", lambda w: K(w, "--momentum", "1"), "--momentum"),
    ("crd_zero_negatives", "student", lambda w: S(w, "--method", "crd", "--nce-k", "0"), "--nce-k"),
    ("crd_zero_temperature", "student", lambda w: S(w, "--method", "crd", "--nce-t", "0"), "--nce-t"),
    ("crd_memory_momentum_one", "student", lambda w: S(w, "--method", "crd", "--nce-m", "1"), "--nce-m"),
    ("kd_temperature_zero", "student", lambda w: S(w, "--kd-T", "0"), "--kd-T"),
    ("sskd_ratio_above_one", "student", lambda w: S(w, "--method", "sskd", "--ratio-ss", "1.5"), "--ratio-ss"),
    ("dkd_warmup_zero", "student", lambda w: S(w, "--method", "dkd", "--dkd-warmup", "0"), "--dkd-warmup"),
    ("hparam_nan", "student", lambda w: S(w, "--method", "dist", "--dist-beta", "nan"), "not a finite number"),
    # damaged records, in every reader
    ("table_damaged_summary", "table", lambda w: ["--runs", str(w["root"] / "records_damaged")], "not valid JSON"),
    ("table_summary_not_object", "table", lambda w: ["--runs", str(w["root"] / "records_list")], "not an object"),
    ("table_paper_damaged_summary", "table", lambda w: ["--runs", str(w["root"] / "records_damaged" / "r"),
                                                        "--simreg-row", "0"], "not valid JSON"),
]


def _files(paths):
    out = {}
    for top in paths:
        for dirpath, _, names in os.walk(top):
            for n in names:
                if n != "run.lock":
                    p = os.path.join(dirpath, n)
                    out[p] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out


# one worker runs every case: each checks that nothing under the shared workspace changes, which a
# case running beside it on another worker could not promise
@pytest.mark.slow
@pytest.mark.xdist_group("bad_inputs")
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, ws, capsys):
    name, script, argv, expected = case
    watched = [str(ws["root"]), os.path.dirname(os.path.dirname(ws["teacher"]))]
    before = _files(watched)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        SCRIPTS[script](argv(ws))
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert exit_.value.code == 2, (name, err)
    assert len(lines) == 1 and "Traceback" not in err, (name, err)
    assert expected in lines[0], (name, expected, lines[0])
    assert _files(watched) == before, name   # nothing saved changed, nothing new was left behind
    assert not (ws["root"] / "pwned").exists() and not os.path.exists(os.path.join(ws["cifar_malicious"], "pwned"))


def test_catalogue_size():
    assert len(CASES) >= 75


@pytest.mark.slow
def test_runner_out_under_a_file(tmp_path, capsys):
    """scripts/run_table.py checks --out before it writes a manifest or starts a cell."""
    run_table = import_script("scripts/run_table.py")
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert run_table.main(["sskd", "--table", "same_architecture", "--out", str(blocker / "out"), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a file, not a folder" in err[0], err
    assert sorted(os.listdir(tmp_path)) == ["a_file"]


@pytest.mark.parametrize("argv,expected", [
    (["sskd", "--table", "same_architecture", "--seeds", "0 x"], "space-separated integers"),
    (["sskd", "--table", "same_architecture", "--kd-weight", "-1"], "0 or more"),
    (["sskd", "--table", "same_architecture", "--teacher-ckpt", "middle"], "invalid choice"),
    (["simreg", "--cached", "2"], "is not 0 or 1"),
    (["simreg", "--nproc-per-node", "0"], "at least 1"),
], ids=["seeds_text", "kd_weight_negative", "teacher_ckpt_unknown", "cached_two", "nproc_zero"])
def test_bad_runner_values(argv, expected, tmp_path, capsys):
    """A table flag (made from its dataclass field) with a value the field cannot take: one line,
    exit 2, nothing written."""
    run_table = import_script("scripts/run_table.py")
    with pytest.raises(SystemExit) as stop:
        run_table.main(argv + ["--out", str(tmp_path / "out"), "--dry-run"])
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(err) == 1 and expected in err[0], err
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
@pytest.mark.parametrize("launcher,env,expected", [
    ("simreg_table.sh", {"ROWS": "7"}, "no row 7"),
    ("sskd_table_same_arch.sh", {"ROWS": "KD Telepathy"}, "unknown row 'Telepathy'"),
    ("sskd_table_cross_arch.sh", {"PAIRS": "resnet56"}, "not teacher:student"),
])
def test_bad_launcher_variables(launcher, env, expected):
    out = subprocess.run(["bash", os.path.join(ROOT, "scripts", launcher)], capture_output=True, text=True,
                         env={**os.environ, "DRY_RUN": "1", "PY": sys.executable, **env})
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 2 and len(lines) == 1 and expected in lines[0], out.stderr


def test_read_only_save_dir_is_refused_before_writing(tmp_path, monkeypatch, capsys):
    """A --save-dir inside a folder the process may not write to is one error line, and nothing is
    made. (The tests run as root, whom a 0555 folder does not stop, so the folder's permission is
    what os.access reports: the answer a non-root user gets.)"""
    locked = tmp_path / "locked"
    locked.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p) == str(locked) else real(p, mode, **kw))
    with pytest.raises(SystemExit) as exit_:
        train_teacher.main(["--dataset", "digits", "--epochs", "1", "--save-dir", str(locked / "runs"), *FAST])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and "is not writable" in err[0], err
    assert os.listdir(locked) == []
