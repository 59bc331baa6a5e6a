"""train_student.py end to end on digits: KD helps, SSKD / CRD run with their records, exact resume
with the CRD memory bank, init-phase reuse, and bad inputs."""

import hashlib
import os
import pathlib
import shutil

import pytest
import torch

import cache_features
import datasets
import engine.trainer
import train_student
from engine.init_phase import init_cache_path
from core.checkpoint import load_file
from test_bf16_runs import FAMILIES, float32_run

FAST = ["--dataset", "digits", "--no-progress", "--save-every", "0"]


def _run(tmp_path, teacher, name, *extra):
    return train_student.main(FAST + ["--teacher", teacher, "--save-dir", str(tmp_path), "--name", name, *extra])


@pytest.mark.slow
@pytest.mark.xdist_group("kd_float32")   # with the bf16 KD test, which shares its float32 run
def test_kd_student_beats_plain_student(digits_teacher, shared_runs, tmp_path):
    """The same budget with and without the teacher (the KD run is test_bf16_runs' float32 one)."""
    kd = float32_run(shared_runs, digits_teacher["ckpt"], "kd")["summary"]
    plain = _run(tmp_path, digits_teacher["ckpt"], "ce", "--method", "ce", "--student", "resnet8",
                 *FAMILIES["kd"][2:])
    assert kd["last"]["top1"] > plain["last"]["top1"], (kd["last"], plain["last"])
    assert kd["teacher_arch"] == "resnet14" and kd["weights"] == {"ce": 0.1, "kd": 0.9, "distill": 0.0}
    assert kd["teacher_top1"] == pytest.approx(digits_teacher["summary"]["last"]["top1"])


@pytest.mark.slow
@pytest.mark.xdist_group("sskd_runs")   # with test_faults' users of the fixture (one worker builds, none waits)
def test_sskd_run_and_teacher_head_reuse(sskd_runs):
    first, second = (pathlib.Path(sskd_runs[k]["folder"]) for k in ("computed", "reused"))
    log = (first / "log.txt").read_text()
    assert "init sskd_teacher_head epoch 1/1" in log and "teacher_ss_top1" in log
    assert (first / "ckpt" / "init.pth").is_file()
    assert {"ce", "kd", "tf", "ss"} <= set(log.split("epoch 1/1 lr")[-1].split("|")[1].split())
    assert "reused" in (second / "log.txt").read_text()
    head_1 = load_file(str(first / "ckpt" / "init.pth"))["method"]
    head_2 = load_file(str(second / "ckpt" / "last.pth"))["extra"]["method"]
    assert torch.equal(head_1["head_t.0.weight"], head_2["head_t.0.weight"])
    assert sskd_runs["computed"]["summary"]["method"] == sskd_runs["reused"]["summary"]["method"] == "sskd"
    # the cell's cost: its whole wall time holds the init phase (computed: measured; reused: none)
    computed, reused = sskd_runs["computed"]["summary"], sskd_runs["reused"]["summary"]
    assert computed["init_seconds"] > 0 and "init_seconds" not in reused
    assert computed["wall_seconds"] >= computed["train_seconds"] + computed["init_seconds"]
    assert reused["wall_seconds"] >= reused["train_seconds"]


def test_the_first_run_of_a_process_starts_with_the_process(monkeypatch):
    import time
    from core import process_clock
    monkeypatch.setattr(process_clock, "_FIRST_RUN", [True])
    first, now = process_clock.run_started(), time.time()
    assert first == process_clock.process_start() and first < now - 0.5   # this process started before the test
    assert abs(process_clock.run_started() - time.time()) < 0.5            # a later run: from its call


@pytest.mark.slow
def test_a_run_is_charged_from_its_process_start(small_teacher, tmp_path, monkeypatch):
    """A run is charged from when it started (here 100 s before its call), not from its first epoch."""
    import time
    from core import process_clock
    monkeypatch.setattr(process_clock, "run_started", lambda: time.time() - 100.0)
    summary = _run(tmp_path, small_teacher["ckpt"], "kd", "--method", "kd", "--student", "resnet8", "--epochs", "1")
    assert summary["wall_seconds"] >= 100.0 + summary["train_seconds"]


