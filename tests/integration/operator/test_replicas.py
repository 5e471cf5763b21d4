"""Replicas that tell the truth: what the Deployment reports beside what the operator asked for.

The emulator runs no Deployment controller, so the tests write the Deployment's ``status`` as it
would (``PATCH .../status``).

Case matrix:

| the Deployment reports                          | the JobQueue shows                                  |
| ----------------------------------------------- | --------------------------------------------------- |
| 1 of 3 ready, Progressing=False                 | Ready=False WorkersNotReady at once, with the        |
| (ProgressDeadlineExceeded)                      | Deployment's reason and message; a Warning Event;   |
|                                                 | readyReplicas 1, replicas 3, desired 3 in status,   |
|                                                 | metrics and printer columns                         |
| then 3 of 3 ready                               | Ready=True, "3 of 3 replicas ready"                 |
| 0 of 0, then scaled to 3 with none ready        | Ready stays True within workers_not_ready_seconds,  |
|                                                 | then WorkersNotReady; one Warning while the count   |
|                                                 | in the message moves (0, then 1 ready)              |
"""

from __future__ import annotations

from typing import Any

import kopf
from jobqueue_operator import handlers, tunables
from jobqueue_operator.metrics import OperatorMetrics
from prometheus_client import CollectorRegistry

from tests.integration.operator.conftest import OperatorEnv
from tests.support.kube_client import DEPLOYMENTS
from tests.support.wait import wait_for

STUCK = {
    "type": "Progressing",
    "status": "False",
    "reason": "ProgressDeadlineExceeded",
    "message": 'ReplicaSet "q1-worker-5d8f" has timed out progressing.',
}


async def start(env: OperatorEnv, not_ready_after: float) -> OperatorMetrics:
    metrics = OperatorMetrics(CollectorRegistry())
    tuned = tunables.Tunables(loop=tunables.LoopTunables(workers_not_ready_seconds=not_ready_after))
    memo = kopf.Memo(server=str(env.emulator.url).rstrip("/"), metrics=metrics, tunables=tuned)
    await env.start_operator(register=handlers.register, memo=memo)
    return metrics


async def report(env: OperatorEnv, **fields: Any) -> None:
    """Write the Deployment's status, as the Deployment controller would."""
    await env.kube.patch(DEPLOYMENTS, "q1-worker", {"status": fields}, subresource="status")


async def test_a_stuck_rollout_is_reported_with_the_deployments_reason(operator_env: OperatorEnv) -> None:
    env = operator_env
    metrics = await start(env, not_ready_after=300)
    await env.create()
    await env.enqueue(6)
    await wait_for(lambda: env.replicas() == 3, message="scaled to 3")
    await report(env, replicas=3, readyReplicas=1, availableReplicas=1, updatedReplicas=3, conditions=[STUCK])

    ready = await wait_for(
        lambda: env.condition("Ready").get("reason") == "WorkersNotReady" and env.condition("Ready"),
        message="Ready=False, WorkersNotReady",
    )
    assert ready["status"] == "False"
    assert "1 of 3 worker replicas ready" in ready["message"]
    assert "ProgressDeadlineExceeded" in ready["message"] and "timed out progressing" in ready["message"]
    status = env.status()
    assert (status["replicas"], status["readyReplicas"], status["availableReplicas"]) == (3, 1, 1)
    assert status["desiredReplicas"] == 3
    warning = await wait_for(lambda: env.events("WorkersNotReady", "Warning"), message="a Warning Event")
    assert "ProgressDeadlineExceeded" in warning[0]["message"]
    labels = {"namespace": "default", "jobqueue": "q1", "queue": env.queue_name}

    def sample(name: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    assert (sample("jobqueue_replicas_desired"), sample("jobqueue_replicas_current")) == (3, 3)
    assert sample("jobqueue_replicas_ready") == 1 and sample("jobqueue_replicas_available") == 1
    ready_false = {"namespace": "default", "jobqueue": "q1", "condition": "Ready", "status": "false"}
    assert metrics.registry.get_sample_value("jobqueue_condition", ready_false) == 1

    await report(env, replicas=3, readyReplicas=3, availableReplicas=3, updatedReplicas=3, conditions=[])
    ready = await wait_for(
        lambda: env.condition("Ready").get("status") == "True" and env.condition("Ready"),
        message="ready again",
    )
    assert ready["reason"] == "Scaled" and ready["message"] == "3 of 3 replicas ready"
    await wait_for(lambda: sample("jobqueue_replicas_ready") == 3, message="the ready gauge follows")


async def test_too_few_ready_pods_for_too_long(operator_env: OperatorEnv) -> None:
    env = operator_env
    await start(env, not_ready_after=4)
    await env.create()
    await wait_for(lambda: env.replicas() == 0, message="the Deployment at zero")
    await report(env, replicas=0, readyReplicas=0, availableReplicas=0, updatedReplicas=0)
    await env.enqueue(6)
    await wait_for(lambda: env.replicas() == 3, message="scaled to 3")
    within = await wait_for(
        lambda: env.condition("Ready").get("message") == "0 of 3 replicas ready" and env.condition("Ready"),
        message="0 of 3 ready, still within the patience",
    )
    assert within["status"] == "True"
    late = await wait_for(
        lambda: env.condition("Ready").get("reason") == "WorkersNotReady" and env.condition("Ready"),
        timeout=10,
        message="WorkersNotReady after the patience",
    )
    assert late["message"] == "0 of 3 worker replicas ready for more than 4s"
    await report(env, replicas=3, readyReplicas=1, availableReplicas=1, updatedReplicas=3)
    await wait_for(
        lambda: env.condition("Ready").get("message", "").startswith("1 of 3"), message="the count moves"
    )
    assert len(env.events("WorkersNotReady", "Warning")) == 1
