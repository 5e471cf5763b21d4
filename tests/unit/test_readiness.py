"""What the Deployment reports of its pods, and when that is WorkersNotReady (pure).

Case matrix: no status yet -> nothing reported, 0 ready; counts read from the status, garbage read
as 0; Progressing=False and ReplicaFailure=True are failures, other conditions are not; short of
ready pods -> not ready only after the patience, at once with a failure (its reason in the
message); enough ready (or none asked for) -> ready; the shortfall's start carries over passes;
only the start of WorkersNotReady is news (a Warning), not each new count in its message.
"""

from __future__ import annotations

from typing import Any

import pytest
from jobqueue_operator import readiness, status
from jobqueue_operator.status import ConditionType, Reason


def deployment(asked: int = 3, **state: Any) -> dict[str, Any]:
    return {"spec": {"replicas": asked}, "status": state}


def test_no_status_yet() -> None:
    seen = readiness.Replicas.of({"spec": {"replicas": 2}})
    assert (seen.asked, seen.ready, seen.reported, seen.failure) == (2, 0, False, None)
    assert seen.short


def test_counts_and_garbage() -> None:
    seen = readiness.Replicas.of(deployment(asked=3, replicas=3, readyReplicas=2, availableReplicas="x"))
    assert (seen.current, seen.ready, seen.available, seen.reported) == (3, 2, 0, True)


@pytest.mark.parametrize(
    ("condition", "failure"),
    [
        ({"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}, True),
        ({"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": "quota"}, True),
        ({"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}, False),
        ({"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"}, False),
        ("garbage", False),
    ],
)
def test_failures_are_the_stuck_rollout_conditions(condition: Any, failure: bool) -> None:
    seen = readiness.Replicas.of(deployment(conditions=[condition], readyReplicas=0))
    assert (seen.failure is not None) == failure


def test_not_ready_after_the_patience_or_at_once_on_a_failure() -> None:
    short = readiness.Replicas.of(deployment(asked=3, readyReplicas=1))
    assert readiness.not_ready(short, since=100.0, now=150.0, patience=60) is None
    late = readiness.not_ready(short, since=100.0, now=161.0, patience=60)
    assert late == "1 of 3 worker replicas ready for more than 60s"
    failing = readiness.Replicas.of(
        deployment(
            asked=3,
            readyReplicas=0,
            conditions=[
                {
                    "type": "Progressing",
                    "status": "False",
                    "reason": "ProgressDeadlineExceeded",
                    "message": 'ReplicaSet "w-1" has timed out progressing.',
                }
            ],
        )
    )
    message = readiness.not_ready(failing, since=100.0, now=100.0, patience=60)
    assert message is not None and "ProgressDeadlineExceeded" in message and "timed out" in message


@pytest.mark.parametrize(("asked", "ready"), [(3, 3), (3, 4), (0, 0)])
def test_enough_ready_is_ready(asked: int, ready: int) -> None:
    seen = readiness.Replicas.of(deployment(asked=asked, readyReplicas=ready))
    assert readiness.short_since(seen, since=5.0, now=50.0) is None
    assert readiness.not_ready(seen, since=5.0, now=500.0, patience=1) is None


def test_the_shortfall_start_carries_over_and_scaling_moves_the_ask() -> None:
    seen = readiness.Replicas.of(deployment(asked=1, readyReplicas=1))
    assert readiness.short_since(seen, None, 10.0) is None
    more = seen.scaled_to(4)
    assert readiness.short_since(more, None, 10.0) == 10.0
    assert readiness.short_since(more, 10.0, 20.0) == 10.0


def test_only_the_start_of_workers_not_ready_is_news() -> None:
    def ready(reason: Reason, message: str) -> list[status.Condition]:
        return [status.condition(ConditionType.READY, False, reason, message)]

    started = status.new_problems([], ready(Reason.WORKERS_NOT_READY, "0 of 3 ready"))
    assert started == [(Reason.WORKERS_NOT_READY, "0 of 3 ready")]
    moved = status.new_problems(
        ready(Reason.WORKERS_NOT_READY, "0 of 3"), ready(Reason.WORKERS_NOT_READY, "1 of 3")
    )
    assert moved == []
    assert status.new_problems([], ready(Reason.NOT_PROBED, "")) == []  # the Degraded Warning says it
