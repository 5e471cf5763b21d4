"""Worker settings, read from ``JOBQUEUE_*`` environment variables (the operator sets them on pods)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker_runtime import keys


class RetrySettings(BaseSettings):
    """Defaults for jobs enqueued without their own retry options."""

    model_config = SettingsConfigDict(env_prefix="JOBQUEUE_", extra="ignore")

    default_attempts: int = Field(
        3, ge=1, le=1000, description="Attempts per job, the first included; 3 rides out a blip."
    )
    backoff_base_seconds: float = Field(
        1.0, ge=0, description="Seconds before the first retry; each next retry doubles it (with jitter)."
    )
    backoff_cap_seconds: float = Field(
        300.0,
        ge=0,
        description="Upper bound of one retry delay in seconds, so retries never stall for hours.",
    )
    default_timeout_seconds: float = Field(
        300.0,
        gt=0,
        description="Seconds a job may run before it is cancelled and counts as a failed attempt.",
    )


class WorkerSettings(RetrySettings):
    """How one worker process runs; every field maps to ``JOBQUEUE_<FIELD>``."""

    redis_url: str = Field("redis://localhost:6379/0", description="Redis URL (from a Secret on Kubernetes).")
    queue: str = Field("default", description="Name of the queue this worker serves.")
    concurrency: int = Field(10, ge=1, le=10_000, description="Jobs run at once by this process.")
    metrics_port: int = Field(
        9100, ge=0, le=65535, description="Port of /metrics and /healthz; 0 disables the server."
    )
    lease_seconds: float = Field(
        30.0, gt=0, description="Lease of a claimed job; extended every third of it while the job runs."
    )
    heartbeat_seconds: float = Field(
        2.0,
        gt=0,
        description="How often the worker reports its in-flight count (and extends leases); "
        "the operator reads it to remove idle pods first.",
    )
    stalled_interval_seconds: float = Field(
        10.0, gt=0, description="How often one elected worker recovers jobs whose lease expired."
    )
    grace_period_seconds: float = Field(
        25.0,
        ge=0,
        description="On SIGTERM, seconds in-flight jobs may finish before they are handed back; "
        "below Kubernetes' default terminationGracePeriodSeconds of 30.",
    )
    pod_name: str = Field("", description="Pod name (downward API) so the operator can tell busy pods apart.")
    max_payload_bytes: int = Field(
        keys.DEFAULT_MAX_PAYLOAD_BYTES,
        ge=1,
        description="Largest JSON payload accepted at enqueue, in bytes.",
    )
    keep_completed: int = Field(
        1000, ge=0, description="Completed jobs kept for lookup; older ones are deleted as new ones finish."
    )
