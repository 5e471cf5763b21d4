"""jobqueue worker runtime: the producer (``Queue``), the ``Worker`` and the Redis data model."""

from worker_runtime.app import App, JobContext, JobDefinition
from worker_runtime.backoff import Backoff
from worker_runtime.connection import connect, connect_sync
from worker_runtime.errors import (
    EnqueueError,
    JobNotFound,
    JobQueueError,
    PayloadError,
    Permanent,
    UnknownJobError,
)
from worker_runtime.job import EnqueuedJob, Job, JobState, QueueStats
from worker_runtime.observation import QueueObservation, WorkerHeartbeat
from worker_runtime.probe import probe_queues, probe_queues_sync
from worker_runtime.queue import JobSpec, Queue, SyncQueue
from worker_runtime.settings import RetrySettings, WorkerSettings
from worker_runtime.worker import Worker

__all__ = [
    "App",
    "Backoff",
    "EnqueueError",
    "EnqueuedJob",
    "Job",
    "JobContext",
    "JobDefinition",
    "JobNotFound",
    "JobQueueError",
    "JobSpec",
    "JobState",
    "PayloadError",
    "Permanent",
    "Queue",
    "QueueObservation",
    "QueueStats",
    "RetrySettings",
    "SyncQueue",
    "UnknownJobError",
    "Worker",
    "WorkerHeartbeat",
    "WorkerSettings",
    "connect",
    "connect_sync",
    "probe_queues",
    "probe_queues_sync",
]
