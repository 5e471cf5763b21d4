"""Import direction: the runtime never imports the operator; the policy imports nothing that does I/O.

Checked statically over the source, so a lazy import inside a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "worker_runtime"
OPERATOR = ROOT / "operator" / "jobqueue_operator"

# Modules the pure policy (and what it imports of ours) may use.
PURE_ALLOWED = {
    "__future__", "collections", "dataclasses", "enum", "math", "typing", "functools", "itertools",
    "statistics", "pydantic", "re", "datetime",
    "jobqueue_operator.policy", "jobqueue_operator.spec", "jobqueue_operator.status",
    "worker_runtime.observation", "worker_runtime.keys", "worker_runtime.settings",
    "pydantic_settings",
}  # fmt: skip


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("path", sorted(RUNTIME.rglob("*.py")), ids=lambda p: p.name)
def test_runtime_never_imports_the_operator(path: Path) -> None:
    offending = {m for m in imported_modules(path) if m.split(".")[0] in {"jobqueue_operator", "kopf"}}
    assert not offending, f"{path.relative_to(ROOT)} imports {sorted(offending)}"


@pytest.mark.parametrize("module", ["policy", "spec", "status", "control"])
def test_policy_side_imports_nothing_that_does_io(module: str) -> None:
    allowed = PURE_ALLOWED | {"jobqueue_operator", "jobqueue_operator.control", "worker_runtime"}
    found = imported_modules(OPERATOR / f"{module}.py")
    top_level = {m for m in found if m.split(".")[0] not in {"jobqueue_operator", "worker_runtime"}}
    ours = found - top_level
    bad = {m for m in top_level if m.split(".")[0] not in {a.split(".")[0] for a in PURE_ALLOWED}}
    bad |= {m for m in ours if m not in allowed and not any(m.startswith(a + ".") for a in allowed)}
    assert not bad, f"{module}.py imports {sorted(bad)}, which may do I/O"
