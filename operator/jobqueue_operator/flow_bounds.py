"""What flow control leaves worth scaling for: the most replicas a queue's pause, rate limit or
running cap lets do any work. Pure, for the policy (``policy.decide`` applies the bound).

| flow control          | bound                                                                 |
| --------------------- | --------------------------------------------------------------------- |
| claims paused         | the current count (``whilePaused: Keep``) or 0 (``Zero``)             |
| running cap C         | ceil(C / concurrency): more pods than that would sit idle             |
| rate limit R jobs/s   | ceil(R x service time / concurrency), the pods that start R jobs a    |
|                       | second (Little's law), once the service time is measured              |
| group rate limit      | none: the number of groups is unknown, so it bounds no total rate;    |
|                       | the jobs it holds are left out of the demand instead (``needs``)      |

The tightest one binds. A backlog behind a rate limit is there on purpose: the age target must
not chase it, and ``age_held`` says so for the status and the alert.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from jobqueue_operator import flow_spec, rates
from worker_runtime.observation import QueueObservation


class Limit(enum.StrEnum):
    CLAIMS_PAUSED = "claims_paused"
    RATE_LIMITED = "rate_limited"
    CAPPED = "capped"


@dataclass(frozen=True)
class Bound:
    """At most ``replicas`` are worth having because of ``limit``; ``why`` states its numbers."""

    limit: Limit
    replicas: int
    why: str


def bound(
    obs: QueueObservation,
    flow: flow_spec.FlowSpec,
    measured: rates.Rates,
    concurrency: int,
    current: int,
) -> Bound | None:
    """The tightest bound flow control puts on the replicas, or None when nothing bounds them."""
    config = obs.flow
    if config.paused:
        keep = 0 if flow.while_paused == "Zero" else current
        return Bound(Limit.CLAIMS_PAUSED, keep, f"claims paused (whilePaused {flow.while_paused})")
    found: list[Bound] = []
    if config.max_running is not None:
        pods = math.ceil(config.max_running / concurrency)
        why = f"maxRunning {config.max_running} / concurrency {concurrency} = {pods} pods"
        found.append(Bound(Limit.CAPPED, pods, why))
    service = measured.service_time_s
    limit = config.rate_limit
    if limit is not None and service is not None and service > 0:
        pods = max(1, math.ceil(limit.per_second * service / concurrency - 1e-9))
        why = (
            f"rate limit {limit.jobs}/{limit.seconds:g}s x service time {service:.2f}s / "
            f"concurrency {concurrency} = {pods} pods"
        )
        found.append(Bound(Limit.RATE_LIMITED, pods, why))
    return min(found, key=lambda b: b.replicas) if found else None


def age_held(obs: QueueObservation, age_target: float | None) -> str:
    """Why the oldest job is over the age target on purpose (a rate limit or a cap holds the
    backlog), or "" when it is not over, or not because of flow control."""
    config = obs.flow
    if age_target is None or obs.oldest_ready_age_s <= age_target or obs.ready == 0:
        return ""
    held = []
    if config.rate_limit is not None:
        held.append(f"the rate limit {config.rate_limit.jobs}/{config.rate_limit.seconds:g}s")
    if config.max_running is not None:
        held.append(f"maxRunning {config.max_running}")
    if config.paused:
        held.append("the pause of the claims")
    if not held:
        return ""
    return (
        f"the oldest ready job waited {obs.oldest_ready_age_s:.0f}s, over maxOldestAge {age_target:g}s, "
        f"because {' and '.join(held)} holds the queue"
    )


def limits_hold(obs: QueueObservation, decision_kind: str) -> bool:
    """Whether a rate limit or running cap holds ready jobs back now: the policy stopped at its
    bound, or jobs wait while the window is used up or the cap is full."""
    if decision_kind in (Limit.RATE_LIMITED, Limit.CAPPED):
        return True
    config = obs.flow
    if obs.ready == 0:
        return False
    rate, cap = config.rate_limit, config.max_running
    return (rate is not None and obs.rate_used >= rate.jobs) or (cap is not None and obs.active >= cap)
