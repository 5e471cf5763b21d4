"""The ``status`` of a JobQueue: what the operator last saw and decided, and its conditions.

| condition   | ``True`` means                                                          |
| ----------- | ----------------------------------------------------------------------- |
| ``Ready``     | the queue was probed and the worker Deployment has the desired replicas |
| ``Active``    | there is work (waiting or running jobs) or replicas above zero          |
| ``Degraded``  | probes fail or the Deployment cannot be scaled                          |
| ``Paused``    | scaling is paused by the spec or the ``jobqueue.dev/paused`` annotation |
| ``SpecValid`` | the spec passed every check; ``False`` leaves replicas untouched        |

``policy`` holds ``policy.PolicyState.to_dict()``, so an operator restart resumes its rates, windows
and cooldown instead of starting blind.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel


class ConditionType(StrEnum):
    READY = "Ready"
    ACTIVE = "Active"
    DEGRADED = "Degraded"
    PAUSED = "Paused"
    SPEC_VALID = "SpecValid"


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class _StatusModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class Condition(_StatusModel):
    """One condition, in the shape of metav1.Condition."""

    type: ConditionType = Field(description="Ready, Active, Degraded, Paused or SpecValid.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field("", description="One CamelCase word for machines, e.g. ProbeFailed.")
    message: str = Field("", description="What happened, for humans.")
    last_transition_time: str | None = Field(
        None, description="RFC 3339 time the status last changed (not when it was last checked)."
    )


class JobQueueStatus(_StatusModel):
    """What the operator last observed and decided."""

    observed_generation: int | None = Field(None, description="metadata.generation the status describes.")
    waiting: int | None = Field(None, description="Jobs ready to run.")
    delayed: int | None = Field(None, description="Jobs delayed or waiting for a retry.")
    active: int | None = Field(None, description="Jobs running.")
    dead: int | None = Field(None, description="Jobs in the dead-letter set.")
    oldest_age_seconds: float | None = Field(None, description="Seconds the oldest ready job has waited.")
    throughput: float | None = Field(None, description="Finished attempts per second (smoothed).")
    replicas: int | None = Field(None, description="Replicas of the worker Deployment.")
    desired_replicas: int | None = Field(None, description="Replicas the scaling policy asks for.")
    last_scale_time: str | None = Field(None, description="RFC 3339 time replicas were last changed.")
    last_decision: str | None = Field(None, description="Why the policy chose desiredReplicas, for humans.")
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready, Active, Degraded, Paused and SpecValid, one entry per type.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    policy: dict[str, Any] | None = Field(
        None,
        description="The scaling policy's remembered state (rates, windows, cooldown), kept across restarts.",
        json_schema_extra={"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    )

    def condition(self, kind: ConditionType) -> Condition | None:
        """The condition of this type, if set."""
        return next((c for c in self.conditions if c.type == kind), None)


def parse_status(body: Mapping[str, Any]) -> JobQueueStatus:
    """The object's status; an unreadable status (say, from an older operator) reads as empty."""
    try:
        return JobQueueStatus.model_validate(body.get("status") or {})
    except ValidationError:
        return JobQueueStatus()


def set_condition(conditions: list[Condition], new: Condition, now: str) -> list[Condition]:
    """Conditions with ``new`` merged in; lastTransitionTime moves only when the status changes."""
    old = next((c for c in conditions if c.type == new.type), None)
    changed = old is None or old.status != new.status
    stamp = now if changed or old is None else old.last_transition_time
    merged = new.model_copy(update={"last_transition_time": stamp})
    return [c for c in conditions if c.type != new.type] + [merged]
