"""The ``status`` of a JobQueue: its fields, its conditions and their reasons, and the Events about it.

| condition     | ``True`` means                                                          |
| ------------- | ----------------------------------------------------------------------- |
| ``Ready``     | the queue was probed and the Deployment's pods are ready (``readiness``) |
| ``Active``    | there is work (waiting or running jobs) or replicas above zero          |
| ``Degraded``  | probes fail or the Deployment cannot be scaled                          |
| ``Paused``    | scaling is paused by the spec or the ``jobqueue.dev/paused`` annotation |
| ``SpecValid`` | the spec passed every check; ``False`` leaves replicas untouched        |
| ``FlowControlled`` | the queue's claims are paused, rate limited or capped (its message  |
|               | says by what, and whether that is why the oldest job is over its target) |

Their reasons are the members of ``Reason``, grouped by condition (as KEDA's condition_types.go
keeps them). Bad news (``problems``) is ``Degraded=True``, ``SpecValid=False`` and ``Ready=False``
with ``WorkersNotReady``: each new one is posted as a Warning Event with the condition's reason
(a new WorkersNotReady only when it starts, not each time the count of ready pods in its message
moves). Everything here is pure: it maps what a
scaling pass saw and did to the status merge patch, the conditions and Event bodies; the control
loop writes them.

``policy`` holds ``policy.PolicyState.to_dict()``, so an operator restart resumes its rates, windows
and cooldown instead of starting blind.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from jobqueue_operator import flow_bounds, policy, scaling_pass, spec
from worker_runtime.observation import QueueObservation

Body = dict[str, Any]


class ConditionType(StrEnum):
    READY = "Ready"
    ACTIVE = "Active"
    DEGRADED = "Degraded"
    PAUSED = "Paused"
    SPEC_VALID = "SpecValid"
    FLOW_CONTROLLED = "FlowControlled"


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Reason(StrEnum):
    """Every reason the operator writes on a condition (one CamelCase word, for machines)."""

    # SpecValid: INVALID_SPEC is the operator's own check, DEPLOYMENT_REJECTED the API server's
    # answer to the Deployment built from the template, CONFLICT another owner of what it needs
    VALID = "Valid"
    INVALID_SPEC = "InvalidSpec"
    DEPLOYMENT_REJECTED = "DeploymentRejected"
    CONFLICT = "Conflict"
    # Degraded: AS_EXPECTED when False; the others say what is wrong, and are Warning Events too
    AS_EXPECTED = "AsExpected"
    PROBE_FAILED = "ProbeFailed"
    SECRET_NOT_FOUND = "SecretNotFound"
    SECRET_KEY_NOT_FOUND = "SecretKeyNotFound"
    SECRET_KEY_INVALID = "SecretKeyInvalid"
    DEPLOYMENT_NOT_FOUND = "DeploymentNotFound"
    CONFLICTING_HPA = "ConflictingHPA"
    # Ready: SCALED when True, else WORKERS_NOT_READY, the Degraded or SpecValid reason, NOT_PROBED
    SCALED = "Scaled"
    NOT_PROBED = "NotProbed"
    WORKERS_NOT_READY = "WorkersNotReady"
    # Active
    HAS_WORK = "HasWork"
    HAS_REPLICAS = "HasReplicas"
    IDLE = "Idle"
    # Paused
    PAUSED_BY_ANNOTATION = "PausedByAnnotation"
    PAUSED_BY_SPEC = "PausedBySpec"
    NOT_PAUSED = "NotPaused"
    # FlowControlled: the strongest control configured (pause, then rate limit, then cap)
    CLAIMS_PAUSED = "ClaimsPaused"
    RATE_LIMITED = "RateLimited"
    RUNNING_CAPPED = "RunningCapped"
    NOT_LIMITED = "NotLimited"


class EventType(StrEnum):
    NORMAL = "Normal"
    WARNING = "Warning"


class EventReason(StrEnum):
    """Reasons of the Normal Events (a Warning carries the ``Reason`` of its condition)."""

    WORKERS_CREATED = "WorkersCreated"
    WORKERS_UPDATED = "WorkersUpdated"
    SCALED_UP = "ScaledUp"
    SCALED_DOWN = "ScaledDown"
    BREAKER_OPENED = "BreakerOpened"  # a Warning: the downstream of a job name keeps failing
    BREAKER_CLOSED = "BreakerClosed"


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a JobQueue is degraded: a condition reason and what to fix, for humans."""

    reason: Reason
    message: str


