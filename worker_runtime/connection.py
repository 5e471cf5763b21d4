"""Redis clients configured the same way everywhere, and the one reconnect backoff.

One retry policy: every caller in the runtime resends on its own, with ``RECONNECT``'s backoff (the
producer within its ``enqueue_timeout``, the worker's loops, the operator's prober), so a client is
made with no retries underneath by default (``retries=0``): retries in two layers multiply (redis-py
retries a connect inside each retried command) and hide the cause from the layer that gives up.
Pass ``retries=N`` for a client used on its own. No client ever retries a configuration problem
(``configuration_problem``): a wrong password or a failed TLS check fails the first call, where
redis-py alone would retry it as a lost connection.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from collections.abc import Callable
from typing import Any

from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import EqualJitterBackoff
from redis.exceptions import (
    AskError,
    AuthenticationError,
    BusyLoadingError,
    ClusterDownError,
    MasterDownError,
    MovedError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from worker_runtime import endpoint, topologies
from worker_runtime.backoff import Backoff
from worker_runtime.endpoint import TlsOptions
from worker_runtime.errors import ConfigurationError, JobQueueError, RedisUnavailable

# A client of any topology (``endpoint``): one server, a Sentinel-managed master, or a Cluster.
AsyncClient = topologies.AsyncClient
SyncClient = topologies.SyncClient

# Delays between attempts to reach Redis again: 0.1 s doubling to 5 s, half of each random.
RECONNECT = Backoff(base=0.1, cap=5.0)

# Errors after which the same command may be tried again on a new connection: an outage, a server
# loading its data, and a Cluster or Sentinel failover in progress (CLUSTERDOWN, TRYAGAIN, a slot
# with no master yet, MASTERDOWN from a replica that lost its master).
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    BusyLoadingError,
    ClusterDownError,
    TryAgainError,
    SlotNotCoveredError,
    MasterDownError,
    OSError,
)

_RETRY_ERRORS = [RedisConnectionError, RedisTimeoutError, BusyLoadingError]


# A blocking client's reply deadline: it bounds a call on a connection whose server went silent.
# Only the sync client has one: the async worker blocks on BZPOPMIN, and async callers bound their
# calls with asyncio timeouts instead.
SYNC_SOCKET_TIMEOUT_SECONDS = 10.0


def _options() -> dict[str, Any]:
    # Keep-alive checks catch half-open connections.
    return {"health_check_interval": 30, "socket_keepalive": True, "socket_connect_timeout": 5}


def _backoff() -> EqualJitterBackoff:
    # redis-py's equal-jitter backoff is the formula of ``Backoff.delay``.
    return EqualJitterBackoff(cap=RECONNECT.cap, base=RECONNECT.base)


def _unless_misconfigured(is_retryable: Callable[[Exception], bool] | None) -> Callable[[Exception], bool]:
    """redis-py's retry test, refusing configuration problems (AuthenticationError is a
    ConnectionError to redis-py, so it would retry it, on connect and on each command)."""

    def retryable(exc: Exception) -> bool:
        return configuration_problem(exc) is None and (is_retryable is None or is_retryable(exc))

    return retryable


class _Retry(Retry):
    def call_with_retry(
        self, do: Any, fail: Any, is_retryable: Any = None, with_failure_count: bool = False
    ) -> Any:
        return super().call_with_retry(do, fail, _unless_misconfigured(is_retryable), with_failure_count)


class _AsyncRetry(AsyncRetry):
    async def call_with_retry(
        self, do: Any, fail: Any, is_retryable: Any = None, with_failure_count: bool = False
    ) -> Any:
        return await super().call_with_retry(
            do, fail, _unless_misconfigured(is_retryable), with_failure_count
        )


def connect(url: str, *, tls: TlsOptions | None = None, retries: int = 0, **overrides: Any) -> AsyncClient:
    """An async client for any URL form of ``endpoint`` (one server, Sentinel, Cluster), with ``tls``
    when given; with ``retries``, it retries a command that many times with ``RECONNECT``'s backoff
    on connection loss (never on a configuration problem). A malformed URL, or TLS files with TLS
    off, is a ``ConfigurationError`` at once."""
    target, options = _target(url, tls)
    retry = _AsyncRetry(_backoff(), retries)
    options |= {"retry": retry, "retry_on_error": _RETRY_ERRORS} | _options() | overrides
    return topologies.async_client(target, options, _AsyncRetry(_backoff(), 0))


def connect_sync(
    url: str, *, tls: TlsOptions | None = None, retries: int = 0, **overrides: Any
) -> SyncClient:
    """The blocking client: ``connect``'s URLs and retries, and a reply deadline of
    ``SYNC_SOCKET_TIMEOUT_SECONDS`` (so a silent server cannot block a producer for good). The
    Cluster client reads the cluster's layout here: ``RedisUnavailable`` if no node answers."""
    target, options = _target(url, tls)
    retry = _Retry(_backoff(), retries)
    options |= {"retry": retry, "retry_on_error": _RETRY_ERRORS} | _options()
    options |= {"socket_timeout": SYNC_SOCKET_TIMEOUT_SECONDS} | overrides
    try:
        return topologies.sync_client(target, options, _Retry(_backoff(), 0))
    except Exception as exc:
        if is_redis_failure(exc):
            raise as_error(exc) from exc
        raise


