"""Import direction: the runtime never imports the operator; the policy, and the other pure modules
(readiness, conflicts, pod templates, the Deployment builder), import nothing that does I/O.

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
    "statistics", "pydantic", "re", "datetime", "copy", "hashlib", "json", "urllib.parse",
    "jobqueue_operator.policy", "jobqueue_operator.spec", "jobqueue_operator.status",
    "jobqueue_operator.needs", "jobqueue_operator.rates", "jobqueue_operator.stabilization",
    "worker_runtime.observation", "worker_runtime.keys", "worker_runtime.settings",
    "worker_runtime.retention", "pydantic_settings",
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


@pytest.mark.parametrize(
    "module",
    [
        "policy",
        "needs",
        "rates",
        "stabilization",
        "spec",
        "status",
        "scaling_pass",
        "readiness",
        "conflicts",
        "pod_template",
        "worker_deployment",
    ],
)
def test_policy_side_imports_nothing_that_does_io(module: str) -> None:
    allowed = PURE_ALLOWED | {"jobqueue_operator", "jobqueue_operator.scaling_pass", "worker_runtime"}
    found = imported_modules(OPERATOR / f"{module}.py")
    top_level = {m for m in found if m.split(".")[0] not in {"jobqueue_operator", "worker_runtime"}}
    ours = found - top_level
    bad = {m for m in top_level if m.split(".")[0] not in {a.split(".")[0] for a in PURE_ALLOWED}}
    bad |= {m for m in ours if m not in allowed and not any(m.startswith(a + ".") for a in allowed)}
    assert not bad, f"{module}.py imports {sorted(bad)}, which may do I/O"


# The simulator's model reads traces from strings (csv, io.StringIO, json) and draws from seeded RNGs.
SIMULATOR_ALLOWED = PURE_ALLOWED | {
    "heapq",
    "random",
    "bisect",
    "csv",
    "io",
    "json",
    "jobqueue_operator.simulate",
}


@pytest.mark.parametrize("module", ["model", "traces", "report", "autoscalers", "scenario"])
def test_the_simulator_model_imports_nothing_that_does_io(module: str) -> None:
    found = imported_modules(OPERATOR / "simulate" / f"{module}.py")
    allowed = SIMULATOR_ALLOWED | {"jobqueue_operator", "worker_runtime"}
    roots = {
        a.split(".")[0]
        for a in SIMULATOR_ALLOWED
        if not a.startswith(("jobqueue_operator", "worker_runtime"))
    }
    bad = {
        m
        for m in found
        if (m.split(".")[0] in {"jobqueue_operator", "worker_runtime"} and m not in allowed
            and not any(m.startswith(a + ".") for a in allowed))
        or (m.split(".")[0] not in {"jobqueue_operator", "worker_runtime"} and m.split(".")[0] not in roots)
    }  # fmt: skip
    assert not bad, f"simulate/{module}.py imports {sorted(bad)}, which may do I/O"
