"""The ready count reaches the policy: the Kubernetes actuator reports its Deployment's ready pods.

Case matrix: a Deployment whose controller reported 2 ready pods -> the actuator answers 2 and
counts as ``scaling_pass.CountsReady``; one with no status yet -> None (the policy then counts
heartbeats); ``run_pass`` hands the answer to ``policy.decide`` as ``ready_replicas`` (observed
with a wrapper around the real policy, which still decides).
"""

from __future__ import annotations

from typing import Any

import pytest
from jobqueue_operator import kube_actuator, policy, scaling_pass, spec

from worker_runtime.observation import QueueObservation


def deployment(**status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "w"}, "spec": {"replicas": 3, "selector": {}}, "status": status}


@pytest.mark.parametrize(
    ("reported", "ready"),
    [({"replicas": 3, "readyReplicas": 2}, 2), ({}, None), ({"replicas": 3}, 0)],
    ids=["two-ready", "no-status-yet", "none-ready"],
)
async def test_the_kubernetes_actuator_reports_ready_pods(
    reported: dict[str, Any], ready: int | None
) -> None:
    actuator = kube_actuator.KubeActuator(None, "ns", deployment(**reported))  # type: ignore[arg-type]
    assert isinstance(actuator, scaling_pass.CountsReady)
    assert await actuator.ready_replicas() == ready
    assert await actuator.current_replicas() == 3


async def test_run_pass_hands_the_ready_count_to_the_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int | None] = []
    decide = policy.decide

    def recording(*args: Any, **kwargs: Any) -> policy.Decision:
        seen.append(kwargs.get("ready_replicas"))
        return decide(*args, **kwargs)

    monkeypatch.setattr(policy, "decide", recording)
    jobqueue = spec.parse_jobqueue(
        {
            "metadata": {"name": "q", "namespace": "ns", "uid": "u"},
            "spec": {
                "queue": {"redis": {"urlSecretRef": {"name": "r", "key": "url"}}},
                "workers": {"deploymentRef": {"name": "w"}},
                "scaling": {"maxReplicas": 20, "targets": {"backlogPerReplica": 5}},
            },
        }
    )
    actuator = kube_actuator.KubeActuator(None, "ns", deployment(replicas=3, readyReplicas=2))  # type: ignore[arg-type]
    seen_queue = QueueObservation(queue="q", observed_at_ms=10_000, waiting=10)
    await scaling_pass.run_pass(jobqueue, seen_queue, actuator, policy.PolicyState(), 10.0, paused=True)
    assert seen == [2]
