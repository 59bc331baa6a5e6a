import json
import os
import pickle
import sys

# Under pytest-xdist (test.sh runs one worker per core) every worker computes with one thread, and
# so do the processes its tests start: two one-thread workers use two cores better than one
# two-thread process. Set before torch is imported, so that torch reads it.
WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if WORKER:
    os.environ["OMP_NUM_THREADS"] = "1"
# inductor compiles a graph's C++ in-process instead of starting a pool of compile workers (each
# importing torch): on two cores shared by two test workers the pool costs more than it saves
os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from filelock import FileLock  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

torch.set_num_threads(1 if WORKER else min(2, torch.get_num_threads()))


def import_script(relative_path):
    """A script under scripts/ or bench/ as a module, so that a test calls its main(argv) in-process
    (a subprocess only where the property is about a process)."""
    import importlib.util
    path = os.path.join(ROOT, relative_path)
    name = os.path.splitext(os.path.basename(path))[0]
    if name not in sys.modules:
        if os.path.dirname(path) not in sys.path:   # as when Python runs it: its siblings import
            sys.path.append(os.path.dirname(path))
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    return sys.modules[name]


def make_table(argv, capsys):
    """scripts/make_table.py's standard output for `argv` (it must succeed)."""
    capsys.readouterr()
    assert import_script("scripts/make_table.py").main([str(a) for a in argv]) == 0
    return capsys.readouterr().out


# Tests that train, compile or start processes carry `slow` (test.sh --quick leaves them out).
# A test that asks for one of these fixtures is slow by construction; collection fails if it is
# not marked, so the quick tier can never start a training run by accident.
EXPENSIVE_FIXTURES = {"digits_teacher", "shared_runs", "sskd_runs", "small_teacher"}


# The longest tests first, so that the workers finish together (test.sh keeps this order:
# --no-loadscope-reorder); everything else follows in file order, the quick tests last.
# The second worker starts with the tiny grid (its own teachers) while the first trains the digits
# teacher that both bf16 runs need, instead of waiting for it.
LONGEST_FIRST = ("tests/test_bf16_runs.py::test_bf16_run_ends_near_float32[sskd]",
                 "tests/test_grid.py::test_tiny_grid_with_two_concurrent_cells",
                 "tests/test_layers.py",   # xdist queues a second test behind the first: a short one
                 "tests/test_bf16_runs.py::test_bf16_run_ends_near_float32[crd]",
                 "tests/test_grid.py", "tests/test_grid_slurm.py", "tests/test_bf16_runs.py",
                 "tests/test_compile.py::test_run_resumes_exactly_in_each_mode", "tests/test_kill_trials.py",
                 "tests/test_grid_simreg.py", "tests/test_compile.py", "tests/test_bad_inputs.py",
                 "tests/test_bench.py")


def _rank(item):
    for i, prefix in enumerate(LONGEST_FIRST):
        if item.nodeid.startswith(prefix):
            return i
    return len(LONGEST_FIRST) + (0 if item.get_closest_marker("slow") else 1)


def pytest_collection_modifyitems(config, items):
    unmarked = [item.nodeid for item in items
                if EXPENSIVE_FIXTURES & set(getattr(item, "fixturenames", ())) and not item.get_closest_marker("slow")]
    if unmarked:
        raise pytest.UsageError("tests using a trained fixture must be marked slow: " + ", ".join(unmarked))
    items.sort(key=_rank)   # stable: file order within a rank


def pytest_report_header(config):
    from cpu_bf16 import native_bf16_cpu
    if not native_bf16_cpu():
        return ["bf16 runs: this CPU has no native bfloat16, so their convolutions are computed as the native "
                "kernel computes them, in float32 from bfloat16 operands (tests/cpu_bf16.py)"]
    return []


