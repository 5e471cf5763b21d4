"""Every Redis key name of a queue, in one place.

All keys of queue ``name`` start with ``jq:{name}:``; the braces are a Redis Cluster hash tag, so a
queue lives in one slot and every state transition can be one Lua script touching only its keys.

Each job state (``states.JobState``) has the sorted set of the same name.

| key                    | type   | what it holds                                                        |
| ---------------------- | ------ | -------------------------------------------------------------------- |
| ``job:<id>``           | hash   | one job: the fields of ``schema.JobField``                           |
| ``waiting``            | zset   | ready job ids, score ``(priority + offset) * 2^32 + seq`` (FIFO)     |
| ``ready_since``        | zset   | the same ids, score = ms when the job became ready (oldest age)      |
| ``delayed``            | zset   | jobs enqueued with a delay, score = due time in ms                   |
| ``retrying``           | zset   | jobs whose last attempt failed, score = retry due time in ms         |
| ``active``             | zset   | claimed jobs, score = lease expiry in ms                             |
| ``completed``          | zset   | finished jobs kept for lookup, score = finish time in ms             |
| ``dead``               | zset   | the dead-letter set, score = time of death in ms                     |
| ``expired``            | zset   | jobs dropped by their TTL, kept for lookup, score = time dropped     |
| ``marker``             | zset   | wake-up marker idle workers block on with BZPOPMIN                   |
| ``seq``                | string | FIFO sequence counter                                                |
| ``counters``           | hash   | monotonic counters (``schema.CounterField``)                         |
| ``workers``            | hash   | worker id -> JSON heartbeat (pod, in-flight, concurrency, seen ms)   |
| ``stalled_check``      | string | short-lived lock electing one stalled-job recoverer per interval     |
| ``suspects``           | zset   | waiting jobs that must run alone (their worker was lost), score as in |
|                        |        | ``waiting``: an index of ``waiting``, like ``ready_since``            |
| ``isolation``          | string | id of the busy worker draining to run a suspect alone (PX one lease) |
| ``flow``               | hash   | flow control (``flow.FlowField``): paused, rate limit, running cap   |
| ``rate``               | string | jobs started in the rate limit's current window (PX the window)      |
| ``unhold``             | zset   | wake-up marker of workers held by flow control (paused, capped)      |
| ``schedules``          | hash   | schedule name -> its definition (JSON, ``schedules.Schedule``)       |
| ``schedule_next``      | zset   | schedule name, score = its next tick in ms (the fence of a fire)     |
| ``breakers``           | hash   | job name -> its open circuit breaker, ``open:<ms>`` or ``half:<ms>``  |
| ``breaker_fails``      | hash   | job name -> its consecutive failed attempts (breakers configured)    |
| ``breaker_window``     | hash   | each job name's sliding window of outcomes (a failure ratio set):    |
|                        |        | ``b:<name>`` newest bucket, ``a<slot>:<name>``/``f<slot>:<name>``    |
|                        |        | attempts/failures of each of its 10 buckets                          |
| ``group_held``         | zset   | group -> ms its window reopens, for groups with jobs parked by their |
|                        |        | group rate limit (the claim releases them then)                      |
| ``group_waiting:<g>``  | zset   | waiting jobs of group ``g`` parked by its limit, score as in         |
|                        |        | ``waiting`` (so priority and FIFO order survive parking)             |
| ``group_rate:<g>``     | string | jobs of group ``g`` started in its current window (PX the window)    |
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "jq"

# Priority bounds: the waiting score packs (priority + PRIORITY_OFFSET) * 2^32 + seq into a double,
# which stays exact below 2^53, so |priority| is capped at about one million. The offset is written
# out in lua/include/store_job.lua too (a unit test keeps the two equal).
PRIORITY_MIN = -1_000_000
PRIORITY_MAX = 1_000_000
PRIORITY_OFFSET = 1_000_000

DEFAULT_MAX_PAYLOAD_BYTES = 512 * 1024
# Upper bounds of a job's options: a delay or TTL beyond a year, or an attempt running for more
# than a week, is a unit mistake (milliseconds for seconds) rather than a plan.
MAX_DELAY_SECONDS = 365 * 86_400
MAX_TIMEOUT_SECONDS = 7 * 86_400
# A group key (per tenant, per API key) becomes part of two key names: keep them short.
MAX_GROUP_LENGTH = 128


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """The key names of one queue; build with ``QueueKeys.for_queue(name)``."""

    name: str
    base: str
    waiting: str
    ready_since: str
    delayed: str
    retrying: str
    active: str
    completed: str
    dead: str
    expired: str
    marker: str
    seq: str
    counters: str
    workers: str
    stalled_check: str
    suspects: str
    isolation: str
    flow: str
    rate: str
    unhold: str
    schedules: str
    schedule_next: str
    breakers: str
    breaker_fails: str
    breaker_window: str
    group_held: str

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
            retrying=base + "retrying",
            active=base + "active",
            completed=base + "completed",
            dead=base + "dead",
            expired=base + "expired",
            marker=base + "marker",
            seq=base + "seq",
            counters=base + "counters",
            workers=base + "workers",
            stalled_check=base + "stalled_check",
            suspects=base + "suspects",
            isolation=base + "isolation",
            flow=base + "flow",
            rate=base + "rate",
            unhold=base + "unhold",
            schedules=base + "schedules",
            schedule_next=base + "schedule_next",
            breakers=base + "breakers",
            breaker_fails=base + "breaker_fails",
            breaker_window=base + "breaker_window",
            group_held=base + "group_held",
        )

    @property
    def job_prefix(self) -> str:
        """Prefix of job hashes; scripts append the job id."""
        return self.base + "job:"

    @property
    def group_waiting_prefix(self) -> str:
        """Prefix of a group's parked jobs (``group_waiting:<group>``); scripts append the group."""
        return self.base + "group_waiting:"

    @property
    def group_rate_prefix(self) -> str:
        """Prefix of a group's window counter (``group_rate:<group>``); scripts append the group."""
        return self.base + "group_rate:"

    def job(self, job_id: str) -> str:
        return self.job_prefix + job_id

    def of_state(self, state: str) -> str:
        """The sorted set holding the jobs in ``state`` (a ``states.JobState``)."""
        key: str = getattr(self, state)
        return key


def validate_queue_name(name: str) -> None:
    """Refuse names that would break the hash tag or key parsing."""
    if not name or len(name) > 200:
        raise ValueError(f"queue name must be 1..200 characters, got {len(name)}")
    bad = set(name) & set("{}: \t\r\n")
    if bad:
        raise ValueError(f"queue name {name!r} contains forbidden characters {sorted(bad)!r}")
