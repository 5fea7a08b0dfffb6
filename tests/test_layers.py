"""The layering of docs/architecture.md holds: the import-linter contracts in
pyproject.toml are kept, and they do catch an import that points up."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import importlinter  # noqa: F401  (a dev dependency: a missing one fails, never skips)
import pytest

ROOT = Path(__file__).resolve().parents[1]

_LINT = ("import sys; from importlinter.cli import lint_imports; "
         "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the tree at ``root`` (its own ``raymix`` first on the path)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", _LINT], cwd=root, env=env, capture_output=True, text=True,
                          timeout=300)


def test_import_contracts_are_kept():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize("module,line,contract", [
    ("raymix/ops/rng.py", "import raymix.pipeline.stages", "Layers"),        # ops -> pipeline: up
    ("raymix/methods/base.py", "import raymix.pipeline.stages", "Layers"),   # methods -> pipeline: up
    ("raymix/models/prompts.py", "import raymix.methods.base", "Layers"),    # models and methods: apart
    ("raymix/io/storage.py", "import ray", "Ray only"),                    # Ray below pipeline
    ("raymix/methods/pixmix.py", "import fsspec", "no I/O"),               # I/O in a method
    ("raymix/schema.py", "import numpy", "leaves"),                       # a leaf with a dependency
])
def test_an_upward_import_breaks_a_contract(tmp_path, module, line, contract):
    shutil.copytree(ROOT / "raymix", tmp_path / "raymix", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    path = tmp_path / module
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0, result.stdout
    broken = [ln for ln in result.stdout.splitlines() if ln.rstrip().endswith("BROKEN")]
    assert any(contract in ln for ln in broken), result.stdout


def test_leaves_import_the_standard_library_only():
    """Beyond the packages the contract names: any third-party import in a leaf fails."""
    graph = grimp.build_graph("raymix", include_external_packages=True, cache_dir=None)
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    # settings reads YAML config files with pyyaml, imported only when one is given.
    for leaf, allowed in (("raymix.schema", stdlib), ("raymix.registry", stdlib), ("raymix.settings", stdlib | {"yaml"})):
        imported = {m.split(".")[0] for m in graph.find_modules_directly_imported_by(leaf)}
        assert imported <= allowed, (leaf, imported - allowed)
