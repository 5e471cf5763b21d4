"""The chart's HA mode says and does what the operator does: leader election through a Lease.

Case matrix:

| check                                             | why                                              |
| ------------------------------------------------- | ------------------------------------------------ |
| every value set's args parse with the operator's  | the chart can only pass flags (and timings) the  |
| own command line, into the tunables it starts with | operator accepts, and HA means a Lease named     |
|                                                   | after the release in the release namespace        |
| lease timings out of order are refused at render  | the operator refuses them at start: an install   |
|                                                   | that succeeds and then crash-loops               |
| NOTES with HA name the Lease and the failover     | NOTES spoke of a kopf peering object the chart   |
| bound                                             | no longer creates (and printed an empty name)    |
| no template output holds `<no value>`             | a value the templates read that values.yaml      |
|                                                   | lacks renders silently as `<no value>`           |
| no chart file speaks of kopf peering, cksum or a  | the operator runs no peering and needs no shell  |
| shell                                             | in its image                                     |
"""

from __future__ import annotations

import argparse
import re
from typing import Any

import helm_python
import pydantic
import pytest
import yaml
from jobqueue_operator import cli, tunables

from tests.support import chart
from tests.support.chart import CHART, NAMESPACE, RELEASE, VALUE_SETS, one

HA_SETS = {name: values for name, values in VALUE_SETS.items() if (values.get("ha") or {}).get("enabled")}


def chart_ha_defaults() -> dict[str, Any]:
    return dict(yaml.safe_load((CHART / "values.yaml").read_text())["ha"])


def operator_args(values: dict[str, Any]) -> argparse.Namespace:
    container = one(chart.render(values), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["jobqueue", "operator", "run"]
    return cli.build_parser().parse_args(["run", *container["args"]])


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_the_chart_passes_only_what_the_operator_accepts(name: str) -> None:
    values = VALUE_SETS[name]
    args = operator_args(values)
    election = cli.tunables_of(args).leader_election
    ha = {**chart_ha_defaults(), **(values.get("ha") or {})}
    assert args.leader_elect is ha["enabled"] and args.standalone is not ha["enabled"]
    if ha["enabled"]:
        assert election.enabled
        assert (election.lease_name, election.lease_namespace) == (f"{RELEASE}-jobqueue-operator", NAMESPACE)
        assert (
            election.lease_duration_seconds,
            election.renew_deadline_seconds,
            election.retry_period_seconds,
        ) == (ha["leaseDurationSeconds"], ha["renewDeadlineSeconds"], ha["retryPeriodSeconds"])
        assert election.identity is None, "each pod's identity comes from $POD_NAME, never from the chart"


def test_the_ha_value_sets_are_checked() -> None:
    assert len(HA_SETS) >= 2, sorted(VALUE_SETS)  # the test above can fail on HA args


@pytest.mark.parametrize(
    "ha",
    [
        {"leaseDurationSeconds": 10, "renewDeadlineSeconds": 10},
        {"renewDeadlineSeconds": 2, "retryPeriodSeconds": 2},
        {"leaseDurationSeconds": 5, "renewDeadlineSeconds": 8, "retryPeriodSeconds": 1},
    ],
    ids=["renew-equals-lease", "retry-equals-renew", "renew-above-lease"],
)
def test_lease_timings_the_operator_would_refuse_are_refused_at_render(ha: dict[str, int]) -> None:
    with pytest.raises(helm_python.HelmRenderError) as refused:
        chart.render({"ha": {"enabled": True, **ha}})
    assert "need leaseDurationSeconds > renewDeadlineSeconds > retryPeriodSeconds" in str(refused.value)
    merged = {**chart_ha_defaults(), **ha}
    with pytest.raises(pydantic.ValidationError):
        tunables.LeaderElectionTunables(
            enabled=True,
            lease_duration_seconds=merged["leaseDurationSeconds"],
            renew_deadline_seconds=merged["renewDeadlineSeconds"],
            retry_period_seconds=merged["retryPeriodSeconds"],
        )  # the same rule as the operator's


def test_lease_timings_matter_only_with_ha() -> None:
    chart.render({"ha": {"enabled": False, "retryPeriodSeconds": 10}})


def test_notes_name_the_lease_and_the_failover_bound() -> None:
    notes = chart.notes({"ha": {"enabled": True, "leaseDurationSeconds": 20, "retryPeriodSeconds": 3}})
    lease = f"{RELEASE}-jobqueue-operator"
    assert f"the Lease {NAMESPACE}/{lease}" in notes
    assert "within 23 s" in notes
    assert f"kubectl -n {NAMESPACE} get lease {lease}" in notes
    assert "peering" not in notes.lower()
    assert "Lease" not in chart.notes({})


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_no_template_reads_a_value_that_does_not_exist(name: str) -> None:
    out = chart.render_templates(VALUE_SETS[name])
    empty = [template for template, text in out.items() if "<no value>" in text]
    assert empty == [], f"templates reading a missing value: {empty}"


PEERING_WORDS = re.compile(r"peering|cksum|/bin/sh|--priority|POD_IP|kopf\.dev", re.IGNORECASE)


def test_no_chart_file_speaks_of_kopf_peering_or_a_shell() -> None:
    files = [CHART / "values.yaml", CHART / "values.schema.json", CHART / "Chart.yaml"]
    files += sorted((CHART / "templates").iterdir()) + sorted((CHART / "ci").iterdir())
    found = [
        f"{path.relative_to(CHART)}:{number}: {line.strip()}"
        for path in files
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if PEERING_WORDS.search(line)
    ]
    assert found == []
