"""``spec.flow`` of a JobQueue: flow control of the queue (pause of the claims, a rate limit on job
starts, queue-wide and per group, a cap on jobs running at once) and what the scaling does while
it holds the queue.

The workers enforce flow control from the queue's ``flow`` hash in Redis (``worker_runtime.flow``);
the operator writes there what this section sets, on the first pass after a change and whenever
Redis disagrees (``flow_sync``). A field left out is left to the API and the CLI (``jobqueue pause``,
``jobqueue limit``): the operator neither writes nor clears it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from jobqueue_operator import spec_base
from worker_runtime import flow


class RateLimitSpec(spec_base.KubeModel):
    """At most ``jobs`` job starts per ``seconds`` across every worker of the queue."""

    jobs: int = Field(ge=1, le=flow.MAX_RATE_JOBS, description="Jobs started per window, at most.")
    seconds: float = Field(
        1.0,
        ge=flow.MIN_RATE_SECONDS,
        le=flow.MAX_RATE_SECONDS,
        description="The window in seconds (a fixed window opened by its first start); 1 by default.",
    )

    def limit(self) -> flow.RateLimit:
        return flow.RateLimit(self.jobs, float(self.seconds))


class CircuitBreakerSpec(spec_base.KubeModel):
    """Per job name: ``failures`` failed attempts in a row, or a ``failureRatio`` of failed attempts
    among at least ``minAttempts`` in the last ``windowSeconds``, stop that name's claims for
    ``cooloffSeconds``; then one job tries (half-open), and its success closes the breaker."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.failures) || has(self.failureRatio)",
                    "message": "needs failures (in a row) or failureRatio, or both",
                }
            ]
        }
    )

    failures: int | None = Field(
        None,
        ge=1,
        le=flow.MAX_BREAKER_FAILURES,
        description="Failed attempts in a row that open it. Optional when failureRatio is given.",
    )
    failure_ratio: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Share of failed attempts in the sliding window that opens it (0 < ratio <= 1); "
        "either this or failures, or both.",
    )
    window_seconds: float = Field(
        flow.DEFAULT_BREAKER_WINDOW_SECONDS,
        ge=flow.MIN_BREAKER_WINDOW_SECONDS,
        le=flow.MAX_BREAKER_WINDOW_SECONDS,
        description="The sliding window failureRatio is measured over, in seconds; 60 by default.",
    )
    min_attempts: int = Field(
        flow.DEFAULT_BREAKER_MIN_ATTEMPTS,
        ge=1,
        le=flow.MAX_BREAKER_MIN_ATTEMPTS,
        description="Attempts the window must hold before failureRatio counts; 10 by default.",
    )
    cooloff_seconds: float = Field(
        30.0,
        ge=0.001,
        le=flow.MAX_COOLOFF_SECONDS,
        description="Seconds its jobs are parked before one tries again; 30 by default.",
    )

    @model_validator(mode="after")
    def _a_trigger(self) -> CircuitBreakerSpec:
        if self.failures is None and self.failure_ratio is None:
            raise ValueError("needs failures (in a row) or failureRatio, or both; neither is given")
        return self

    def breaker(self) -> flow.Breaker:
        return flow.Breaker(
            self.failures,
            float(self.cooloff_seconds),
            None if self.failure_ratio is None else float(self.failure_ratio),
            float(self.window_seconds),
            self.min_attempts,
        )


class FlowSpec(spec_base.KubeModel):
    """Flow control of the queue's claims, enforced by the workers, known to the scaling."""

    claims_paused: bool | None = Field(
        None,
        description="Stop the workers claiming jobs: running jobs finish, enqueue still works "
        "(not scaling.paused, which leaves the replicas alone). Absent: left to `jobqueue pause`.",
    )
    rate_limit: RateLimitSpec | None = Field(
        None,
        description="Job starts per window across all workers; the scaling adds no pod the limit "
        "would leave idle. Absent: left to `jobqueue limit --rate`.",
    )
    group_rate_limit: RateLimitSpec | None = Field(
        None,
        description="Job starts per window for each group key given at enqueue (a tenant, an API key): "
        "a group over it waits without holding up the others. It bounds no total rate (the groups are "
        "unknown), so it caps no replicas; the jobs it holds are no reason to scale. Absent: left to "
        "`jobqueue limit --group-rate`.",
    )
    max_running: int | None = Field(
        None,
        ge=0,
        le=flow.MAX_RUNNING,
        description="Jobs running at once across all workers, whatever their concurrency; the scaling "
        "stops at maxRunning / concurrency pods. Absent: left to `jobqueue limit --max-running`.",
    )
    circuit_breaker: CircuitBreakerSpec | None = Field(
        None,
        description="A circuit breaker per job name in front of a failing downstream; its parked jobs "
        "are no reason to scale. Absent: left to `jobqueue limit --breaker`.",
    )
    while_paused: Literal["Keep", "Zero"] = Field(
        "Keep",
        description="Replicas while the claims are paused: Keep holds the count (no scale-up for the "
        "held backlog), Zero scales the workers to zero until the queue is resumed.",
    )

    def written(self) -> dict[str, str]:
        """The ``flow`` hash fields this section sets (``worker_runtime.flow.FlowField``: value,
        "" to delete); the fields it leaves out are not among them."""
        fields = flow.FlowConfig(
            paused=bool(self.claims_paused),
            rate_limit=self.rate_limit.limit() if self.rate_limit else None,
            max_running=self.max_running,
            breaker=self.circuit_breaker.breaker() if self.circuit_breaker else None,
            group_rate_limit=self.group_rate_limit.limit() if self.group_rate_limit else None,
        ).fields()
        chosen: dict[str, str] = {}
        if self.claims_paused is not None:
            chosen[flow.FlowField.PAUSED] = fields[flow.FlowField.PAUSED]
        if self.rate_limit is not None:
            chosen[flow.FlowField.RATE_JOBS] = fields[flow.FlowField.RATE_JOBS]
            chosen[flow.FlowField.RATE_MS] = fields[flow.FlowField.RATE_MS]
        if self.max_running is not None:
            chosen[flow.FlowField.MAX_RUNNING] = fields[flow.FlowField.MAX_RUNNING]
        if self.circuit_breaker is not None:
            chosen.update({name: fields[name] for name in flow.BREAKER_FIELDS})
        if self.group_rate_limit is not None:
            chosen[flow.FlowField.GROUP_RATE_JOBS] = fields[flow.FlowField.GROUP_RATE_JOBS]
            chosen[flow.FlowField.GROUP_RATE_MS] = fields[flow.FlowField.GROUP_RATE_MS]
        return chosen