def session_root(tmp_path_factory):
    """The folder this test session shares across its xdist workers (each worker's basetemp is a
    sub-folder of it; without xdist it is the basetemp itself)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if WORKER else base


def build_once(tmp_path_factory, name, build):
    """`build(folder)` run once per test session, whichever worker asks first; the others wait for
    it and get the same JSON-able result."""
    folder = session_root(tmp_path_factory) / "shared" / name
    folder.parent.mkdir(parents=True, exist_ok=True)
    record = folder.parent / f"{name}.json"
    with FileLock(str(folder) + ".lock"):
        if not record.exists():
            result = build(folder)
            record.write_text(json.dumps(result))
    return json.loads(record.read_text())


@pytest.fixture(scope="session", autouse=True)
def inductor_cache(tmp_path_factory):
    """One inductor cache for the whole session, workers and the processes tests start included:
    a graph compiled by one test (a network's forward, its backward) is reused by the next. Fresh
    per session, so the suite's time does not depend on what an earlier run left in /tmp."""
    folder = session_root(tmp_path_factory) / "inductor_cache"
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
    return folder


def write_cifar100_folder(root, n_train=200, n_test=100, seed=0):
    """A small CIFAR-100 folder in torchvision's exact on-disk format (latin1-compatible pickles
    with 'data' N x 3072 uint8, 'fine_labels', 'coarse_labels', 'filenames')."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, "cifar-100-python")
    os.makedirs(folder, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        labels = (np.arange(n) % 100).tolist()
        # class-dependent colour so that the data are learnable at all
        base = (np.array(labels)[:, None] * 2.5).astype(np.uint8)
        data = np.clip(base + rng.integers(0, 40, size=(n, 3072)), 0, 255).astype(np.uint8)
        entry = {"filenames": [f"img_{i}.png" for i in range(n)], "batch_label": f"{split} batch",
                 "fine_labels": labels, "coarse_labels": [l // 5 for l in labels], "data": data}
        with open(os.path.join(folder, split), "wb") as f:
            pickle.dump(entry, f, protocol=2)
    with open(os.path.join(folder, "meta"), "wb") as f:
        pickle.dump({"fine_label_names": [f"c{i}" for i in range(100)],
                     "coarse_label_names": [f"s{i}" for i in range(20)]}, f, protocol=2)
    return root


def write_cifar10_folder(root, per_batch=20, n_test=10, seed=0):
    """A small CIFAR-10 folder in torchvision's exact on-disk format: cifar-10-batches-py/ with
    data_batch_1..5 and test_batch ('data' N x 3072 uint8, 'labels', 'batch_label', 'filenames') and
    batches.meta; image i of the train split is row i of the five batches in order."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(folder, exist_ok=True)
    files = [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", n_test)]
    for name, n in files:
        labels = rng.integers(0, 10, n).tolist()
        data = np.clip((np.array(labels)[:, None] * 25) + rng.integers(0, 30, size=(n, 3072)), 0, 255).astype(np.uint8)
        entry = {"batch_label": name, "labels": labels, "data": data, "filenames": [f"{name}_{i}.png" for i in range(n)]}
        with open(os.path.join(folder, name), "wb") as f:
            pickle.dump(entry, f, protocol=2)
    with open(os.path.join(folder, "batches.meta"), "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)], "num_cases_per_batch": per_batch,
                     "num_vis": 3072}, f, protocol=2)
    return root


@pytest.fixture
def cifar_root(tmp_path):
    return write_cifar100_folder(str(tmp_path / "data"))


@pytest.fixture(scope="session")
def manifest():
    import json
    with open(os.path.join(FIXTURES, "cifar_models_manifest.json")) as f:
        return json.load(f)


@pytest.fixture(scope="session")
def digits_teacher(tmp_path_factory):
    """A digits teacher trained once per test session through train_teacher.py (resnet14, 12 epochs)."""
    import pathlib

    import train_teacher

    def build(root):
        summary = train_teacher.main(["--dataset", "digits", "--arch", "resnet14", "--epochs", "12",
                                      "--lr-decay-epochs", "8,10", "--save-dir", str(root), "--name", "t",
                                      "--no-progress", "--save-every", "0"])
        return {"summary": summary, "folder": str(root / "t"), "ckpt": str(root / "t" / "ckpt" / "last.pth")}
    made = build_once(tmp_path_factory, "digits_teacher", build)
    return {**made, "folder": pathlib.Path(made["folder"])}


@pytest.fixture(scope="session")
def shared_runs(tmp_path_factory):
    """Uninterrupted runs that several tests compare against, each trained once per session:
    `shared_runs(script, name, argv)` -> its summary and run folder. `name` identifies the run;
    the same name with other arguments is an error (two tests would silently share a wrong run).
    Every worker computes with the same thread count, so a run a test makes in-process to compare
    with a shared one bit for bit is made alike."""
    import train_student
    import train_teacher
    scripts = {"teacher": train_teacher.main, "student": train_student.main}

    def run(script, name, argv):
        def build(root):
            summary = scripts[script](list(argv) + ["--save-dir", str(root), "--name", "run"])
            return {"argv": list(argv), "summary": summary, "folder": str(root / "run")}
        made = build_once(tmp_path_factory, f"run_{name}", build)
        assert made["argv"] == list(argv), f"shared run {name!r} was made with other arguments"
        return made
    return run


SMALL_TEACHER = ["--dataset", "digits", "--arch", "resnet8", "--epochs", "2", "--batch-size", "64", "--no-progress",
                 "--save-every", "0"]


@pytest.fixture(scope="session")
def small_teacher(shared_runs):
    """A two-epoch resnet8 digits teacher, trained once per session: the uninterrupted run of the
    SIGTERM tests, and the teacher of tests that compare bits, not accuracy (the kill trials)."""
    run = shared_runs("teacher", "resnet8_two_epochs", SMALL_TEACHER)
    return {**run, "ckpt": os.path.join(run["folder"], "ckpt", "last.pth")}


SSKD_ONE_EPOCH = ["--dataset", "digits", "--method", "sskd", "--student", "resnet8", "--epochs", "1",
                  "--t-epochs", "1", "--batch-size", "128", "--no-progress", "--save-every", "0"]


@pytest.fixture(scope="session")
def sskd_runs(digits_teacher, shared_runs):
    """The init-phase tests' two one-epoch SSKD runs, made once per session: 'computed' trains the
    teacher's head (its init cache in its own folder), 'reused' is the same run reading that cache."""
    args = SSKD_ONE_EPOCH + ["--teacher", digits_teacher["ckpt"]]
    computed = shared_runs("student", "sskd_one_epoch", args)
    cache = os.path.join(os.path.dirname(computed["folder"]), "init_cache")
    reused = shared_runs("student", "sskd_one_epoch_reused", args + ["--init-cache", cache])
    return {"computed": computed, "reused": reused, "args": args}


def write_imagefolder(root, classes=3, train_per_class=8, val_per_class=4, size=40, with_val=True, seed=0):
    """A tiny ImageNet-style folder: <root>/{train,val}/<wnid>/<name>.JPEG, real JPEG files."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    splits = [("train", train_per_class)] + ([("val", val_per_class)] if with_val else [])
    for split, n in splits:
        for c in range(classes):
            folder = os.path.join(root, split, f"n{c:08d}")
            os.makedirs(folder, exist_ok=True)
            for i in range(n):
                base = np.array([(c * 80) % 256, (c * 150) % 256, (c * 40 + 60) % 256], dtype=np.int64)
                pixels = np.clip(base + rng.integers(-40, 40, size=(size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(os.path.join(folder, f"n{c:08d}_{split}_{i}.JPEG"), quality=90)
    return root


@pytest.fixture
def imagefolder_root(tmp_path):
    return write_imagefolder(str(tmp_path / "imagenet"))
