"""How long finished jobs are kept for lookup: completed and dead jobs each up to a count AND an
age, as BullMQ's ``removeOnComplete``/``removeOnFail`` ``{count, age}``.

The transition that adds a job to its finished set trims that set in the same script
(``lua/include/retain.lua``): jobs beyond the newest ``count``, and jobs finished more than
``seconds`` ago, are deleted, hash and all, at most ``RETAIN_BUDGET`` per call. Each call adds one
job and may delete up to ``RETAIN_BUDGET``, so a set over its limits (a limit just lowered)
converges within a few transitions, and no transition scans or deletes a whole set. An idle queue
keeps what it has until its next completion or death (as BullMQ does); a purge deletes at once.

Both limits have bounded defaults: a dead-letter set that nobody purges costs at most
``Retention().dead.count`` jobs of memory (see docs/runtime.md for the bytes per job).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Jobs one transition may delete from one finished set (a few ms of Redis time at most).
RETAIN_BUDGET = 100
# Upper bounds of the settings: a count or an age beyond these is "keep everything" in disguise.
MAX_KEEP_COUNT = 10_000_000
MAX_KEEP_SECONDS = 365 * 86_400


@dataclass(frozen=True, slots=True)
class Keep:
    """Keep the newest ``count`` jobs of a set, and none finished more than ``seconds`` ago."""

    count: int
    seconds: float

    def args(self) -> tuple[int, int]:
        """The script arguments: the count, and the age in ms."""
        return self.count, round(self.seconds * 1000)


@dataclass(frozen=True, slots=True)
class Retention:
    """The retention of a queue's completed jobs and of its dead-letter set.

    Completed jobs are kept for lookup (``get_job``) for a day, the newest 1,000; dead jobs wait
    longer for someone to look at them, a week, the newest 10,000.
    """

    completed: Keep = field(default_factory=lambda: Keep(count=1_000, seconds=86_400))
    dead: Keep = field(default_factory=lambda: Keep(count=10_000, seconds=7 * 86_400))
