"""Redis clients configured the same way everywhere: retries with backoff on connection errors."""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

# Errors after which the same command may be tried again on a new connection.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    BusyLoadingError,
    OSError,
)

_RETRY_ERRORS = [RedisConnectionError, RedisTimeoutError, BusyLoadingError]


def _options() -> dict[str, Any]:
    # Keep-alive checks catch half-open connections; no socket timeout, as workers block on BZPOPMIN.
    return {"health_check_interval": 30, "socket_keepalive": True, "socket_connect_timeout": 5}


def connect(url: str, *, retries: int = 3, **overrides: Any) -> aioredis.Redis:
    """An async client that retries a command ``retries`` times with backoff (0.1 s to 2 s) on
    connection loss; callers with their own retry loop pass ``retries=0``."""
    retry = AsyncRetry(ExponentialBackoff(cap=2.0, base=0.1), retries)
    return aioredis.Redis.from_url(url, retry=retry, retry_on_error=_RETRY_ERRORS, **(_options() | overrides))


def connect_sync(url: str, *, retries: int = 3, **overrides: Any) -> redis.Redis:
    retry = Retry(ExponentialBackoff(cap=2.0, base=0.1), retries)
    return redis.Redis.from_url(url, retry=retry, retry_on_error=_RETRY_ERRORS, **(_options() | overrides))
