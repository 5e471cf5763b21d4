"""The fields of a job hash and of a queue's counters hash, listed once with what each holds.

The Lua scripts write these names; Python reads them (``job.Job.from_hash``). A new job's hash is
written by one include, ``lua/include/store_job.lua``, used by both enqueue scripts; the
transition test checks that every field a script leaves in a job hash is listed here.
"""

from __future__ import annotations

import enum


class JobField(enum.StrEnum):
    """Fields of ``jq:{queue}:job:<id>``. Times are ms on the Redis server's clock."""

    NAME = "name"  # the handler's name
    PAYLOAD = "payload"  # JSON text
    STATE = "state"  # a states.JobState value
    SCORE = "score"  # the waiting score: (priority + offset) * 2^32 + seq, kept for re-queueing
    OPTS = "opts"  # the job's options as one JSON object (options.JobOptions), written once
    CREATED_AT = "created_at"
    READY_AT = "ready_at"  # when it became ready, if not at created_at (delay, retry, hand-back)
    EXPIRES_AT = "expires_at"  # created_at + TTL, only with a TTL: not started by then, it expires
    ATTEMPTS_MADE = "attempts_made"  # attempts started (a handed-back attempt is not counted)
    TOKEN = "token"  # "<worker id>:<attempt>.<stalls>" while active: the lease holder's proof
    STALLS = "stalls"  # times its worker was lost while running it (a lease expired); >0: runs alone
    WORKER = "worker"  # id of the worker that claimed it last
    STARTED_AT = "started_at"  # the last claim; its presence means the job has started once
    FINISHED_AT = "finished_at"  # when it became completed, dead or expired
    PROGRESS = "progress"  # JSON, from JobContext.set_progress
    RESULT = "result"  # JSON, the handler's return value
    ERROR = "error"  # the last failed attempt's "<type>: <message>"
    TRACEBACK = "traceback"  # the last failed attempt's traceback


class CounterField(enum.StrEnum):
    """Fields of ``jq:{queue}:counters``: monotonic totals the probe reads (rates, throughput)."""

    ENQUEUED = "enqueued"  # jobs created
    COMPLETED = "completed"  # attempts that completed
    FAILED = "failed"  # attempts that failed (retried or not)
    RETRIED = "retried"  # failed attempts with a retry scheduled
    DEAD = "dead"  # jobs moved to the dead-letter set
    EXPIRED = "expired"  # jobs dropped because their TTL ran out before they started
    STALLED = "stalled"  # jobs recovered from expired leases
    REPLAYED = "replayed"  # dead jobs replayed
