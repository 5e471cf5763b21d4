"""The shipped Grafana dashboard as Grafana reads it: its queries, and its variables substituted.

``queries(dashboard)`` lists every PromQL the dashboard runs (panel targets, annotations, template
variables) with where it comes from. ``substitute(expr, variables, interval, scrape_interval)``
does what Grafana does before it sends one to Prometheus: ``$__interval`` is the step,
``$__rate_interval`` is ``max($__interval + scrape interval, 4 x scrape interval)``, and a
multi-value variable used in a regex matcher becomes its regex-escaped values joined by ``|``
(in parentheses when there are several), or the variable's ``allValue`` for "All".
"""

from __future__ import annotations

import json
import pathlib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "charts" / "jobqueue-operator" / "files" / "dashboard.json"
ALL = "$__all"
# What Grafana escapes in a value it puts into a Prometheus regex (prometheusRegularEscape).
_REGEX_SPECIALS = re.compile(r"([\\^$*+?.()|{}\[\]])")


@dataclass(frozen=True)
class Query:
    where: str  # "panel 'Waiting jobs' A", "annotation 'Scale events'", "variable queue"
    expr: str
    kind: str  # panel, annotation, variable


def load(path: pathlib.Path = DASHBOARD) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def panels(dashboard: Mapping[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def queries(dashboard: Mapping[str, Any]) -> Iterator[Query]:
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield Query(f"panel {panel['title']!r} {target.get('refId', '')}", target["expr"], "panel")
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if "expr" in annotation:
            yield Query(f"annotation {annotation['name']!r}", annotation["expr"], "annotation")
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        if isinstance(query, dict) and "query" in query:
            yield Query(f"variable {variable['name']}", query["query"], "variable")


def variable_values(dashboard: Mapping[str, Any], chosen: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """What each template variable becomes in a regex matcher, for the values chosen (or All)."""
    out = {}
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        values = list(chosen.get(variable["name"], [ALL]))
        if values == [ALL]:
            out[variable["name"]] = variable.get("allValue") or ".*"
        else:
            escaped = [_REGEX_SPECIALS.sub(r"\\\\\1", v) for v in values]
            out[variable["name"]] = escaped[0] if len(escaped) == 1 else f"({'|'.join(escaped)})"
    return out


def substitute(expr: str, variables: Mapping[str, str], interval_s: float, scrape_interval_s: float) -> str:
    rate_interval = max(interval_s + scrape_interval_s, 4 * scrape_interval_s)
    builtins = {"__rate_interval": f"{rate_interval:g}s", "__interval": f"{interval_s:g}s"}
    values = {**builtins, **variables}

    def one(match: re.Match[str]) -> str:
        name = match[1] or match[2]
        if name not in values:
            raise KeyError(f"unknown dashboard variable ${name} in {expr}")
        return values[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", one, expr)
