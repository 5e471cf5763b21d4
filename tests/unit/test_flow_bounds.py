"""Flow control as the operator sees it: the bounds on the replicas (``flow_bounds``), the fields it
writes from ``spec.flow`` (``flow_spec``, ``flow_sync.changes``), the FlowControlled condition."""

from __future__ import annotations

from jobqueue_operator import flow_bounds, flow_spec, flow_sync, policy, rates, spec, status
from jobqueue_operator.scaling_pass import PassResult

from worker_runtime.flow import FlowConfig, FlowField, RateLimit
from worker_runtime.observation import QueueObservation

MEASURED = rates.Rates(busy=2.0, finish_rate=1.0)  # 2 s per job


def observe(**fields: object) -> QueueObservation:
    return QueueObservation(queue="q", observed_at_ms=0, **fields)  # type: ignore[arg-type]


def test_the_tightest_bound_binds() -> None:
    config = FlowConfig(rate_limit=RateLimit(50, 1.0), max_running=40)
    found = flow_bounds.bound(observe(flow=config), flow_spec.FlowSpec(), MEASURED, 10, 3)
    # The rate limit: 50/s x 2 s / 10 per pod = 10 pods; the cap: 40 / 10 = 4 pods.
    assert found == flow_bounds.Bound(flow_bounds.Limit.CAPPED, 4, "maxRunning 40 / concurrency 10 = 4 pods")
    rate_only = observe(flow=FlowConfig(rate_limit=RateLimit(50, 1.0)))
    only_rate = flow_bounds.bound(rate_only, flow_spec.FlowSpec(), MEASURED, 10, 3)
    assert only_rate is not None and (only_rate.limit, only_rate.replicas) == (
        flow_bounds.Limit.RATE_LIMITED,
        10,
    )


def test_a_rate_limit_bounds_nothing_before_the_service_time_is_known() -> None:
    config = FlowConfig(rate_limit=RateLimit(50, 1.0))
    assert flow_bounds.bound(observe(flow=config), flow_spec.FlowSpec(), rates.Rates(), 10, 3) is None


def test_a_group_rate_limit_bounds_no_replicas() -> None:
    # The groups are unknown, so no total rate follows from it; what it holds is left out of the need.
    config = FlowConfig(group_rate_limit=RateLimit(1, 1.0))
    held = observe(flow=config, waiting=500, group_held=500)
    assert flow_bounds.bound(held, flow_spec.FlowSpec(), MEASURED, 10, 3) is None
    assert not flow_bounds.limits_hold(held, "steady")


def test_while_paused_zero_scales_the_paused_queue_to_zero() -> None:
    scaling = spec.ScalingSpec.model_validate({"maxReplicas": 20, "targets": {"backlogPerReplica": 5}})
    paused = observe(waiting=500, flow=FlowConfig(paused=True))
    zero = flow_spec.FlowSpec(while_paused="Zero")
    d = policy.decide(scaling, paused, 4, policy.PolicyState(), 0.0, paused=False, concurrency=10, flow=zero)
    assert (d.desired, d.kind) == (0, policy.DecisionKind.CLAIMS_PAUSED), d.reason
    assert d.reason.startswith("4 -> 0, claims paused (whilePaused Zero)")
    kept = policy.decide(scaling, paused, 4, policy.PolicyState(), 0.0, paused=False, concurrency=10)
    assert (kept.desired, kept.kind) == (4, policy.DecisionKind.CLAIMS_PAUSED), kept.reason


def test_flow_decision_kinds_are_the_limits_names() -> None:
    # member_pass reads a decision's kind as a flow_bounds.Limit (the gauge of held backlogs).
    kinds = {k.value for k in policy.DecisionKind}
    assert {limit.value for limit in flow_bounds.Limit} <= kinds


def test_a_held_backlog_is_told_apart_from_a_slow_fleet() -> None:
    limited = FlowConfig(rate_limit=RateLimit(10, 1.0))
    over = observe(waiting=900, oldest_ready_age_s=95.0, flow=limited, rate_used=10)
    assert flow_bounds.limits_hold(over, "steady")
    assert "over maxOldestAge 60s, because the rate limit 10/1s holds the queue" in flow_bounds.age_held(
        over, 60
    )
    unlimited = observe(waiting=900, oldest_ready_age_s=95.0)
    assert not flow_bounds.limits_hold(unlimited, "steady") and flow_bounds.age_held(unlimited, 60) == ""
    window_left = observe(waiting=900, oldest_ready_age_s=95.0, flow=limited, rate_used=3)
    assert not flow_bounds.limits_hold(window_left, "scale_up_age")
    assert flow_bounds.limits_hold(window_left, "rate_limited")


def test_the_operator_writes_only_what_the_spec_sets_and_redis_lacks() -> None:
    wanted = flow_spec.FlowSpec.model_validate(
        {"claimsPaused": True, "rateLimit": {"jobs": 50, "seconds": 2}}
    )
    assert flow_sync.changes(wanted, FlowConfig()) == {
        FlowField.PAUSED: "1",
        FlowField.RATE_JOBS: "50",
        FlowField.RATE_MS: "2000",
    }
    # A cap set through the CLI is not the spec's business; what Redis holds already is not rewritten.
    assert flow_sync.changes(wanted, FlowConfig(True, RateLimit(50, 2.0), max_running=3)) == {}
    grouped = flow_spec.FlowSpec.model_validate({"groupRateLimit": {"jobs": 10, "seconds": 0.5}})
    assert flow_sync.changes(grouped, FlowConfig()) == {
        FlowField.GROUP_RATE_JOBS: "10",
        FlowField.GROUP_RATE_MS: "500",
    }
    assert flow_sync.changes(grouped, FlowConfig(group_rate_limit=RateLimit(10, 0.5))) == {}
    resumed = flow_spec.FlowSpec.model_validate({"claimsPaused": False})
    assert flow_sync.changes(resumed, FlowConfig(paused=True)) == {FlowField.PAUSED: ""}


def test_the_flow_controlled_condition_says_what_holds_the_queue() -> None:
    config = FlowConfig(rate_limit=RateLimit(10, 1.0))
    obs = observe(waiting=900, oldest_ready_age_s=95.0, flow=config, rate_used=10)
    state = policy.PolicyState()
    held = policy.Decision(2, "r", state, policy.Direction.NONE, 5, policy.DecisionKind.RATE_LIMITED, 5.0)
    found = status.flow_condition(obs, held, 60)
    assert (found.status, found.reason) == ("True", status.Reason.RATE_LIMITED)
    assert "replicas held at 2" in found.message and "over maxOldestAge 60s" in found.message
    free = status.flow_condition(observe(), held, 60)
    assert (free.status, free.reason) == ("False", status.Reason.NOT_LIMITED)
    conditions = status.pass_conditions(PassResult(obs, 2, held), None, age_target=60)
    assert status.ConditionType.FLOW_CONTROLLED in {c.type for c in conditions}
