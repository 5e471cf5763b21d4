"""The shipped dashboard and alert rules against a real Prometheus scraping a real run (conftest).

Case matrix:

| what a user sees                                  | checked by                                        |
| ------------------------------------------------- | ------------------------------------------------- |
| every panel of the dashboard has data             | each target, variables substituted as Grafana     |
|                                                   | does, as a range query over the run: a series     |
|                                                   | with at least one number                          |
| the `$namespace` and `$queue` variables list the  | their `label_values` queries through Prometheus'  |
| run's namespace and queues, the one whose Redis   | label API                                         |
| never answered included                           |                                                   |
| a gauge panel keeps a burst's peak at a step of   | the panel's maximum at 5 s and 7 s steps is the   |
| several scrapes                                   | raw series' maximum                               |
| the scale events show as annotations              | the annotation query at its own step returns the  |
|                                                   | up and the down event (the first of their series) |
| the series carry the labels the docs promise      | `job_name` on worker series, never `exported_job`;|
|                                                   | no `*_created` series; build info of both         |
| the alert rules load and evaluate                 | Prometheus' rule health; the dead letters and     |
|                                                   | the failure rate make their alerts pending        |
| the operator's death alerts                       | the operator is stopped: `JobQueueOperatorDown`   |
|                                                   | and `JobQueueNoActiveOperator` go pending         |
"""

from __future__ import annotations

import pytest

from tests.integration.monitoring.conftest import (
    COUNTS,
    JOBQUEUE,
    NAMESPACE,
    OPERATOR_NAMESPACE,
    SCRAPE_SECONDS,
    UNREACHABLE,
    MonitoredRun,
)
from tests.support import grafana
from tests.support import prometheus as prom
from tests.support.wait import wait_for_sync

STEP_SECONDS = 1.0  # Grafana's $__interval for a short range: its step
DASHBOARD = grafana.load()
PANEL_QUERIES = [q for q in grafana.queries(DASHBOARD) if q.kind == "panel"]


def chosen(run: MonitoredRun) -> dict[str, str]:
    """The variables as a user picking this run's namespace and queue sets them."""
    return grafana.variable_values(DASHBOARD, {"namespace": [NAMESPACE], "queue": [run.queue]})


