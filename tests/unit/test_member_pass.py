"""What a member's turn writes, with a stand-in for the API client (the client is its collaborator).

Case matrix: a status write that finds the JobQueue gone (404) forgets the member and drops every
metric series of it at once (the DELETED event that follows finds nothing left to forget); a
status write that goes through exports the conditions as series (one per type, for its current
status), spec validity included.
"""

from __future__ import annotations

from typing import Any

from jobqueue_operator import member_pass, served, status, tunables
from jobqueue_operator.metrics import OperatorMetrics
from prometheus_client import CollectorRegistry

LABELS = {"namespace": "team", "jobqueue": "q1", "queue": "q1"}


class Api:
    """The status PATCH answers as the API server would: the object as written, or None (404)."""

    def __init__(self, gone: bool) -> None:
        self.gone = gone
        self.events: list[Any] = []

    async def patch_jobqueue_status(self, namespace: str, name: str, patch: dict[str, Any]) -> Any:
        if self.gone:
            return None
        return {"metadata": {"resourceVersion": "9"}, "status": patch}

    async def post_event(self, namespace: str, event: dict[str, Any]) -> None:
        self.events.append(event)


def member(members: served.ServedJobQueues) -> served.ServedJobQueue:
    body = {
        "metadata": {"name": "q1", "namespace": "team", "uid": "u1", "generation": 1},
        "spec": {
            "queue": {"redis": {"urlSecretRef": {"name": "redis", "key": "url"}}},
            "workers": {"deploymentRef": {"name": "w"}},
            "scaling": {"targets": {"backlogPerReplica": 2}},
        },
    }
    found = members.observe(body)
    assert found is not None
    return found


async def test_a_status_write_finding_the_jobqueue_gone_drops_its_series() -> None:
    members, metrics = served.ServedJobQueues(), OperatorMetrics(CollectorRegistry())
    one = member(members)
    metrics.desired.labels(*LABELS.values()).set(2)
    metrics.conditions("team", "q1", [("SpecValid", "True")])
    runner = member_pass.PassRunner(members, metrics, tunables.Tunables())
    degraded = status.degraded_condition(status.Problem(status.Reason.PROBE_FAILED, "down"))
    await runner.report(Api(gone=True), one, [degraded], 1.0)  # type: ignore[arg-type]
    assert members.get(one.key) is None
    assert metrics.registry.get_sample_value("jobqueue_replicas_desired", LABELS) is None
    assert (
        metrics.registry.get_sample_value("jobqueue_spec_valid", {"namespace": "team", "jobqueue": "q1"})
        is None
    )


async def test_conditions_are_exported_spec_validity_included() -> None:
    members, metrics = served.ServedJobQueues(), OperatorMetrics(CollectorRegistry())
    one = member(members)
    runner = member_pass.PassRunner(members, metrics, tunables.Tunables())
    invalid = status.refused_conditions(status.Problem(status.Reason.CONFLICT, "another owner"))
    api = Api(gone=False)
    await runner.report(api, one, invalid, 1.0)  # type: ignore[arg-type]
    objects = {"namespace": "team", "jobqueue": "q1"}
    assert metrics.registry.get_sample_value("jobqueue_spec_valid", objects) == 0
    spec_false = {**objects, "condition": "SpecValid", "status": "false"}
    spec_true = {**objects, "condition": "SpecValid", "status": "true"}
    assert metrics.registry.get_sample_value("jobqueue_condition", spec_false) == 1
    assert metrics.registry.get_sample_value("jobqueue_condition", spec_true) is None  # one per type
    assert [e["reason"] for e in api.events] == ["Conflict"]