@pytest.mark.slow
def test_crd_resume_is_bit_exact_with_memory_bank(small_teacher, tmp_path, monkeypatch):
    args = ["--method", "crd", "--student", "resnet8", "--epochs", "3", "--lr-decay-epochs", "2", "--nce-k", "256"]
    _run(tmp_path, small_teacher["ckpt"], "straight", *args)
    real = engine.trainer.evaluate
    calls = {"n": 0}

    def crash(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(engine.trainer, "evaluate", crash)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, small_teacher["ckpt"], "crashed", *args)
    monkeypatch.setattr(engine.trainer, "evaluate", real)
    _run(tmp_path, small_teacher["ckpt"], "crashed", *args, "--resume")
    a = load_file(str(tmp_path / "straight" / "ckpt" / "last.pth"))
    b = load_file(str(tmp_path / "crashed" / "ckpt" / "last.pth"))
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for k in ("contrast.memory_v1", "contrast.memory_v2", "contrast.params", "embed_s.linear.weight"):
        assert torch.equal(a["extra"]["method"][k], b["extra"]["method"][k]), k
    assert a["extra"]["method"]["contrast.params"][2] > 0   # Z constants were set and kept


def _fails(capsys, fn):
    with pytest.raises(SystemExit) as e:
        fn()
    return e.value.code, capsys.readouterr().err


@pytest.mark.slow
def test_unknown_method(digits_teacher, tmp_path, capsys):
    code, err = _fails(capsys, lambda: _run(tmp_path, digits_teacher["ckpt"], "x", "--method", "magic"))
    assert code == 2 and "unknown method 'magic'" in err and not (tmp_path / "x").exists()


@pytest.mark.slow
def test_teacher_checkpoint_of_another_architecture(digits_teacher, tmp_path, capsys):
    code, err = _fails(capsys, lambda: _run(tmp_path, digits_teacher["ckpt"], "x", "--teacher-arch", "wrn_16_2"))
    assert code == 2 and "missing keys" in err and "unexpected keys" in err
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_teacher_architecture_inferred_from_foreign_checkpoint(digits_teacher, tmp_path):
    """A RepDistiller-layout file (weights under 'model', no arch recorded) is recognised by its keys."""
    state = load_file(digits_teacher["ckpt"])
    foreign = tmp_path / "resnet14_vanilla" / "ckpt_epoch_240.pth"
    foreign.parent.mkdir()
    torch.save({"epoch": 12, "model": state["model"], "accuracy": 98.0}, str(foreign))
    summary = _run(tmp_path, str(foreign), "inferred", "--student", "resnet8", "--epochs", "1")
    assert summary["teacher_arch"] == "resnet14"


@pytest.mark.slow
def test_method_that_cannot_pair_architectures(digits_teacher, tmp_path, capsys):
    code, err = _fails(capsys, lambda: _run(tmp_path, digits_teacher["ckpt"], "x", "--method", "fsp",
                                            "--student", "wrn_16_2"))
    assert code == 2 and "FSP needs equal channel counts" in err and not (tmp_path / "x").exists()


def test_missing_teacher_file(tmp_path, capsys):
    code, err = _fails(capsys, lambda: _run(tmp_path, str(tmp_path / "nope.pth"), "x"))
    assert code == 2 and "checkpoint not found" in err


def test_help_lists_every_method_default(capsys):
    import losses
    with pytest.raises(SystemExit):
        train_student.parse_args(["--help"])
    text = capsys.readouterr().out
    epilog = text[text.index("method defaults"):]
    for name, cls in losses.METHODS.items():
        line = next(line for line in epilog.splitlines() if line.strip().startswith(name + ":"))
        for h in cls.declared_hparams():
            assert f"{h.name} {h.default}" in line, (name, h.name, line)
    assert "130" in epilog[epilog.index("simreg:"):].splitlines()[0]   # SimReg's own recipe
    assert "--nce-k" in text and "crd: 16384" in " ".join(text.split())


@pytest.mark.slow
def test_a_run_reads_the_teacher_file_once(digits_teacher, tmp_path, monkeypatch):
    calls = []
    real = torch.load
    monkeypatch.setattr(torch, "load", lambda path, *a, **kw: calls.append(path) or real(path, *a, **kw))
    _run(tmp_path, digits_teacher["ckpt"], "kd", "--method", "kd", "--student", "resnet8", "--epochs", "1")
    assert calls == [digits_teacher["ckpt"]]


@pytest.mark.slow
def test_init_cache_ignores_other_methods_hparams(small_teacher, tmp_path):
    """AB's init-phase result depends on AB's settings only: --nce-k (CRD's) does not invalidate it
    (cache keys, not accuracy: the two-epoch resnet8 teacher)."""
    args = ["--method", "abound", "--student", "resnet8", "--epochs", "1", "--init-epochs", "1"]
    _run(tmp_path, small_teacher["ckpt"], "ab1", *args)
    _run(tmp_path, small_teacher["ckpt"], "ab2", *args, "--nce-k", "100")
    assert "reused" in (tmp_path / "ab2" / "log.txt").read_text()
    assert len(list((tmp_path / "init_cache").iterdir())) == 1
    _run(tmp_path, small_teacher["ckpt"], "ab3", *args, "--init-epochs", "2")
    assert "reused" not in (tmp_path / "ab3" / "log.txt").read_text()
    assert len(list((tmp_path / "init_cache").iterdir())) == 2


