"""What the scaling targets ask for: replicas needed now, the steady need the window remembers, and
whether the age target is at risk. Pure, like the policy that calls it. docs/scaling.md, "Targets",
says why each bound is what it is.

| target              | replicas needed                                                             |
| ------------------- | --------------------------------------------------------------------------- |
| in-flight work      | ceil(jobs in flight on serving pods / concurrency)                          |
| backlogPerReplica   | (ready + running) / backlogPerReplica, as KEDA's list scalers               |
| maxOldestAge T      | C / μ, μ = concurrency / service time, C the largest of: Little's law with |
|                     | a standing queue of T/3 allowed (λ while B' <= T/3 x λ, else               |
|                     | (λ + B'/T) / (4/3)); B' / T; and (waiting - served by then) / (0.9 T -     |
|                     | start-up). B' is the backlog projected one start-up ahead, given the pods  |
|                     | that serve now and those still starting                                    |

The age target's λ is the 30 s average, blended towards the confirmed recent rate (both of the last
two intervals) as the projected wait grows past T/3; from T/2 on, or when the oldest job plus a
start-up reaches T, the need is "urgent" and the scaleUp step does not hold it back. When nothing
waits, λ is the lower of the average and the confirmed drop, so a load that has gone is not sized
for. The steady need (what the stabilization window remembers) is λ / μ: the backlog and the
in-flight floor stay out of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from jobqueue_operator import rates, spec
from worker_runtime.observation import QueueObservation

# Slack for ceil() of a float need, so 3.0000000001 replicas reads as 3.
_CEIL_SLACK = 1e-6
# A projected wait past this fraction of maxOldestAge makes the need urgent.
URGENT_FRACTION = 0.5
# Jobs may queue for this fraction of maxOldestAge without capacity being added to work them off: a
# queue that short keeps the fleet busy and the target safe, and draining it would only add pods.
QUEUE_FRACTION = 1 / 3
# Of maxOldestAge, kept in hand when jobs already waiting must start in time: pods start slower
# than the estimate now and then.
MARGIN_FRACTION = 0.1

Driver = Literal["age", "backlog", "in_flight"]


@dataclass(frozen=True)
class Need:
    """The targets' answer for one poll."""

    replicas: float
    steady: float
    floor: int
    driver: Driver
    explanation: str
    in_flight: str
    # Measured from rates (False: the one-slot-per-job guess before a service time is known).
    measured: bool = True
    urgent: bool = False
    urgency: str = ""
    # The age target's: more jobs wait than the ready pods start within one polling interval.
    backlog: bool = False
    # Replicas the jobs in flight on serving pods keep busy now (the floor, before rounding up), and
    # those the arrivals of the last two polling intervals keep busy (the slower of the two).
    busy: float = 0.0
    arriving: float = 0.0
    # The targets ask for more now: always for backlogPerReplica and in-flight work; for the age
    # target only when the queue would outgrow what may wait (or urgently), since a shorter queue
    # costs no pods and keeps the fleet busy. ``calm`` says why it does not press.
    pressing: bool = True
    calm: str = ""
    # backlogPerReplica's need, counted from the queue as it is (None without that target).
    raw: float | None = None


def assess(
    scaling: spec.ScalingSpec,
    obs: QueueObservation,
    measured: rates.Rates,
    ready: int,
    current: int,
    concurrency: int,
    now: float,
) -> Need:
    """The largest of the enabled targets and of what in-flight jobs occupy."""
    # Jobs on draining pods are being finished by those pods: only the rest needs a replica.
    draining = sum(w.inflight for w in obs.workers if w.draining)
    serving = max(0, obs.active - draining)
    floor = math.ceil(serving / concurrency)
    in_flight = f"{serving} jobs in flight on serving pods at {concurrency} per replica need {floor}"
    waiting = ready_jobs(obs)
    service = measured.service_time_s
    per_poll = ready * concurrency / service * scaling.polling_interval if service else ready * concurrency
    backlog = waiting > per_poll
    busy = serving / concurrency
    falling = measured.falling_rate
    arriving = falling * service / concurrency if service and falling is not None else 0.0
    candidates = [Need(float(floor), 0.0, floor, "in_flight", in_flight, in_flight)]
    per = scaling.targets.backlog_per_replica
    if per is not None:
        value = (waiting + obs.active) / per
        text = f"need {value:.2f} = ({waiting} ready + {obs.active} running) / backlogPerReplica {per}"
        candidates.append(Need(value, value, floor, "backlog", text, in_flight))
    target = scaling.targets.max_oldest_age
    if target is not None:
        candidates.append(
            _age(target, obs, measured, ready, current, concurrency, now, floor, in_flight, backlog)
        )
    best = max(candidates, key=lambda need: need.replicas)
    steady = max(need.steady for need in candidates)
    return Need(
        best.replicas,
        steady,
        floor,
        best.driver,
        best.explanation + _group_held(obs),
        in_flight,
        best.measured,
        any(need.urgent for need in candidates),
        next((need.urgency for need in candidates if need.urgent), ""),
        any(need.backlog for need in candidates),
        busy,
        arriving,
        best.pressing,
        best.calm,
        next((need.replicas for need in candidates if need.driver == "backlog"), None),
    )


