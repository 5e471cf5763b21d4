"""The import layout: `operator/` must never shadow Python's standard `operator` module."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_operator_folder_is_not_a_package() -> None:
    assert not (ROOT / "operator" / "__init__.py").exists()


def test_standard_operator_module_wins_from_the_repo_root() -> None:
    # Run from the repo root, where a package named `operator` would be found first.
    code = "import operator, sys; print(operator.__file__); assert hasattr(operator, 'itemgetter')"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert "site-packages" not in out.stdout or "operator" in out.stdout
    assert str(ROOT / "operator") not in out.stdout


def test_both_packages_import() -> None:
    runtime = importlib.import_module("worker_runtime")
    operator_pkg = importlib.import_module("jobqueue_operator")
    assert Path(runtime.__file__ or "").parent.name == "worker_runtime"
    assert Path(operator_pkg.__file__ or "").parent.name == "jobqueue_operator"
