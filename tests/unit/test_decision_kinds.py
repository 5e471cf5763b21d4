"""Decision kinds where they are read, and the ready count on its way to the policy.

| case                                              | shows                                            |
| ------------------------------------------------- | ------------------------------------------------ |
| a scale change                                    | ``jobqueue_scale_events_total``'s ``reason``      |
|                                                   | label is the decision's kind                     |
| an actuator that counts ready replicas            | ``run_pass`` hands the count to ``policy.decide`` |
| one that does not (the Deployment's)              | the policy counts heartbeats (``None``)           |
| dev mode's local actuator                         | counts its live worker processes                 |
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import pytest
from jobqueue_operator import member_pass, policy, scaling_pass, spec
from jobqueue_operator.dev.local_actuator import LocalActuator, WorkerProcess
from jobqueue_operator.metrics import OperatorMetrics
from prometheus_client import CollectorRegistry

from worker_runtime.observation import QueueObservation

JOBQUEUE = spec.parse_jobqueue(
    {
        "apiVersion": "jobqueue.dev/v1alpha1",
        "kind": "JobQueue",
        "metadata": {"name": "q1"},
        "spec": {
            "queue": {"redis": {"urlSecretRef": {"name": "r", "key": "url"}}},
            "workers": {
                "concurrency": 2,
                "template": {"spec": {"containers": [{"name": "w", "image": "x"}]}},
            },
            "scaling": {"maxReplicas": 10, "targets": {"backlogPerReplica": 2}},
        },
    }
)
OBSERVATION = QueueObservation(queue="q1", observed_at_ms=1_000_000, waiting=6)


def test_the_scale_events_metric_is_labelled_with_the_kind() -> None:
    decision = policy.decide(
        JOBQUEUE.spec.scaling, OBSERVATION, 1, policy.PolicyState(), 1000.0, paused=False, concurrency=2
    )
    assert decision.kind == policy.DecisionKind.SCALE_UP_BACKLOG and decision.desired == 3
    metrics = OperatorMetrics(CollectorRegistry())
    labels = ("default", "q1", "q1")
    member_pass.record_metrics(metrics, JOBQUEUE, scaling_pass.PassResult(OBSERVATION, 1, decision), labels)
    sample = metrics.registry.get_sample_value(
        "jobqueue_scale_events_total",
        {
            "namespace": "default",
            "jobqueue": "q1",
            "queue": "q1",
            "direction": "up",
            "reason": "scale_up_backlog",
        },
    )
    assert sample == 1.0


class Plain:
    def __init__(self) -> None:
        self.scaled: list[int] = []

    async def current_replicas(self) -> int:
        return 1

    async def scale(self, desired: int, observation: QueueObservation | None) -> None:
        self.scaled.append(desired)


class Counting(Plain):
    async def ready_replicas(self) -> int | None:
        return 1


@pytest.mark.parametrize(("actuator", "ready"), [(Plain(), None), (Counting(), 1)])
async def test_run_pass_hands_the_ready_count_to_the_policy(
    actuator: Plain, ready: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Any] = []
    decide = policy.decide

    def spy(*args: Any, **kwargs: Any) -> policy.Decision:
        seen.append(kwargs.get("ready_replicas"))
        return decide(*args, **kwargs)

    monkeypatch.setattr(policy, "decide", spy)
    result = await scaling_pass.run_pass(
        JOBQUEUE, OBSERVATION, actuator, policy.PolicyState(), 1000.0, paused=False
    )
    assert seen == [ready] and actuator.scaled == [result.decision.desired]


def test_the_local_actuator_counts_its_live_processes() -> None:
    actuator = LocalActuator(JOBQUEUE, "redis://localhost:1", "app:app")
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait(timeout=30)
    try:
        actuator.running = {"a": WorkerProcess("a", alive, 0.0), "b": WorkerProcess("b", ended, 0.0)}
        assert isinstance(actuator, scaling_pass.CountsReady)
        assert asyncio.run(actuator.ready_replicas()) == 1
        assert asyncio.run(actuator.current_replicas()) == 1
    finally:
        alive.kill()
        alive.wait(timeout=30)
