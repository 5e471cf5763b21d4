"""The failure-ratio window of circuit breakers, at its edges: ``lua/include/breaker.lua`` run on
the real server with the clock given by the test, so each bucket boundary is hit to the
millisecond. (The scripts read the server's clock; these drive the include's functions directly.)"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import redis.asyncio as aioredis

from worker_runtime import Queue, scripts
from worker_runtime.commands import QueueCommands
from worker_runtime.flow import Breaker, FlowConfig

# ARGV: ratio, window ms, min attempts, then (now ms, "F" or "S") per attempt of job "call".
# Returns per attempt 1 if it opened the breaker, else 0; then the window's fields after the last.
_DRIVER = scripts.expand(
    """
--- @include "time"
--- @include "breaker"
local ratio = breaker_ratio(ARGV[1], ARGV[2], ARGV[3])
local opened = {}
for i = 4, #ARGV, 2 do
  local now = tonumber(ARGV[i])
  if ARGV[i + 1] == "F" then
    opened[#opened + 1] = breaker_failed(KEYS[1], KEYS[2], KEYS[3], "call", 0, 60000, ratio, now) and 1 or 0
  else
    breaker_succeeded(KEYS[1], KEYS[2], KEYS[3], "call", ratio, now)
    opened[#opened + 1] = 0
  end
end
return {opened, redis.call("HGETALL", KEYS[3])}
"""
)

T0 = 1_764_000_000_000  # a server-clock ms at a bucket boundary of every width below


async def _drive(
    redis: aioredis.Redis,
    queue_name: str,
    attempts: Sequence[tuple[int, str]],
    *,
    ratio: float = 0.5,
    window_ms: int = 1000,
    least: int = 2,
) -> tuple[list[int], dict[str, str]]:
    keys = QueueCommands(queue_name).keys
    args: list[str | int] = [repr(ratio), window_ms, least]
    for at, outcome in attempts:
        args += [T0 + at, outcome]
    opened, raw = await redis.eval(_DRIVER, 3, keys.breakers, keys.breaker_fails, keys.breaker_window, *args)  # type: ignore[misc]
    fields = {raw[i].decode(): raw[i + 1].decode() for i in range(0, len(raw), 2)}
    return [int(x) for x in opened], fields


@pytest.mark.parametrize(
    ("second_at", "opens"),
    [
        (999, True),  # 999 ms old: in the window (its bucket is the oldest counted)
        (1000, False),  # a window old: never counted
        (1099, False),
        (1150, False),  # its slot of the ring not yet reused: read, and found too old
    ],
)
async def test_an_attempt_counts_until_it_is_a_window_old(
    redis: aioredis.Redis, queue_name: str, second_at: int, opens: bool
) -> None:
    # Two failures needed (min attempts 2), a 1 s window of ten 100 ms buckets.
    opened, _ = await _drive(redis, queue_name, [(0, "F"), (second_at, "F")])
    assert opened == [0, 1 if opens else 0]


@pytest.mark.parametrize(
    ("first_at", "second_at", "opens"),
    [
        (99, 999, True),  # 900 ms apart, same bucket pair as above: counted
        (99, 1000, False),  # 901 ms apart but a bucket further: dropped (the granularity, width/window)
        (0, 900, True),
    ],
)
async def test_the_window_moves_in_buckets_of_a_tenth(
    redis: aioredis.Redis, queue_name: str, first_at: int, second_at: int, opens: bool
) -> None:
    opened, _ = await _drive(redis, queue_name, [(first_at, "F"), (second_at, "F")])
    assert opened == [0, 1 if opens else 0]


@pytest.mark.parametrize(
    ("least", "opens"),
    [
        (3, True),  # F at bucket 5, S at 6, F at 12: 2 of 3 (buckets 5 and 6 kept by the turn)
        (4, False),  # had bucket 0's failure been kept, 3 of 4 would open it
    ],
)
async def test_a_turn_of_the_ring_empties_only_the_buckets_it_passes(
    redis: aioredis.Redis, queue_name: str, least: int, opens: bool
) -> None:
    attempts = [(0, "F"), (500, "F"), (600, "S"), (1250, "F")]
    opened, _ = await _drive(redis, queue_name, attempts, least=least, ratio=0.6)
    assert opened == [0, 0, 0, 1 if opens else 0]


async def test_a_slot_from_an_older_round_of_the_ring_reads_empty(
    redis: aioredis.Redis, queue_name: str
) -> None:
    # Three successes in bucket 0, then a failure in bucket 10 (the same slot of the ring): had
    # the slot been added to, 1 failure of 4 would not reach 0.5.
    opened, fields = await _drive(redis, queue_name, [(0, "S"), (10, "S"), (20, "S"), (1000, "F")], least=1)
    assert opened == [0, 0, 0, 1]
    assert fields == {}  # opening the breaker starts it with an empty window


@pytest.mark.parametrize(
    ("ratio", "successes", "failures", "opened_on"),
    [
        (0.6, 4, 6, 9),  # 6 of 10 at 0.6: exactly the ratio opens it, on the 10th attempt
        (0.7, 3, 7, 9),  # 7 / 10 == 0.7 in floating point too
        (0.6, 5, 6, None),  # 6 of 11 < 0.6
        (1.0, 0, 10, 9),  # every attempt failed, once min attempts are in
        (1.0, 1, 10, None),
    ],
)
async def test_the_ratio_counts_once_the_window_holds_min_attempts(
    redis: aioredis.Redis,
    queue_name: str,
    ratio: float,
    successes: int,
    failures: int,
    opened_on: int | None,
) -> None:
    attempts = [(i, "S") for i in range(successes)] + [(successes + i, "F") for i in range(failures)]
    opened, _ = await _drive(redis, queue_name, attempts, ratio=ratio, least=10, window_ms=60_000)
    expected = [0] * len(attempts)
    if opened_on is not None:
        expected[opened_on] = 1
    assert opened == expected


async def test_the_window_holds_ten_buckets_whatever_the_rate(redis: aioredis.Redis, queue_name: str) -> None:
    # 2000 outcomes over 20 s of 1 s windows, one in five failed: the ring of ten slots is all that
    # stays, each with its own bucket's counts.
    attempts = [(i * 10, "F" if i % 5 == 0 else "S") for i in range(2000)]
    opened, fields = await _drive(redis, queue_name, attempts, least=1_000_000)
    assert sum(opened) == 0
    slots = [f"{kind}{slot}:call" for slot in range(10) for kind in "af"]
    assert sorted(fields) == sorted(["b:call", *slots])
    assert fields["b:call"] == str((T0 + 19_990) // 100)  # the newest bucket
    assert {fields[f"a{slot}:call"] for slot in range(10)} == {"10"}
    assert {fields[f"f{slot}:call"] for slot in range(10)} == {"2"}


async def test_while_open_outcomes_do_not_count(redis: aioredis.Redis, queue_name: str) -> None:
    opened, fields = await _drive(redis, queue_name, [(0, "F"), (1, "F"), (2, "F"), (3, "S")], least=2)
    assert opened == [0, 1, 0, 0]  # the third failure is an in-flight job's: the breaker is open
    assert fields == {}


async def test_configuring_the_breakers_clears_the_windows_it_invalidates(
    redis: aioredis.Redis, queue_name: str
) -> None:
    keys = QueueCommands(queue_name).keys
    queue = Queue(queue_name, redis)
    try:
        await queue.set_breaker(None, 30, failure_ratio=0.5, window_seconds=10, min_attempts=5)
        await _drive(redis, queue_name, [(0, "S")])
        assert await redis.exists(keys.breaker_window) == 1
        await queue.set_max_running(5)  # another control: the window stays
        assert await redis.exists(keys.breaker_window) == 1
        # Another window: buckets of another width, so the counts start again.
        await queue.set_breaker(None, 30, failure_ratio=0.5, window_seconds=20, min_attempts=5)
        assert await redis.exists(keys.breaker_window) == 0
        await _drive(redis, queue_name, [(0, "S")])
        config = await queue.set_breaker(3, 30)  # the run of failures only
        assert config.breaker == Breaker(3, 30.0)
        assert await redis.exists(keys.breaker_window) == 0
        await _drive(redis, queue_name, [(0, "S")])
        assert await queue.set_breaker(None) == FlowConfig(max_running=5)
        assert await redis.exists(keys.breaker_window, keys.breakers, keys.breaker_fails) == 0
    finally:
        await queue.aclose()