def over_the_run(run: MonitoredRun, expr: str, step: float = STEP_SECONDS) -> list[prom.Body]:
    """A range query as Grafana sends it: start aligned to the step, the run inside the range."""
    text = grafana.substitute(expr, chosen(run), step, SCRAPE_SECONDS)
    return run.prometheus.query_range(text, run.started // step * step, run.ended + step, step)


@pytest.mark.parametrize("query", PANEL_QUERIES, ids=[q.where for q in PANEL_QUERIES])
def test_every_panel_has_data(monitored_run: MonitoredRun, query: grafana.Query) -> None:
    series = over_the_run(monitored_run, query.expr)
    assert prom.finite_points(series) > 0, f"{query.where}: no data for {query.expr}"


@pytest.mark.parametrize("choice", ["one", "all"])
def test_every_panel_has_data_for_all_namespaces_and_queues_too(
    monitored_run: MonitoredRun, choice: str
) -> None:
    variables = (
        grafana.variable_values(DASHBOARD, {})
        if choice == "all"
        else grafana.variable_values(
            DASHBOARD, {"namespace": [NAMESPACE, "other"], "queue": [monitored_run.queue, "x"]}
        )
    )
    empty = []
    for query in PANEL_QUERIES:
        text = grafana.substitute(query.expr, variables, STEP_SECONDS, SCRAPE_SECONDS)
        series = monitored_run.prometheus.query_range(
            text, monitored_run.started, monitored_run.ended + 2, STEP_SECONDS
        )
        if prom.finite_points(series) == 0:
            empty.append(query.where)
    assert empty == []


def test_variables_list_the_runs_namespace_and_queue(monitored_run: MonitoredRun) -> None:
    run = monitored_run
    variables = {q.where.split()[-1]: q.expr for q in grafana.queries(DASHBOARD) if q.kind == "variable"}
    assert set(variables) == {"namespace", "queue"}
    # The queue whose probe never succeeded is listed too: it is the one to look at.
    expected = {"namespace": {NAMESPACE}, "queue": {run.queue, f"{run.queue}-{UNREACHABLE}"}}
    for name, wanted in expected.items():
        expr = grafana.substitute(variables[name], chosen(run), STEP_SECONDS, SCRAPE_SECONDS)
        metric, label = expr.removeprefix("label_values(").removesuffix(")").rsplit(",", 1)
        values = run.prometheus.label_values(label.strip(), metric.strip(), run.started, run.ended + 2)
        assert wanted <= set(values), (name, values)
    assert OPERATOR_NAMESPACE not in run.prometheus.label_values(
        "namespace",
        variables["namespace"].removeprefix("label_values(").rsplit(",", 1)[0],
        run.started,
        run.ended + 2,
    ), "the operator's own namespace is no JobQueue's"


@pytest.mark.parametrize("step", [5.0, 7.0])
def test_gauge_panels_keep_the_peak_at_a_coarse_step(monitored_run: MonitoredRun, step: float) -> None:
    """Grafana's step over a long range is much longer than the scrape interval (15 s over 3 h):
    a gauge read at the step's instants misses a burst between them; the panel must not."""
    run = monitored_run
    (waiting,) = [q for q in PANEL_QUERIES if q.where == "panel 'Jobs by state' A"]
    panel = over_the_run(run, waiting.expr, step)
    peak = max(float(v) for s in panel for _, v in s["values"])
    window = f"{run.ended - run.started + 5:.0f}s"
    (truth,) = run.prometheus.query(
        f'max(max_over_time(jobqueue_queue_waiting{{queue="{run.queue}"}}[{window}]))'
    )
    assert peak == float(truth["value"][1]) > 0


def test_the_scale_events_show_as_annotations(monitored_run: MonitoredRun) -> None:
    run = monitored_run
    (annotation,) = [a for a in DASHBOARD["annotations"]["list"] if a.get("name") == "Scale events"]
    step = float(annotation["step"].removesuffix("s"))
    series = over_the_run(run, annotation["expr"], step)
    directions = {s["metric"]["direction"] for s in series if prom.finite_points([s])}
    assert directions == {"up", "down"}, series
    up = next(s for s in series if s["metric"]["direction"] == "up")
    assert up["metric"]["reason"].startswith(("scale_up", "activated")), up["metric"]
    assert up["metric"]["queue"] == run.queue and up["metric"]["jobqueue"] == JOBQUEUE


def test_series_carry_the_documented_labels(monitored_run: MonitoredRun) -> None:
    run = monitored_run
    p = run.prometheus
    window = f"{run.ended - run.started + 5:.0f}s"
    of_queue = f'jobqueue_jobs_total{{queue="{run.queue}"}}'
    jobs = p.query(f"sum by (job_name, outcome) (max_over_time({of_queue}[{window}]))")
    counted = {(s["metric"]["job_name"], s["metric"]["outcome"]): float(s["value"][1]) for s in jobs}
    # A pod's last increments after its last scrape are lost when it exits, as in a cluster.
    for key, most in (
        (("ok", "completed"), COUNTS["ok"]),
        (("poison", "dead"), COUNTS["poison"]),
        (("flaky", "retried"), COUNTS["flaky"]),
        (("flaky", "completed"), COUNTS["flaky"]),
    ):
        assert 0 < counted[key] <= most, (key, counted)
    assert counted[("ok", "dead")] == counted[("poison", "completed")] == 0, counted
    assert p.query(f'count(last_over_time({{exported_job=~".+"}}[{window}]))') == []
    assert p.query(f'count(last_over_time({{__name__=~".+_created"}}[{window}]))') == []
    built = p.query(f"count by (component) (last_over_time(jobqueue_build_info[{window}]))")
    assert {s["metric"]["component"] for s in built} == {"worker", "operator"}
    pods = p.query(f"count by (pod, namespace) (last_over_time({of_queue}[{window}]))")
    # Every pod scraped carries its namespace (a pod that came and went between scrapes has no series).
    assert {s["metric"]["namespace"] for s in pods} == {NAMESPACE} and 1 <= len(pods) <= run.pods.started


def test_the_rules_load_and_the_runs_failures_make_alerts_pending(monitored_run: MonitoredRun) -> None:
    p = monitored_run.prometheus
    groups = p.api("rules")["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert rules and all(rule["health"] == "ok" for rule in rules), [
        (r["name"], r.get("lastError")) for r in rules
    ]
    wanted = {"JobQueueDeadLetterGrowing", "JobQueueHighFailureRate"}
    active = wait_for_sync(
        lambda: wanted <= {a["labels"]["alertname"] for a in p.alerts()} and p.alerts(),
        timeout=20,
        interval=0.5,
        message=f"{wanted} pending",
    )
    dead = next(a for a in active if a["labels"]["alertname"] == "JobQueueDeadLetterGrowing")
    assert dead["labels"]["queue"] == monitored_run.queue and dead["labels"]["jobqueue"] == JOBQUEUE


def test_stopping_the_operator_makes_its_alerts_pending(monitored_run: MonitoredRun) -> None:
    """Last: it stops the operator of the shared run."""
    p = monitored_run.prometheus
    before = {a["labels"]["alertname"] for a in p.alerts()}
    assert {"JobQueueOperatorDown", "JobQueueNoActiveOperator"} & before == set()
    assert monitored_run.stop_operator() == 0
    wanted = {"JobQueueOperatorDown", "JobQueueNoActiveOperator"}
    alerts = wait_for_sync(
        lambda: (
            [a for a in p.alerts() if a["labels"]["alertname"] in wanted and a["state"] == "pending"]
            if wanted <= {a["labels"]["alertname"] for a in p.alerts()}
            else None
        ),
        timeout=20,
        interval=0.5,
        message=f"{wanted} pending",
    )
    down = next(a for a in alerts if a["labels"]["alertname"] == "JobQueueOperatorDown")
    assert down["labels"]["pod"] == "jobqueue-operator-7d9f8b6c5-x2x4q", down["labels"]
    assert down["annotations"]["runbook_url"].endswith("#jobqueueoperatordown")