@pytest.mark.slow
def test_init_cache_key_names_the_teacher_there_is(digits_teacher, tmp_path):
    """A teacher network is keyed by its file's content; cached features (no teacher file) by the
    cache's content, so two caches of different teachers never share an init-phase result."""
    train = datasets.build("digits", split="train", purpose="train", views="pair")
    ids = {}
    for name, ckpt in (("a", digits_teacher["ckpt"]), ("b", str(digits_teacher["folder"] / "ckpt" / "best.pth"))):
        prefix = str(tmp_path / name)
        cache_features.main(["--teacher", ckpt, "--dataset", "digits", "--out", prefix, "--workers", "0",
                             "--no-progress"])
        args = train_student.parse_args(FAST + ["--method", "simreg", "--teacher-feats", prefix])
        ids[name] = train_student.build_teacher(args, train, "cpu")[2]
        moved = str(tmp_path / "moved" / name)   # where a cache lies is not what it holds
        os.makedirs(os.path.dirname(moved), exist_ok=True)
        for ext in (".npy", ".json"):
            shutil.copy(prefix + ext, moved + ext)
        assert train_student.build_teacher(train_student.parse_args(
            FAST + ["--method", "simreg", "--teacher-feats", moved]), train, "cpu")[2] == ids[name]
    file_args = train_student.parse_args(FAST + ["--teacher", digits_teacher["ckpt"]])
    ids["file"] = train_student.build_teacher(file_args, train, "cpu")[2]
    assert ids["file"] == {"file": hashlib.sha256(open(digits_teacher["ckpt"], "rb").read()).hexdigest()}
    assert set(ids["a"]) == {"features"} and ids["a"] != ids["b"]
    paths = {init_cache_path(str(tmp_path), "m", train_student.init_cache_settings(file_args, i, {}))
             for i in ids.values()}
    assert len(paths) == 3


@pytest.mark.slow
@pytest.mark.parametrize("method", [["dkd", "--logit-stand"], ["reviewkd"]], ids=["dkd_ls", "reviewkd"])
def test_later_methods_stop_mid_epoch_and_resume_bit_exact(method, small_teacher, tmp_path, monkeypatch, capsys):
    """DKD with logit standardisation (a logit method; DIST's step has no more state) and ReviewKD
    (trained fusion modules with BN statistics): a SIGTERM mid-epoch 2 leaves a mid-epoch checkpoint,
    and the resumed run ends with the uninterrupted run's bits (the warm-up included)."""
    import os
    import signal
    from test_faults import _at_step
    args = ["--method", *method, "--student", "resnet8", "--epochs", "2", "--batch-size", "64",
            "--dkd-warmup" if method[0] == "dkd" else "--reviewkd-warmup", "3"]
    straight = _run(tmp_path, small_teacher["ckpt"], "straight", *args)
    _at_step(monkeypatch, 30, lambda: os.kill(os.getpid(), signal.SIGTERM))
    with pytest.raises(SystemExit) as stop:
        _run(tmp_path, small_teacher["ckpt"], "cut", *args)
    assert stop.value.code == 75 and "SIGTERM" in capsys.readouterr().err
    assert load_file(str(tmp_path / "cut" / "ckpt" / "last.pth"))["partial"]["epoch"] == 2
    monkeypatch.undo()
    resumed = _run(tmp_path, small_teacher["ckpt"], "cut", *args, "--resume")
    a = load_file(str(tmp_path / "straight" / "ckpt" / "last.pth"))
    b = load_file(str(tmp_path / "cut" / "ckpt" / "last.pth"))
    for part in (a["model"], a["extra"]["method"]):
        other = b["model"] if part is a["model"] else b["extra"]["method"]
        for k in part:
            assert torch.equal(part[k], other[k]), k
    assert resumed["last"] == straight["last"]
    if method[0] == "dkd":   # LS raises the weights; the records say what ran
        assert straight["weights"] == {"ce": 1.0, "kd": 0.0, "distill": 1.0}
        assert straight["hparams"]["logit_stand"] is True and straight["hparams"]["dkd_beta"] == 8.0
    else:   # resnet8 from a resnet8 teacher: not a pair with its own weight
        assert straight["weights"] == {"ce": 1.0, "kd": 0.0, "distill": 1.0}
        assert straight["hparams"]["reviewkd_weight"] == 1.0 and any(k.startswith("abfs.3.att_conv") for k in a["extra"]["method"])