def _target(url: str, tls: TlsOptions | None) -> tuple[endpoint.Endpoint, dict[str, Any]]:
    """The parsed URL (over TLS when ``tls.enabled``) and the TLS options of its clients."""
    target = endpoint.parse(url)
    tls = tls or TlsOptions()
    if tls.enabled:
        target = target.with_tls()
    if not target.tls:
        if tls.has_material or tls.insecure_skip_verify:
            raise ConfigurationError(
                "TLS settings are given but TLS is off: use a rediss:// URL (rediss+sentinel://, "
                "rediss+cluster://) or turn TLS on (JOBQUEUE_REDIS_TLS=true)"
            )
        return target, {}
    return target, tls.client_options()


def cancel_requested() -> bool:
    """Whether the running task has been asked to stop.

    redis-py can finish a command its task was cancelled in and return as if nothing happened
    (redis/redis-py#2028, #2551), so a loop that must end when cancelled checks this after each
    call instead of relying on the CancelledError reaching it.
    """
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


# Server replies that mean the credentials or the ACL user are wrong (redis-py raises some of them as
# plain ResponseError, e.g. when a command is sent before AUTH).
_AUTH_REPLIES = ("NOAUTH", "WRONGPASS", "NOPERM", "INVALIDUSERNAMEPASSWORD")


def configuration_problem(exc: BaseException) -> str | None:
    """One line saying what is misconfigured when ``exc`` is an error that retrying cannot fix
    (authentication, TLS verification, a host name that does not exist), else ``None`` (an outage:
    back off and retry). Connection refused and timeouts are outages: the server may be starting."""
    if isinstance(exc, ConfigurationError):
        return str(exc)
    if isinstance(exc, AuthenticationError) or (
        isinstance(exc, ResponseError) and str(exc).upper().startswith(_AUTH_REPLIES)
    ):
        return f"Redis refused the credentials: {_first_line(exc)} (check the password/ACL user in the URL)"
    if isinstance(exc, MovedError | AskError):  # a cluster client follows these: this one is plain
        return "the Redis server is a Cluster node (it answered MOVED): use a redis+cluster:// URL"
    for cause in _chain(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS verification of the Redis server failed: {cause.verify_message or cause}"
        closed = isinstance(cause, ssl.SSLZeroReturnError | ssl.SSLEOFError)  # the peer hung up: an outage
        if isinstance(cause, ssl.SSLError) and not closed:
            return f"TLS handshake with the Redis server failed: {_first_line(cause)}"
        if isinstance(cause, socket.gaierror) and cause.errno == socket.EAI_NONAME:
            return f"Redis host not found: {_first_line(exc)}"
    return None


def as_error(exc: BaseException) -> JobQueueError:
    """The runtime's error for a failed Redis call: ``ConfigurationError`` when retrying cannot fix
    it, else ``RedisUnavailable``; either says in one line what happened."""
    if isinstance(exc, ConfigurationError | RedisUnavailable):
        return exc
    problem = configuration_problem(exc)
    if problem is not None:
        return ConfigurationError(problem)
    return RedisUnavailable(f"Redis is unreachable: {_described(exc)}")


def is_redis_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is the connection failing (an outage or a configuration problem), as opposed
    to a server's error reply or a bug); the runtime's own errors for those count."""
    failure = (*TRANSIENT_ERRORS, ConfigurationError, RedisUnavailable)
    return isinstance(exc, failure) or configuration_problem(exc) is not None


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from or during (redis-py wraps socket errors)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 10:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _described(exc: BaseException) -> str:
    """The first line of ``exc``, with the system's word for its errno when it does not say it
    (asyncio's "Connect call failed" hides "Connection refused")."""
    text = _first_line(exc)
    for cause in _chain(exc):
        if isinstance(cause, OSError) and cause.errno and cause.strerror is not None:
            reason = os.strerror(cause.errno)
            if reason.lower() not in text.lower():
                text = f"{text.rstrip('.')} ({reason.lower()})"
            break
    return text


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
