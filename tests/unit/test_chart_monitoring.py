"""The chart's worker PodMonitor (opt-in, selecting the pods the operator's Deployments run) and
the runbook links of its PrometheusRule.

| values                                  | the PodMonitor                                           |
| --------------------------------------- | -------------------------------------------------------- |
| defaults                                | absent                                                   |
| ci/monitoring-values.yaml (all served)  | every namespace; selects an owned worker pod's labels;    |
|                                         | scrapes the port the operator adds to its container       |
| watchNamespaces [shop, media]           | exactly those namespaces                                  |
| a selector of one's own                 | used as given                                            |
| prometheusRule.runbookBaseUrl           | every runbook_url on that base, the rules else unchanged; |
|                                         | a base with an anchor refused                            |
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from jobqueue_operator import spec, worker_deployment

from tests.support import chart

MONITORING = chart.VALUE_SETS["monitoring-values.yaml"]
JOBQUEUE = spec.parse_jobqueue(
    {
        "apiVersion": "jobqueue.dev/v1alpha1",
        "kind": "JobQueue",
        "metadata": {"name": "emails", "namespace": "shop", "uid": "0b6f1c1e-5d0a-4c55-9f43-1f0c3c1e2a10"},
        "spec": {
            "queue": {"redis": {"urlSecretRef": {"name": "redis", "key": "url"}}},
            "workers": {"template": {"spec": {"containers": [{"name": "worker", "image": "example/w:1"}]}}},
            "scaling": {"maxReplicas": 4, "targets": {"backlogPerReplica": 10}},
        },
    }
)


def pod_monitor(values: dict[str, Any]) -> dict[str, Any]:
    return chart.one(chart.render(values), "PodMonitor")


def test_the_pod_monitor_is_opt_in() -> None:
    assert chart.of_kind(chart.render({}), "PodMonitor") == []


def test_it_selects_the_operators_worker_pods_and_their_metrics_port() -> None:
    monitor = pod_monitor(MONITORING)
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    template = worker_deployment.worker_deployment(JOBQUEUE)["spec"]["template"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= template["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    ports = {p["name"] for c in template["spec"]["containers"] for p in c.get("ports", [])}
    assert endpoint["port"] in ports and endpoint["path"] == "/metrics"
    assert "honorLabels" not in endpoint  # the series take the pod's namespace
    assert monitor["spec"]["namespaceSelector"] == {"any": True}


def test_it_scrapes_only_the_served_namespaces() -> None:
    values = MONITORING | {"watchNamespaces": ["shop", "media"]}
    assert pod_monitor(values)["spec"]["namespaceSelector"] == {"matchNames": ["shop", "media"]}


def test_a_selector_of_ones_own() -> None:
    selector = {"matchLabels": {"app": "thumbnails"}}
    values = MONITORING | {
        "metrics": MONITORING["metrics"] | {"podMonitor": {"enabled": True, "selector": selector}}
    }
    assert pod_monitor(values)["spec"]["selector"] == selector


def test_the_runbook_links_can_point_at_a_copy_of_the_runbooks() -> None:
    shipped = yaml.safe_load((chart.CHART / "files" / "alerts.yaml").read_text())
    wiki = "https://wiki.example.com/ops/jobqueue-runbooks"
    prometheus_rule = MONITORING["metrics"]["prometheusRule"] | {"runbookBaseUrl": wiki}
    values = MONITORING | {"metrics": MONITORING["metrics"] | {"prometheusRule": prometheus_rule}}
    rendered = chart.one(chart.render(values), "PrometheusRule")["spec"]
    rules = [rule for group in rendered["groups"] for rule in group["rules"]]
    assert [rule["annotations"]["runbook_url"] for rule in rules] == [
        f"{wiki}#{rule['alert'].lower()}" for group in shipped["groups"] for rule in group["rules"]
    ]
    # Nothing else of the file changes.
    for rule in rules:
        del rule["annotations"]["runbook_url"]
    for group in shipped["groups"]:
        for rule in group["rules"]:
            del rule["annotations"]["runbook_url"]
    assert rendered == shipped


def test_a_runbook_base_with_an_anchor_is_refused() -> None:
    prometheus_rule = MONITORING["metrics"]["prometheusRule"] | {"runbookBaseUrl": "https://x.example/r#top"}
    values = MONITORING | {"metrics": MONITORING["metrics"] | {"prometheusRule": prometheus_rule}}
    with pytest.raises(Exception, match="runbookBaseUrl"):
        chart.render(values)
