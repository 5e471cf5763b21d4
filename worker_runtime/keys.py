"""Every Redis key name of a queue, in one place.

All keys of queue ``name`` start with ``jq:{name}:``; the braces are a Redis Cluster hash tag, so a
queue lives in one slot and every state transition can be one Lua script touching only its keys.

| key                    | type   | what it holds                                                        |
| ---------------------- | ------ | -------------------------------------------------------------------- |
| ``job:<id>``           | hash   | one job: name, payload, state, attempts, timestamps, result, error   |
| ``waiting``            | zset   | ready job ids, score ``(priority + offset) * 2^32 + seq`` (FIFO)     |
| ``ready_since``        | zset   | the same ids, score = ms when the job became ready (oldest age)      |
| ``delayed``            | zset   | jobs enqueued with a delay, score = due time in ms                   |
| ``retry``              | zset   | jobs whose last attempt failed, score = retry due time in ms         |
| ``active``             | zset   | claimed jobs, score = lease expiry in ms                             |
| ``completed``          | zset   | finished jobs kept for lookup, score = finish time in ms             |
| ``dead``               | zset   | the dead-letter set, score = time of death in ms                     |
| ``marker``             | zset   | wake-up marker idle workers block on with BZPOPMIN                   |
| ``seq``                | string | FIFO sequence counter                                                |
| ``counters``           | hash   | monotonic counters: enqueued, completed, failed, retried, dead, ...  |
| ``workers``            | hash   | worker id -> JSON heartbeat (pod, in-flight, concurrency, seen ms)   |
| ``stalled_check``      | string | short-lived lock electing one stalled-job recoverer per interval     |
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "jq"

# Priority bounds: the waiting score packs (priority + PRIORITY_OFFSET) * 2^32 + seq into a double,
# which stays exact below 2^53, so |priority| is capped at about one million.
PRIORITY_MIN = -1_000_000
PRIORITY_MAX = 1_000_000
PRIORITY_OFFSET = 1_000_000

DEFAULT_MAX_PAYLOAD_BYTES = 512 * 1024


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """The key names of one queue; build with ``QueueKeys.for_queue(name)``."""

    name: str
    base: str
    waiting: str
    ready_since: str
    delayed: str
    retry: str
    active: str
    completed: str
    dead: str
    marker: str
    seq: str
    counters: str
    workers: str
    stalled_check: str

    @classmethod
    def for_queue(cls, name: str) -> QueueKeys:
        validate_queue_name(name)
        base = f"{PREFIX}:{{{name}}}:"
        return cls(
            name=name,
            base=base,
            waiting=base + "waiting",
            ready_since=base + "ready_since",
            delayed=base + "delayed",
            retry=base + "retry",
            active=base + "active",
            completed=base + "completed",
            dead=base + "dead",
            marker=base + "marker",
            seq=base + "seq",
            counters=base + "counters",
            workers=base + "workers",
            stalled_check=base + "stalled_check",
        )

    @property
    def job_prefix(self) -> str:
        """Prefix of job hashes; scripts append the job id."""
        return self.base + "job:"

    def job(self, job_id: str) -> str:
        return self.job_prefix + job_id


def validate_queue_name(name: str) -> None:
    """Refuse names that would break the hash tag or key parsing."""
    if not name or len(name) > 200:
        raise ValueError(f"queue name must be 1..200 characters, got {len(name)}")
    bad = set(name) & set("{}: \t\r\n")
    if bad:
        raise ValueError(f"queue name {name!r} contains forbidden characters {sorted(bad)!r}")
