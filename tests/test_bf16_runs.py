"""bfloat16 autocast on the CPU trains to the float32 accuracy: one digits run per method family
(KD, CRD, SSKD), trained until the accuracy has settled, ends within 1.5 points of the same run in
float32.

On a CPU without native bfloat16 (no AVX-512 BF16 / AMX: oneDNN has no bfloat16 kernels there)
torch computes bfloat16 convolutions by its reference path, 15-20x slower than float32: the three
runs alone would take about an hour of both cores. There only the KD family runs (its 10 bf16
epochs take ~9 minutes); the session header says so (see conftest.pytest_report_header), and
CRD's and SSKD's bf16 accuracy are checked on CPUs with native bfloat16 and by
bench/device_check.py on a GPU."""
import os

import pytest
import torch

import train_student

pytestmark = pytest.mark.slow

COMMON = ["--student", "resnet8", "--dataset", "digits", "--no-progress", "--save-every", "0"]
TEN = ["--epochs", "10", "--lr-decay-epochs", "6,8"]
FAMILIES = {"kd": ["--method", "kd", *TEN],
            "crd": ["--method", "crd", "--nce-k", "256", "--epochs", "20", "--lr-decay-epochs", "14,18"],  # slower
            "sskd": ["--method", "sskd", "--t-epochs", "2", *TEN]}


def native_bf16_cpu():
    probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return True if probe is None else bool(probe())


RUN_FAMILIES = sorted(FAMILIES) if native_bf16_cpu() else ["kd"]


def float32_run(shared_runs, teacher, family):
    """The float32 run of a family, trained once per session (test_train_student's KD run too)."""
    return shared_runs("student", f"{family}_float32", COMMON + FAMILIES[family] + ["--teacher", teacher])


@pytest.mark.parametrize("family", RUN_FAMILIES)
def test_bf16_run_ends_near_float32(family, digits_teacher, shared_runs, tmp_path):
    off = float32_run(shared_runs, digits_teacher["ckpt"], family)
    # the float32 run's init phase (SSKD's teacher head) is reused, as when both ran in one folder
    init_cache = os.path.join(os.path.dirname(off["folder"]), "init_cache")
    bf16 = train_student.main(COMMON + FAMILIES[family] + [
        "--teacher", digits_teacher["ckpt"], "--save-dir", str(tmp_path), "--name", "bf16", "--amp", "bf16",
        "--init-cache", init_cache])
    top1 = {"off": off["summary"]["last"]["top1"], "bf16": bf16["last"]["top1"]}
    assert top1["off"] > 85, top1   # settled: the comparison is not within the early epochs' noise
    assert abs(top1["bf16"] - top1["off"]) <= 1.5, top1
