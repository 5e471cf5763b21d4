"""Worker settings, read from ``JOBQUEUE_*`` environment variables (the operator sets them on pods)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker_runtime import endpoint, keys
from worker_runtime import retention as retention_policy

_KEPT = retention_policy.Retention()


class RetrySettings(BaseSettings):
    """Defaults for jobs enqueued without their own retry options."""

    # No float setting means anything as infinity or NaN (pydantic accepts "inf" by default).
    model_config = SettingsConfigDict(env_prefix="JOBQUEUE_", extra="ignore", allow_inf_nan=False)

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
        le=keys.MAX_TIMEOUT_SECONDS,
        description="Seconds a job may run before it is cancelled and counts as a failed attempt.",
    )


class RedisTlsSettings(BaseSettings):
    """TLS towards Redis (``JOBQUEUE_REDIS_TLS*``; on Kubernetes, files mounted from Secrets)."""

    model_config = SettingsConfigDict(env_prefix="JOBQUEUE_", extra="ignore")

    redis_tls: bool = Field(False, description="TLS towards Redis for a redis:// URL (rediss:// always is).")
    redis_tls_ca_file: str = Field("", description="CA certificate (a PEM file) that signed Redis' one.")
    redis_tls_cert_file: str = Field("", description="Client certificate (PEM file), for mutual TLS.")
    redis_tls_key_file: str = Field("", description="Key of the client certificate (PEM file).")
    redis_tls_insecure_skip_verify: bool = Field(
        False, description="Accept any certificate from Redis (test setups only)."
    )

    def redis_tls_options(self) -> endpoint.TlsOptions:
        """The TLS options of ``connection.connect`` from the ``JOBQUEUE_REDIS_TLS*`` settings."""
        return endpoint.TlsOptions(
            enabled=self.redis_tls,
            ca_file=self.redis_tls_ca_file,
            cert_file=self.redis_tls_cert_file,
            key_file=self.redis_tls_key_file,
            insecure_skip_verify=self.redis_tls_insecure_skip_verify,
        )


class WorkerSettings(RetrySettings, RedisTlsSettings):
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
    max_stalls_alone: int = Field(
        2,
        ge=1,
        le=100,
        description="Times a job's worker may be lost (killed, or hung past the lease) while the job "
        "runs alone before the job is dead-lettered as what kills it. A job recovered from a lost "
        "worker runs alone from then on; 2 keeps a random kill of a healthy worker from convicting it.",
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
        _KEPT.completed.count,
        ge=0,
        le=retention_policy.MAX_KEEP_COUNT,
        description="Completed jobs kept for lookup, the newest; older ones are deleted as new ones finish.",
    )
    keep_completed_seconds: float = Field(
        _KEPT.completed.seconds,
        ge=0,
        le=retention_policy.MAX_KEEP_SECONDS,
        description="Seconds a completed job is kept for lookup (a day by default); deleted after.",
    )
    keep_dead: int = Field(
        _KEPT.dead.count,
        ge=0,
        le=retention_policy.MAX_KEEP_COUNT,
        description="Dead-lettered jobs kept, the newest; older ones are deleted as new ones die, "
        "so a dead-letter set nobody purges stays bounded.",
    )
    keep_dead_seconds: float = Field(
        _KEPT.dead.seconds,
        ge=0,
        le=retention_policy.MAX_KEEP_SECONDS,
        description="Seconds a dead-lettered job is kept for inspection and replay (a week by default).",
    )
    keep_expired: int = Field(
        1000,
        ge=0,
        description="Jobs dropped by their TTL kept for lookup; older ones are deleted as new ones expire.",
    )

    def retention(self) -> retention_policy.Retention:
        """The retention of completed and dead jobs these settings ask for."""
        return retention_policy.Retention(
            completed=retention_policy.Keep(self.keep_completed, self.keep_completed_seconds),
            dead=retention_policy.Keep(self.keep_dead, self.keep_dead_seconds),
        )