class _StatusModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class Condition(_StatusModel):
    """One condition, in the shape of metav1.Condition."""

    type: ConditionType = Field(description="Ready, Active, Degraded, Paused, SpecValid or FlowControlled.")
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
    replicas: int | None = Field(
        None, description="Pods of the worker Deployment (its status.replicas), whatever their state."
    )
    ready_replicas: int | None = Field(None, description="Pods of the worker Deployment that are ready.")
    available_replicas: int | None = Field(
        None, description="Pods ready for at least the Deployment's minReadySeconds."
    )
    desired_replicas: int | None = Field(None, description="Replicas the scaling policy asks for.")
    last_scale_time: str | None = Field(None, description="RFC 3339 time replicas were last changed.")
    last_decision: str | None = Field(None, description="Why the policy chose desiredReplicas, for humans.")
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready, Active, Degraded, Paused, SpecValid and FlowControlled, one entry per type.",
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


def rfc3339(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------- conditions


def condition(kind: ConditionType, true: bool, reason: Reason, message: str = "") -> Condition:
    state = ConditionStatus.TRUE if true else ConditionStatus.FALSE
    return Condition(type=kind, status=state, reason=reason, message=message)


def set_condition(conditions: list[Condition], new: Condition, now: str) -> list[Condition]:
    """Conditions with ``new`` merged in; lastTransitionTime moves only when the status changes."""
    old = next((c for c in conditions if c.type == new.type), None)
    changed = old is None or old.status != new.status
    stamp = now if changed or old is None else old.last_transition_time
    merged = new.model_copy(update={"last_transition_time": stamp})
    return [c for c in conditions if c.type != new.type] + [merged]


def merge_conditions(
    current: Iterable[Condition], updates: Iterable[Condition], timestamp: float
) -> list[Condition]:
    """``current`` with ``updates`` merged in (lastTransitionTime moves only on a status change)."""
    merged = list(current)
    now = rfc3339(timestamp)
    for new in updates:
        old = next((c for c in merged if c.type == new.type), None)
        if old is not None and (old.status, old.reason, old.message) == (new.status, new.reason, new.message):
            continue
        merged = set_condition(merged, new, now)
    order = list(ConditionType)
    return sorted(merged, key=lambda c: order.index(c.type))


def paused_condition(paused_by: spec.PausedBy | None) -> Condition:
    """The Paused condition for what ``spec.paused_by`` found."""
    if paused_by is spec.PausedBy.ANNOTATION:
        message = f"{spec.PAUSED_ANNOTATION} is true"
        return condition(ConditionType.PAUSED, True, Reason.PAUSED_BY_ANNOTATION, message)
    if paused_by is spec.PausedBy.SPEC:
        return condition(ConditionType.PAUSED, True, Reason.PAUSED_BY_SPEC, "spec.scaling.paused is true")
    return condition(ConditionType.PAUSED, False, Reason.NOT_PAUSED)


def spec_invalid_conditions(error: spec.SpecError) -> list[Condition]:
    message = "; ".join(f"{path}: {reason}" for path, reason in error.errors)
    return refused_conditions(Problem(Reason.INVALID_SPEC, message))


def refused_conditions(problem: Problem) -> list[Condition]:
    """SpecValid=False (and Ready=False) for a JobQueue the operator will not act on."""
    return [
        condition(ConditionType.SPEC_VALID, False, problem.reason, problem.message),
        condition(ConditionType.READY, False, problem.reason, "replicas are left untouched"),
    ]


def degraded_condition(problem: Problem) -> Condition:
    return condition(ConditionType.DEGRADED, True, problem.reason, problem.message)


def pass_conditions(
    result: scaling_pass.PassResult,
    degraded: Problem | None,
    not_ready: str | None = None,
    *,
    age_target: float | None = None,
) -> list[Condition]:
    """SpecValid, Degraded, Ready, Active and (probed) FlowControlled after a scaling pass;
    ``not_ready`` is the message of ``readiness.not_ready`` (Ready=False, WorkersNotReady) when the
    workers are short for too long; ``age_target`` the spec's maxOldestAge."""
    obs = result.observation
    has_work = obs is not None and (obs.backlog + obs.delayed) > 0
    replicas = result.decision.desired
    if degraded is not None:
        ready = condition(ConditionType.READY, False, degraded.reason)
    elif obs is None:
        ready = condition(ConditionType.READY, False, Reason.NOT_PROBED)
    elif not_ready is not None:
        ready = condition(ConditionType.READY, False, Reason.WORKERS_NOT_READY, not_ready)
    else:
        ready = condition(ConditionType.READY, True, Reason.SCALED, _ready_message(result, replicas))
    return [
        condition(ConditionType.SPEC_VALID, True, Reason.VALID),
        degraded_condition(degraded)
        if degraded
        else condition(ConditionType.DEGRADED, False, Reason.AS_EXPECTED),
        ready,
        condition(ConditionType.ACTIVE, has_work or replicas > 0, _activity(has_work, replicas)),
        *([] if obs is None else [flow_condition(obs, result.decision, age_target)]),
    ]


def flow_condition(obs: QueueObservation, decision: policy.Decision, age_target: float | None) -> Condition:
    """FlowControlled: what holds the queue's claims, and what that does to the replicas and the
    oldest job's age (a backlog a rate limit holds is no reason to scale)."""
    config = obs.flow
    parts = []
    if config.paused:
        parts.append("claims paused")
    if config.rate_limit is not None:
        rate = config.rate_limit
        parts.append(f"rate limit {rate.jobs}/{rate.seconds:g}s ({obs.rate_used} started in this window)")
    if config.max_running is not None:
        parts.append(f"maxRunning {config.max_running} ({obs.active} running)")
    if not parts:
        return condition(ConditionType.FLOW_CONTROLLED, False, Reason.NOT_LIMITED)
    if decision.kind in _FLOW_KINDS:
        parts.append(f"replicas held at {decision.desired}")
    held = flow_bounds.age_held(obs, age_target)
    if held:
        parts.append(held)
    if config.paused:
        reason = Reason.CLAIMS_PAUSED
    else:
        reason = Reason.RATE_LIMITED if config.rate_limit is not None else Reason.RUNNING_CAPPED
    return condition(ConditionType.FLOW_CONTROLLED, True, reason, "; ".join(parts))


_FLOW_KINDS = {
    policy.DecisionKind.CLAIMS_PAUSED,
    policy.DecisionKind.RATE_LIMITED,
    policy.DecisionKind.CAPPED,
}


def _ready_message(result: scaling_pass.PassResult, replicas: int) -> str:
    if result.replicas is None or not result.replicas.reported:
        return f"{replicas} replicas"
    return f"{result.replicas.ready} of {result.replicas.asked} replicas ready"


def _activity(has_work: bool, replicas: int) -> Reason:
    if has_work:
        return Reason.HAS_WORK
    return Reason.HAS_REPLICAS if replicas > 0 else Reason.IDLE


def dump_conditions(conditions: Iterable[Condition]) -> list[Body]:
    return [c.model_dump(by_alias=True, mode="json") for c in conditions]


def problems(conditions: Iterable[Condition]) -> dict[ConditionType, tuple[str, str]]:
    """Conditions that are bad news, as (reason, message) by type: Degraded=True, SpecValid=False,
    and Ready=False for WorkersNotReady (its other reasons repeat those of the first two)."""
    bad = {ConditionType.DEGRADED: ConditionStatus.TRUE, ConditionType.SPEC_VALID: ConditionStatus.FALSE}
    found = {c.type: (c.reason, c.message) for c in conditions if bad.get(c.type) == c.status}
    for c in conditions:
        if c.type == ConditionType.READY and c.reason == Reason.WORKERS_NOT_READY:
            found[c.type] = (c.reason, c.message)
    return found


def new_problems(old: Iterable[Condition], new: Iterable[Condition]) -> list[tuple[str, str]]:
    """(reason, message) of each problem in ``new`` that ``old`` did not have in those words (for
    WorkersNotReady: that ``old`` did not have at all)."""
    before = problems(old)
    return [
        found
        for kind, found in problems(new).items()
        if before.get(kind) != found
        and not (kind == ConditionType.READY and before.get(kind, ("",))[0] == found[0])
    ]


# ---------------------------------------------------------------------------- status fields


def pass_status(result: scaling_pass.PassResult, generation: int | None, now: float) -> Body:
    """Status fields (conditions and policy aside) after a scaling pass."""
    fields: Body = {
        "observedGeneration": generation,
        "desiredReplicas": result.decision.desired,
        "lastDecision": result.decision.reason,
    }
    replicas = result.replicas
    if replicas is not None:
        fields |= {
            "replicas": replicas.current,
            "readyReplicas": replicas.ready,
            "availableReplicas": replicas.available,
        }
    obs = result.observation
    if obs is not None:
        fields |= {
            "waiting": obs.waiting,
            "delayed": obs.delayed + obs.retrying,
            "active": obs.active,
            "dead": obs.dead,
            "oldestAgeSeconds": round(obs.oldest_ready_age_s, 1),
        }
    throughput = result.decision.state.throughput
    fields["throughput"] = None if throughput is None else round(throughput, 3)
    if result.scaled:
        fields["lastScaleTime"] = rfc3339(now)
    return fields


def status_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> Body:
    """The keys of ``new`` whose values differ from ``old`` (a merge patch of the status)."""
    return {key: value for key, value in new.items() if old.get(key) != value}


# ---------------------------------------------------------------------------- Events


def event(reference: Mapping[str, str], kind: str, reason: str, message: str, timestamp: float) -> Body:
    """A core/v1 Event about ``reference`` (``kind`` is an ``EventType``); the server names it."""
    now = rfc3339(timestamp)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"namespace": reference["namespace"], "generateName": f"{spec.OPERATOR_NAME}-"},
        "involvedObject": dict(reference),
        "type": kind,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": spec.OPERATOR_NAME},
        "reportingComponent": spec.OPERATOR_NAME,
        "reportingInstance": spec.OPERATOR_NAME,
        "action": reason,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
