"""The floors of the project, read from the imports with `ast`: the basement (core/) imports
nothing else of the project; models/ and datasets/ import only the basement (and themselves);
losses/ adds models/; engine/ (orchestration) may import all of those, never a script; grid/ (the
table runner) only the basement."""
import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("core", "models", "datasets", "losses", "engine", "grid")
SCRIPTS = {name[:-3] for name in os.listdir(ROOT) if name.endswith(".py")}
MAY_IMPORT = {"core": {"core"}, "models": {"core", "models"}, "datasets": {"core", "datasets"},
              "losses": {"core", "models", "losses"}, "engine": {"core", "models", "datasets", "losses", "engine"},
              "grid": {"core", "grid"}}   # the table runner starts the scripts as processes, never imports them


def project_imports(path, package):
    """The top-level project packages / scripts a module imports (relative imports resolve to its own
    package, or to the parent's siblings for `..`)."""
    tree = ast.parse(open(path).read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 1:
                names = [package]
            elif node.level > 1:
                names = [(node.module or "").split(".")[0]] if node.module else [a.name for a in node.names]
            else:
                names = [node.module.split(".")[0]]
        else:
            continue
        found.update(n for n in names if n in PACKAGES or n in SCRIPTS)
    return found


def modules():
    for package in PACKAGES:
        for name in sorted(os.listdir(os.path.join(ROOT, package))):
            if name.endswith(".py"):
                yield package, os.path.join(ROOT, package, name)


@pytest.mark.parametrize("package,path", list(modules()), ids=lambda v: os.path.relpath(v, ROOT) if "/" in str(v) else v)
def test_no_upward_imports(package, path):
    upward = project_imports(path, package) - MAY_IMPORT[package]
    assert not upward, f"{os.path.relpath(path, ROOT)} imports {sorted(upward)} (a floor above {package}/)"


def test_the_checker_sees_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import torch\nfrom engine.trainer import Trainer\nfrom .errors import UserError\n")
    assert project_imports(str(bad), "core") == {"engine", "core"}


def test_every_module_error_is_a_user_error():
    """exit_on_user_error catches UserError alone: every error a module raises for a bad input is one."""
    from core.checkpoint import CheckpointError
    from core.errors import UserError
    from datasets.errors import DatasetError, DatasetNotFoundError
    from datasets.feature_cache import CacheMismatchError
    from engine.loops import NonFiniteLossError
    from engine.run_folder import ExistingRunError
    from losses.base import MethodError
    from models import UnknownModelError
    for error in (CheckpointError, DatasetError, DatasetNotFoundError, CacheMismatchError, NonFiniteLossError,
                  ExistingRunError, MethodError, UnknownModelError):
        assert issubclass(error, UserError), error
