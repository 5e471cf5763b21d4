"""Poll a condition with a deadline; on timeout, fail with a message and the last value seen.

Never ``sleep()`` and hope: operators, Events (posted in the background) and watch streams are
eventually consistent, so every assertion on them waits for the condition with a deadline::

    body = await wait_for(lambda: emulator.get_object(JOBQUEUES, "default", "q1"), message="q1 exists")
    await wait_for(lambda: replicas() == 3, timeout=5, message="scaled to 3")

The predicate may be sync or async. A truthy return ends the wait and is returned; exceptions of the
types in ``ignore`` (default: none) count as a falsy value, so ``KeyError``-prone lookups can be polled.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")
DEFAULT_TIMEOUT = 10.0


def _failure(message: str, timeout: float, last: Any, error: BaseException | None) -> AssertionError:
    detail = f"{message or 'condition not met'} (within {timeout:g}s); last value: {last!r}"
    if error is not None:
        detail += f"; last error: {error!r}"
    return AssertionError(detail)


async def wait_for(
    predicate: Callable[[], T | Awaitable[T]],
    timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109  (a polling deadline, not one awaitable's)
    interval: float = 0.02,
    message: str = "",
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Await until ``predicate()`` is truthy and return its value, or raise AssertionError."""
    deadline = time.monotonic() + timeout
    last: Any = None
    error: BaseException | None = None
    while True:
        try:
            result = predicate()
            last = await result if inspect.isawaitable(result) else result
            error = None
        except ignore as exc:
            last, error = None, exc
        if last:
            return last  # type: ignore[no-any-return]
        if time.monotonic() >= deadline:
            raise _failure(message, timeout, last, error)
        await asyncio.sleep(interval)


def wait_for_sync(
    predicate: Callable[[], T],
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = 0.02,
    message: str = "",
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """The blocking twin of :func:`wait_for`, for sync tests (the emulator runs in a thread)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    error: BaseException | None = None
    while True:
        try:
            last = predicate()
            error = None
        except ignore as exc:
            last, error = None, exc
        if last:
            return last  # type: ignore[no-any-return]
        if time.monotonic() >= deadline:
            raise _failure(message, timeout, last, error)
        time.sleep(interval)
