"""The coalescer gives each caller its own outcome, whatever fails (a sender of our own stands in
for Redis here; tests/integration/runtime/test_producer_faults.py runs the same against a server).

| the send of a batch...                      | expectation                                          |
| ------------------------------------------- | ---------------------------------------------------- |
| fails as a whole for one bad item           | resent one by one: only that caller fails            |
| fails with a configuration problem          | every caller gets ConfigurationError; never resent   |
| loses the connection, then works            | resent; every caller gets its result                 |
| is resent while its caller gave up          | the item is dropped from the resend                  |
| gets no result within the timeout           | Expired, and the item is dropped from the resend     |
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from redis.exceptions import AuthenticationError
from redis.exceptions import ConnectionError as RedisConnectionError

from worker_runtime.batching import Coalescer, Expired
from worker_runtime.errors import ConfigurationError


class Sender:
    """Answers each item with its double, refusing a whole batch that holds a negative item; the
    first ``outages`` sends lose the connection."""

    def __init__(self, outages: int = 0, error: Exception | None = None) -> None:
        self.batches: list[list[int]] = []
        self.outages = outages
        self.error = error

    async def __call__(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        await asyncio.sleep(0)
        if self.error is not None:
            raise self.error
        if self.outages:
            self.outages -= 1
            raise RedisConnectionError("Connection closed by server.")
        if any(i < 0 for i in items):
            raise UnicodeEncodeError("utf-8", "x", 0, 1, "surrogates not allowed")
        return [2 * i for i in items]


async def test_a_batch_failing_for_one_item_fails_only_that_caller() -> None:
    sender = Sender()
    coalescer = Coalescer(sender)
    results = await asyncio.gather(*(coalescer.submit(i) for i in (1, -1, 3)), return_exceptions=True)
    assert results[0] == 2 and results[2] == 6
    assert isinstance(results[1], UnicodeEncodeError)
    assert sender.batches[0] == [1, -1, 3]  # sent together first
    await coalescer.aclose()


async def test_a_configuration_problem_is_never_resent() -> None:
    sender = Sender(error=AuthenticationError("invalid username-password pair"))
    coalescer = Coalescer(sender)
    results = await asyncio.gather(*(coalescer.submit(i) for i in (1, 2)), return_exceptions=True)
    assert all(isinstance(r, ConfigurationError) and "credentials" in str(r) for r in results)
    assert sender.batches == [[1, 2]]
    await coalescer.aclose()


async def test_a_lost_connection_is_resent() -> None:
    sender = Sender(outages=2)
    coalescer = Coalescer(sender)
    assert await asyncio.gather(coalescer.submit(1), coalescer.submit(2)) == [2, 4]
    assert len(sender.batches) == 3 and isinstance(coalescer.last_error, type(None))
    await coalescer.aclose()


async def test_an_item_whose_caller_gave_up_is_not_resent() -> None:
    sender = Sender(outages=3)
    coalescer = Coalescer(sender)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await coalescer.submit(1)
    assert await coalescer.submit(2) == 4  # sent without waiting out the first one's backoff
    assert 1 not in sender.batches[-1]
    await coalescer.aclose()


async def test_a_call_without_a_result_within_the_timeout_expires() -> None:
    sender = Sender(outages=10**6)  # Redis never comes back
    coalescer = Coalescer(sender, timeout=0.05)
    with pytest.raises(Expired):
        await coalescer.submit(1)
    with pytest.raises(Expired):
        await coalescer.submit(2)
    assert isinstance(coalescer.last_error, RedisConnectionError)
    sender.outages = 0
    assert await coalescer.submit(3) == 6
    assert {1, 2}.isdisjoint(sender.batches[-1])  # the expired calls were not resent
    await coalescer.aclose()