def _age(
    target: int,
    obs: QueueObservation,
    measured: rates.Rates,
    ready: int,
    current: int,
    concurrency: int,
    now: float,
    floor: int,
    in_flight: str,
    backlog: bool,
) -> Need:
    waiting = ready_jobs(obs)
    service = measured.service_time_s
    if service is None:
        # No job seen finishing yet: give every job a slot, the conservative guess.
        value = (waiting + obs.active) / concurrency
        text = (
            f"need {value:.2f} = ({waiting} ready + {obs.active} running) / {concurrency} slots per replica "
            f"(no job seen finishing yet, so no service time)"
        )
        # A fleet that serves already is not grown on a guess, unless a job is getting old.
        pressing = current == 0 or obs.oldest_ready_age_s >= target / 2
        calm = (
            f"no job seen finishing yet, and the oldest waited {obs.oldest_ready_age_s:.0f}s, under half "
            f"of maxOldestAge {target}s"
        )
        steady = value if pressing else 0.0
        return Need(
            value, steady, floor, "age", text, in_flight, False, backlog=backlog, pressing=pressing, calm=calm
        )
    mu = concurrency / service
    startup = measured.startup_estimate_s
    slow = measured.arrival_rate or 0.0
    rising = measured.rising_rate
    fast = max(slow, rising if rising is not None else slow)
    served = _served(mu, ready, rates.landing_times(measured, ready, current, now), startup)
    capacity = max(current, 1) * mu
    wait = max(0.0, waiting + fast * startup - served) / capacity
    # The longer the confirmed recent rate would make jobs wait by the time a new pod serves, beyond
    # the queue they may form, the more it counts instead of the 30 s average: fully from half of
    # the target on ("urgent").
    weight = min(1.0, max(0.0, wait / target - QUEUE_FRACTION) / (URGENT_FRACTION - QUEUE_FRACTION))
    late = waiting > 0 and obs.oldest_ready_age_s + startup >= target
    urgent = late or weight >= 1.0
    falling = measured.falling_rate
    # Nothing waits: the 30 s average may still carry a load that has gone; a drop seen in both of
    # the last two intervals counts at once.
    quiet = min(slow, falling) if falling is not None else slow
    arrival = quiet if waiting == 0 else fast if late else slow + weight * (fast - slow)
    plan = _capacity(target, startup, arrival, waiting, served, capacity)
    value = plan.rate / mu
    per_replica = f"μ {fmt(mu)}/s per replica ({concurrency} slots / {fmt(service)}s per job)"
    text = f"need {value:.2f} = {plan.text} / {per_replica}"
    urgency = (
        f"the oldest job ({obs.oldest_ready_age_s:.0f}s) plus a start-up ({startup:.0f}s) reaches "
        f"maxOldestAge {target}s"
        if late
        else f"at λ {fmt(fast)}/s jobs would wait {wait:.0f}s by then, over half of maxOldestAge {target}s"
        if urgent
        else ""
    )
    pressing = urgent or plan.pressing
    calm = plan.calm
    # The window remembers the rate both of the last two intervals reached, when that is higher: the
    # 30 s average lags a rise by about its time constant.
    steady = max(arrival, rising if rising is not None and waiting > 0 else 0.0) / mu
    return Need(
        value,
        steady,
        floor,
        "age",
        text,
        in_flight,
        True,
        urgent,
        urgency,
        backlog,
        pressing=pressing,
        calm=calm,
    )


@dataclass(frozen=True)
class _Plan:
    rate: float
    text: str
    pressing: bool
    calm: str


