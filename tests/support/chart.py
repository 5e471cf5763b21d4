"""Render charts/jobqueue-operator with Helm's own engine (helm-python-sdk) for the chart's tests.

``render(values, release=..., namespace=...)`` returns the rendered objects (NOTES.txt and empty
documents dropped); ``notes(...)`` returns NOTES.txt. ``VALUE_SETS`` holds the defaults and every
``ci/*-values.yaml``, the value sets CI renders and lints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "jobqueue-operator"
NAMESPACE = "jobqueue-system"
RELEASE = "jq"

Doc = dict[str, Any]

VALUE_SETS: dict[str, dict[str, Any]] = {"defaults": {}} | {
    path.name: yaml.safe_load(path.read_text()) or {} for path in sorted((CHART / "ci").glob("*-values.yaml"))
}


def render_templates(
    values: dict[str, Any], *, release: str = RELEASE, namespace: str = NAMESPACE
) -> dict[str, str]:
    """Every template's output by template path, as ``helm install --dry-run`` would render it."""
    with helm_python.Chart.load(str(CHART)) as chart:
        out: dict[str, str] = chart.render(values, name=release, namespace=namespace, is_install=True)
    return out


def render(values: dict[str, Any], *, release: str = RELEASE, namespace: str = NAMESPACE) -> list[Doc]:
    """The objects the chart installs with ``values``."""
    out = render_templates(values, release=release, namespace=namespace)
    return [
        doc
        for template, text in sorted(out.items())
        if template.endswith((".yaml", ".yml"))
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def notes(values: dict[str, Any], *, release: str = RELEASE, namespace: str = NAMESPACE) -> str:
    out = render_templates(values, release=release, namespace=namespace)
    return next(text for template, text in out.items() if template.endswith("NOTES.txt"))


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[Doc], kind: str) -> Doc:
    found = of_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {[d['metadata']['name'] for d in found]}"
    return found[0]
