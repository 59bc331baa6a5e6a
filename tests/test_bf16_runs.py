"""bfloat16 autocast on the CPU trains to the float32 accuracy: one digits run per method family
(KD, CRD, SSKD), trained until the accuracy has settled, ends within 1.5 points of the same run in
float32."""
import pytest

import train_student

COMMON = ["--student", "resnet8", "--dataset", "digits", "--no-progress", "--save-every", "0"]
TEN = ["--epochs", "10", "--lr-decay-epochs", "6,8"]
FAMILIES = {"kd": ["--method", "kd", *TEN],
            "crd": ["--method", "crd", "--nce-k", "256", "--epochs", "20", "--lr-decay-epochs", "14,18"],  # slower
            "sskd": ["--method", "sskd", "--t-epochs", "2", *TEN]}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_bf16_run_ends_near_float32(family, digits_teacher, tmp_path):
    runs = {}
    for amp in ("off", "bf16"):
        runs[amp] = train_student.main(COMMON + FAMILIES[family] + [
            "--teacher", digits_teacher["ckpt"], "--save-dir", str(tmp_path), "--name", amp, "--amp", amp])
    top1 = {amp: s["last"]["top1"] for amp, s in runs.items()}
    assert top1["off"] > 85, top1   # settled: the comparison is not within the early epochs' noise
    assert abs(top1["bf16"] - top1["off"]) <= 1.5, top1
