"""Fixtures shared by every level: one real redis-server per session, a fresh queue name per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis
from hypothesis import settings

from worker_runtime.embedded_redis import RedisServer

pytest_plugins = ["tests.support.kube_fixtures"]

# Property tests draw the same examples on every run ("ci"), so a red run is the change's, not the
# draw's; HYPOTHESIS_PROFILE=explore draws new ones (and keeps the failures found in .hypothesis/).
settings.register_profile("ci", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server on a free port; ``JOBQUEUE_REDIS_SERVER`` picks the binary (6.2 or 7.x in CI)."""
    with RedisServer() as server:
        print(f"\nredis-server {server.version()} ({server.binary}) on port {server.port}")
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def queue_name() -> str:
    """A fresh queue per test, so tests share one server without FLUSHALL."""
    return f"t-{uuid.uuid4().hex[:12]}"
