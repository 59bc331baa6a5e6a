"""bench/speed.py runs every cell and writes every figure (a smoke test: no time is asserted)."""
import json
import math
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench"))
import speed  # noqa: E402

import losses  # noqa: E402
import models  # noqa: E402

pytestmark = pytest.mark.slow


def _figures(record):
    return {k: v for k, v in record.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def test_every_cell_runs_and_writes_its_figures(tmp_path):
    out = tmp_path / "speed.json"
    speed.main(["--quick", "--device", "cpu", "--modes", "eager", "--json", str(out)])
    written = json.loads(out.read_text())
    assert written["device"].startswith("CPU") and written["quick"] is True
    assert set(written["cells"]) == set(speed.CELLS)
    for cell, by_mode in written["cells"].items():
        assert list(by_mode) == ["eager"], cell
        figures = _figures(by_mode["eager"])
        assert figures, cell
        for name, value in figures.items():
            assert math.isfinite(value) and value > 0, (cell, name, value)
    for cell in set(speed.CELLS) - set(speed.SINGLE_MODE):
        assert {"ms_per_step", "images_per_s", "recipe_hours"} <= set(written["cells"][cell]["eager"]), cell
    assert set(written["ceiling_gflop_per_s"]) == {"float32"}
    for cell in set(speed.CELLS) - set(speed.SINGLE_MODE) - {"linear"}:
        assert {"gflop_per_step", "gflop_per_s", "of_ceiling"} <= set(written["cells"][cell]["eager"]), cell
    # the KD step's count is the teacher's forward plus the student's forward and backward, each
    # counted on its own (the KD loss has no matrix products)
    assert written["cells"]["kd"]["eager"]["gflop_per_step"] == pytest.approx(_kd_step_gflop(), rel=1e-9)


def _kd_step_gflop():
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    import models
    teacher_arch, student_arch, batch = speed.Config(True, torch.device("cpu")).cifar
    x = torch.randn(batch, 3, 32, 32)
    with FlopCounterMode(display=False) as counter:
        with torch.no_grad():
            models.create(teacher_arch, 100).eval()(x)
        models.create(student_arch, 100).train()(x).sum().backward()
    return counter.get_total_flops() / 1e9


def test_unknown_cell_is_one_clear_error():
    with pytest.raises(SystemExit, match="unknown cell"):
        speed.main(["--quick", "--cells", "kd,nope"])


def test_device_check_runs_a_section_on_the_cpu(tmp_path):
    """bench/device_check.py (what a GPU session runs first) works end to end; here its decode
    section on the CPU, where both sides of the comparison decode alike."""
    import device_check
    report = device_check.main(["--out", str(tmp_path), "--device", "cpu", "--sections", "decode", "--budget-s", "120"])
    entry = report["sections"]["decode"]
    assert entry["status"] == "passed", entry
    assert entry["images"] == 128 and entry["mean_levels"] == 0
    assert json.loads((tmp_path / "device_check.json").read_text())["sections"]["decode"]["status"] == "passed"
    with pytest.raises(SystemExit, match="unknown section"):
        device_check.main(["--out", str(tmp_path), "--sections", "decode,nope"])


def test_cells_are_the_scripts_distillers(tmp_path):
    """The benchmark times what the scripts train: its KD cell's Distiller comes from the scripts'
    build_distiller (same student, teacher taps and method), not from a wiring of its own."""
    cfg = speed.Config(quick=True, device=speed.torch.device("cpu"))
    distiller, _, _, _ = speed.build_cell("kd", cfg, "eager", str(tmp_path))
    assert list(distiller.student.state_dict()) == list(models.create(cfg.cifar[1], 100).state_dict())
    assert distiller.method.name == "kd" and distiller.method.hp == losses.method_class("kd").resolve_hparams()
    source = open(speed.__file__).read()
    assert "Distiller(" not in source and "losses.build(" not in source and "probe_shapes(" not in source