def _capacity(
    target: float, startup: float, arrival: float, waiting: int, served: float, capacity: float
) -> _Plan:
    """Jobs per second the fleet must serve once a pod asked for now is ready, and why.

    Three bounds, the largest wins: Little's law (arrivals plus the projected backlog beyond a standing
    queue of a quarter of T, worked off within T); the newest job of the projected backlog started
    within T (B' / T); and the jobs waiting now, which are already old, started within what is left
    of T after the start-up (a batch enqueued at once needs that one). ``pressing`` when the queue
    would outgrow what the current fleet may let stand, or old jobs would be left when new pods come."""
    projected = max(0.0, waiting + arrival * startup - served)
    # Little's law with a standing queue of QUEUE_FRACTION x T allowed: serve arrivals and work off
    # the rest of the backlog within T, that is C = arrival + (projected - QF x T x C) / T.
    if projected <= QUEUE_FRACTION * target * arrival:
        little = arrival
        little_text = (
            f"(λ {fmt(arrival)}/s; the {fmt(projected)} waiting by a new pod's start-up in {startup:.0f}s "
            f"may queue: less than {QUEUE_FRACTION * target:.1f}s of arrivals)"
        )
    else:
        little = (arrival + projected / target) / (1 + QUEUE_FRACTION)
        little_text = (
            f"(λ {fmt(arrival)}/s + {fmt(projected)} waiting by a new pod's start-up in {startup:.0f}s / "
            f"maxOldestAge {target:g}s) / {fmt(1 + QUEUE_FRACTION)} (a queue of "
            f"{QUEUE_FRACTION * target:.1f}s of the fleet's throughput may stand)"
        )
    newest = projected / target
    left_over = max(0.0, waiting - served)
    # A tenth of T is kept in hand for a pod that starts slower than the estimate.
    remaining = max((1 - MARGIN_FRACTION) * target - startup, 1.0)
    oldest = left_over / remaining
    may_wait = QUEUE_FRACTION * target * capacity
    pressing = projected > may_wait or left_over > 0
    calm = (
        f"the queue stays within what may wait ({fmt(projected)} jobs by a new pod's start-up, under the "
        f"{may_wait:.0f} this fleet starts in {QUEUE_FRACTION * target:.1f}s)"
    )
    if oldest > max(little, newest):
        text = (
            f"({fmt(left_over)} of the {waiting} waiting now left when a new pod is ready in {startup:.0f}s "
            f"/ {fmt(remaining)}s left of maxOldestAge {target:g}s less a tenth)"
        )
        return _Plan(oldest, text, pressing, calm)
    if newest > little:
        text = (
            f"({fmt(projected)} waiting by a new pod's start-up in {startup:.0f}s / maxOldestAge {target:g}s)"
        )
        return _Plan(newest, text, pressing, calm)
    return _Plan(little, little_text, pressing, calm)


def _served(mu: float, ready: int, landing: list[tuple[float, int]], horizon: float) -> float:
    """Jobs the pods serving now and those landing later can start within ``horizon`` seconds."""
    total, t, count = 0.0, 0.0, ready
    for at, pods in landing:
        at = min(at, horizon)
        total += count * (at - t)
        t, count = at, max(count, pods)
    return mu * (total + count * (horizon - t))


def ready_jobs(obs: QueueObservation) -> int:
    """Waiting jobs a worker could start now, counting at least one when a delayed or retried job is
    due (it has an age). Jobs their group's rate limit holds are left out, however many: no number
    of pods starts them sooner (the limit is per group, and the groups are unknown); but held ones
    count as one, since a worker must be up to release them when their window reopens."""
    return max(obs.ready, 1 if obs.oldest_ready_age_s > 0 or obs.group_held > 0 else 0)


def _group_held(obs: QueueObservation) -> str:
    """What the need left out because group rate limits hold it, for the reason."""
    if not obs.group_held:
        return ""
    return (
        f" ({obs.group_held} more waiting jobs held by group rate limits left out: pods would not "
        "start them sooner)"
    )


def fmt(value: float) -> str:
    """A number with three significant digits and no exponent, so a reason's arithmetic can be
    checked to within half a percent."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    return f"{value:.{max(0, 2 - math.floor(math.log10(abs(value))))}f}"


def ceil(value: float) -> int:
    return max(0, math.ceil(value - _CEIL_SLACK))
