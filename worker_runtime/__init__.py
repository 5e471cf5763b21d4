"""jobqueue worker runtime: the producer (``Queue``), the ``Worker`` and the Redis data model."""

from worker_runtime.app import App, JobContext, JobDefinition
from worker_runtime.backoff import Backoff
from worker_runtime.connection import connect, connect_sync
from worker_runtime.endpoint import TlsOptions
from worker_runtime.errors import (
    ConfigurationError,
    EnqueueError,
    EnqueueTimeout,
    JobNotFound,
    JobQueueError,
    NotReplicated,
    PayloadError,
    Permanent,
    RateLimited,
    RedisUnavailable,
    UnknownJobError,
)
from worker_runtime.job import EnqueuedJob, Job
from worker_runtime.observation import QueueObservation, WorkerHeartbeat
from worker_runtime.options import JobSpec
from worker_runtime.probe import probe_queues
from worker_runtime.queue import Queue, QueueStats, SyncQueue
from worker_runtime.replies import Ack, FailOutcome, Recovery, ReplayOutcome
from worker_runtime.settings import RetrySettings, WorkerSettings
from worker_runtime.states import JobState
from worker_runtime.worker import Worker

__all__ = [
    "Ack",
    "App",
    "Backoff",
    "ConfigurationError",
    "EnqueueError",
    "EnqueueTimeout",
    "EnqueuedJob",
    "FailOutcome",
    "Job",
    "JobContext",
    "JobDefinition",
    "JobNotFound",
    "JobQueueError",
    "JobSpec",
    "JobState",
    "NotReplicated",
    "PayloadError",
    "Permanent",
    "Queue",
    "QueueObservation",
    "QueueStats",
    "RateLimited",
    "Recovery",
    "RedisUnavailable",
    "ReplayOutcome",
    "RetrySettings",
    "SyncQueue",
    "TlsOptions",
    "UnknownJobError",
    "Worker",
    "WorkerHeartbeat",
    "WorkerSettings",
    "connect",
    "connect_sync",
    "probe_queues",
]
