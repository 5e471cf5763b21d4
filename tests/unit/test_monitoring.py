"""The chart's alert rules and Grafana dashboard against promtool and the exporters' real output.

Case matrix:

| check                                       | files                        | tool                   |
| ------------------------------------------- | ---------------------------- | ---------------------- |
| rules are valid                             | alerts.yaml                  | `promtool check rules` |
| each rule fires, and stays silent, in cases | alerts_test.yaml             | `promtool test rules`  |
| every rule has both kinds of case           | alerts.yaml, alerts_test.yaml | YAML                  |
| every metric queried is exported            | alerts.yaml, dashboard.json  | metric classes, one registry |
| the dashboard is well formed                | dashboard.json               | JSON                   |
| counters with known labels exist at 0       | worker and operator metrics  | metric classes         |
| no `_created`; build info and process series | the served exposition       | `exposition`           |

promtool comes from the `prometheus` Debian package (`apt-get install -y prometheus`); without it the
promtool cases are skipped with the reason printed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from jobqueue_operator import metrics as operator_metrics
from jobqueue_operator import policy
from prometheus_client import CollectorRegistry, generate_latest

from tests.support import grafana
from worker_runtime import exposition
from worker_runtime import metrics as worker_metrics

ROOT = Path(__file__).resolve().parents[2]
FILES = ROOT / "charts" / "jobqueue-operator" / "files"
ALERTS = FILES / "alerts.yaml"
ALERTS_TEST = FILES / "alerts_test.yaml"
DASHBOARD = FILES / "dashboard.json"

PROMQL_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "atan2",
    "inf",
    "nan",
}


# --- promtool ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        reason = "promtool not on PATH; install it with `apt-get install -y prometheus`"
        print(reason)
        pytest.skip(reason)
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=FILES, capture_output=True, text=True, timeout=60, check=False)


def test_promtool_check_rules(promtool: str) -> None:
    result = run(promtool, "check", "rules", ALERTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_test_rules(promtool: str) -> None:
    result = run(promtool, "test", "rules", ALERTS_TEST.name)
    assert result.returncode == 0, result.stdout + result.stderr


def _alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_every_alert_has_a_case_that_fires_and_one_that_stays_silent() -> None:
    cases = [
        case
        for test in yaml.safe_load(ALERTS_TEST.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    ]
    fired = {case["alertname"] for case in cases if case.get("exp_alerts")}
    silent = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    names = {rule["alert"] for rule in _alert_rules()}
    assert names - fired == set()
    assert names - silent == set()


def test_every_alert_has_severity_summary_description_and_runbook() -> None:
    runbooks = (ROOT / "docs" / "runbooks.md").read_text()
    sections = {heading.lower() for heading in re.findall(r"^## (\w+)$", runbooks, re.M)}
    for rule in _alert_rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"]), rule["alert"]
        assert rule.get("for"), f"{rule['alert']} fires on a single evaluation"
        url = rule["annotations"]["runbook_url"]
        assert url.endswith(f"docs/runbooks.md#{rule['alert'].lower()}"), (rule["alert"], url)
        assert rule["alert"].lower() in sections, f"docs/runbooks.md has no section {rule['alert']}"
    assert sections == {rule["alert"].lower() for rule in _alert_rules()}, "a runbook without its alert"


def test_every_queue_alert_names_its_jobqueue() -> None:
    """What a firing queue alert carries: the promtool cases' expected labels."""
    expected = [
        (case["alertname"], alert["exp_labels"])
        for test in yaml.safe_load(ALERTS_TEST.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        for alert in case.get("exp_alerts") or []
    ]
    operator_wide = {"JobQueueOperatorDown", "JobQueueNoActiveOperator"}
    for name, labels in expected:
        if name not in operator_wide:
            assert {"namespace", "jobqueue"} <= set(labels), (name, labels)


# --- metric names against the exporters ---------------------------------------------------------------


@pytest.fixture(scope="module")
def exported_families() -> dict[str, str]:
    """Metric families both exporters print (name -> type), read from the TYPE lines."""
    families: dict[str, str] = {}
    for component, make in (
        ("worker", worker_metrics.WorkerMetrics),
        ("operator", operator_metrics.OperatorMetrics),
    ):
        registry = CollectorRegistry()
        exposition.add_process_metrics(registry, component)
        make(registry)
        text = generate_latest(exposition.without_created(registry)).decode()
        families |= dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    return families


@pytest.fixture(scope="module")
def exported_names(exported_families: dict[str, str]) -> set[str]:
    """Series names a query can use: histograms expand to _bucket/_sum/_count, counters end in _total."""
    names: set[str] = set()
    for name, kind in exported_families.items():
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        elif kind == "counter" and not name.endswith("_total"):
            names.add(f"{name}_total")
        else:
            names.add(name)
    return names


def metric_names(expr: str) -> set[str]:
    """Metric identifiers of a PromQL expression (or a Grafana `label_values(...)` query)."""
    expr = re.sub(r"label_values\(([^,)]*)(,[^)]*)?\)", r"\1", expr)  # keep only the metric
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range and subquery selectors
    expr = re.sub(r"\$\{?\w+\}?", "", expr)  # Grafana variables
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    tokens = re.finditer(r"(?<![\w.])([A-Za-z_:][\w:]*)(\s*\()?", expr)
    return {t[1] for t in tokens if not t[2] and t[1].lower() not in PROMQL_KEYWORDS}


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (queue) (rate(jobqueue_jobs_total{outcome="dead"}[5m])) > 0.1', {"jobqueue_jobs_total"}),
        ("max by (a, b) (x_one) > on (a) group_left (c) y_two", {"x_one", "y_two"}),
        (
            'histogram_quantile(0.99, sum by (le) (rate(h_bucket{q=~"$queue"}[$__rate_interval])))',
            {"h_bucket"},
        ),
        ('label_values(jobqueue_queue_waiting{namespace=~"$namespace"}, queue)', {"jobqueue_queue_waiting"}),
        ("a and on (x) b unless c or d offset 5m", {"a", "b", "c", "d"}),
        ("vector(1) > bool 0 + 1e3", set()),
    ],
)
def test_metric_name_extraction(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


# Series Prometheus makes itself for every target (the operator-down rule reads `up`).
PROMETHEUS_SERIES = {"up"}


def test_alert_rules_query_only_exported_metrics(exported_names: set[str]) -> None:
    used = {name for rule in _alert_rules() for name in metric_names(rule["expr"])}
    assert used, "no metric found in the rules"
    assert used - exported_names - PROMETHEUS_SERIES == set()


def test_dashboard_queries_only_exported_metrics(exported_names: set[str]) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [query.expr for query in grafana.queries(dashboard)]
    used = {name for query in queries for name in metric_names(query)}
    assert len(queries) > 20
    assert used - exported_names == set()
    # The panels the dashboard promises.
    assert {
        "jobqueue_queue_waiting",
        "jobqueue_queue_oldest_age_seconds",
        "jobqueue_queue_age_target_seconds",
        "jobqueue_jobs_total",
        "jobqueue_job_duration_seconds_bucket",
        "jobqueue_job_retries_total",
        "jobqueue_jobs_dead_lettered_total",
        "jobqueue_replicas_desired",
        "jobqueue_replicas_current",
        "jobqueue_scale_events_total",
        "jobqueue_probe_errors_total",
    } <= used


def test_exporters_print_the_documented_names(exported_families: dict[str, str]) -> None:
    """A typo in a collector name would make every query above silently empty."""
    documented = set(re.findall(r"^\| `(jobqueue_\w+)`", (ROOT / "docs" / "metrics.md").read_text(), re.M))
    assert len(documented) == 34
    assert documented <= set(exported_families)


# --- dashboard shape -----------------------------------------------------------------------------------


def test_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "jobqueue-overview"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert {"datasource", "namespace", "queue"} <= set(variables)
    assert variables["queue"]["multi"] and variables["queue"]["includeAll"]
    panels = grafana.panels(dashboard)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert '$queue"' in target["expr"] or "decision" in target["expr"], (
                panel["title"],
                target["expr"],
            )
    variables_of = {
        v["name"]: v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"
    }
    # From series every served JobQueue has, so a queue whose probe never succeeded is listed.
    assert variables_of["namespace"] == "label_values(jobqueue_spec_valid, namespace)"
    assert variables_of["queue"].startswith("label_values(jobqueue_replicas_desired{")
    scale = [a for a in dashboard["annotations"]["list"] if a["name"] == "Scale events"]
    assert scale and "jobqueue_scale_events_total" in scale[0]["expr"]


# --- what the exporters print from the start ------------------------------------------------------


def test_worker_counters_exist_at_zero_for_every_handler_and_outcome() -> None:
    registry = CollectorRegistry()
    metrics = worker_metrics.WorkerMetrics(registry, jobs={"send": None, "resize": None})
    metrics.serving("emails")
    for job in ("send", "resize", worker_metrics.UNKNOWN_JOB):
        for outcome in ("completed", "retried", "dead", "released"):
            labels = {"queue": "emails", "job_name": job, "outcome": outcome}
            assert registry.get_sample_value("jobqueue_jobs_total", labels) == 0, labels
        for name in (
            "jobqueue_job_retries_total",
            "jobqueue_jobs_dead_lettered_total",
            "jobqueue_jobs_expired_total",
        ):
            assert registry.get_sample_value(name, {"queue": "emails", "job_name": job}) == 0, (name, job)
    assert registry.get_sample_value("jobqueue_stalled_recovered_total", {"queue": "emails"}) == 0


def test_operator_counters_exist_at_zero_for_every_direction_and_decision_kind() -> None:
    registry = CollectorRegistry()
    metrics = operator_metrics.OperatorMetrics(registry)
    labels = {"namespace": "shop", "jobqueue": "emails", "queue": "emails"}
    metrics.serving(("shop", "emails", "emails"))
    for direction in ("up", "down"):
        for kind in policy.DecisionKind:
            scale = {**labels, "direction": direction, "reason": kind.value}
            assert registry.get_sample_value("jobqueue_scale_events_total", scale) == 0, scale
    assert registry.get_sample_value("jobqueue_probe_errors_total", labels) == 0
    metrics.forget("shop", "emails")
    assert registry.get_sample_value("jobqueue_probe_errors_total", labels) is None
    metrics.serving(("shop", "emails", "emails"))  # served again after a delete and re-create
    assert registry.get_sample_value("jobqueue_probe_errors_total", labels) == 0


@pytest.mark.parametrize("component", ["worker", "operator"])
def test_the_served_page_has_no_created_series_and_says_what_runs(component: str) -> None:
    registry = CollectorRegistry()
    exposition.add_process_metrics(registry, component)
    if component == "worker":
        worker_metrics.WorkerMetrics(registry, jobs={"send": None}).serving("emails")
    else:
        operator_metrics.OperatorMetrics(registry).serving(("shop", "emails", "emails"))
    assert "_created" in generate_latest(registry).decode()  # what the library prints by itself
    text = generate_latest(exposition.without_created(registry)).decode()
    assert "_created" not in text
    build = re.search(r"^jobqueue_build_info\{(.*)\} 1\.0$", text, re.M)
    assert build is not None, text
    assert f'component="{component}"' in build[1] and 'python_version="3.' in build[1]
    assert 'redis_py_version="unknown"' not in build[1]
    assert re.search(r"^process_resident_memory_bytes \d", text, re.M)
    assert re.search(r"^process_open_fds \d", text, re.M)


def test_panels_honour_the_namespace_and_keep_the_peaks_of_gauges(exported_families: dict[str, str]) -> None:
    """Worker series carry their pod's namespace like operator series carry the JobQueue's; a gauge
    read at each step's instant misses what happened between them, so panels take its maximum."""
    gauges = {
        name for name, kind in exported_families.items() if kind == "gauge" and name.startswith("jobqueue_")
    }
    for query in grafana.queries(json.loads(DASHBOARD.read_text())):
        if query.kind != "panel":
            continue
        if '$queue"' in query.expr:
            assert 'namespace=~"$namespace"' in query.expr, query.where
        for name in metric_names(query.expr) & gauges:
            assert f"max_over_time({name}{{" in query.expr, (query.where, name)
