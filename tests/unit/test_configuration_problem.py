"""Which connection errors are configuration problems (exit with one line) and which are outages
(back off and retry), against a real redis-server with a password and a port nobody listens on."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from worker_runtime import connection
from worker_runtime.embedded_redis import RedisServer


@pytest.fixture(scope="module")
def protected() -> Iterator[RedisServer]:
    with RedisServer(extra_args=["--requirepass", "s3cret"]) as server:
        yield server


def _client(**options: object) -> redis.Redis:
    # No retries: redis-py retries AuthenticationError too (it is a ConnectionError), which only
    # slows the test down.
    return redis.Redis(retry=Retry(NoBackoff(), 0), socket_connect_timeout=2, **options)  # type: ignore[arg-type]


def _error(client: redis.Redis) -> redis.RedisError:
    with pytest.raises(redis.RedisError) as caught:
        client.ping()
    return caught.value


@pytest.mark.parametrize("password", [None, "wrong"])
def test_bad_credentials_are_a_configuration_problem(protected: RedisServer, password: str | None) -> None:
    problem = connection.configuration_problem(_error(_client(port=protected.port, password=password)))
    assert problem is not None and problem.startswith("Redis refused the credentials")
    assert "\n" not in problem


def test_right_credentials_work(protected: RedisServer) -> None:
    assert redis.Redis(port=protected.port, password="s3cret").ping()


def test_unknown_host_is_a_configuration_problem() -> None:
    problem = connection.configuration_problem(_error(_client(host="no-such-host.invalid")))
    assert problem is not None and "host not found" in problem


def test_connection_refused_is_an_outage() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: refused
        assert connection.configuration_problem(_error(_client(port=port))) is None


def test_other_errors_are_not_configuration_problems() -> None:
    assert connection.configuration_problem(redis.ResponseError("WRONGTYPE Operation against a key")) is None
    assert connection.configuration_problem(TimeoutError()) is None
