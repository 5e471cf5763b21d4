"""An emulated API server with the product CRD, a real redis-server and our real kopf handlers in a thread.

``operator_env`` gives a test everything it needs: ``env.kube`` (the user's REST client),
``env.start()`` (start, or restart, the operator), ``env.jobqueue(name, **overrides)`` (a JobQueue
body with small windows: pollingInterval 1, stabilization 1 s, cooldown 1 s), ``env.enqueue(n)``,
``env.drain()``, and readers of Deployments, status and Events. Each JobQueue serves its own Redis
queue (``env.queue(name)``: the test's fresh queue name for ``q1``, with ``-<name>`` for the
others), since two JobQueues on one queue are a conflict.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import kopf
import pytest
import redis.asyncio as aioredis
from jobqueue_operator import handlers

from tests.support.emulator import RealisticEmulator
from tests.support.kube_client import DEPLOYMENTS, EVENTS, JOBQUEUES, SECRETS, AsyncKube, secret_body
from tests.support.kube_fixtures import PRODUCT_CRD_PATH, StartOperator
from tests.support.operator_thread import OperatorThread
from worker_runtime import Queue
from worker_runtime.keys import QueueKeys

Body = dict[str, Any]


def jobqueue_spec(queue: str, *, secret: str = "redis") -> Body:
    return {
        "queue": {"name": queue, "redis": {"urlSecretRef": {"name": secret, "key": "url"}}},
        "workers": {
            "concurrency": 1,
            "template": {"spec": {"containers": [{"name": "worker", "image": "example/worker:1"}]}},
        },
        "scaling": {
            "minReplicas": 0,
            "maxReplicas": 5,
            "pollingInterval": 1,
            "targets": {"backlogPerReplica": 2},
            "scaleDown": {"stabilizationWindowSeconds": 1, "tolerance": 0},
            "cooldownSeconds": 1,
        },
        "jobs": {"timeoutSeconds": 20},
    }


def merge(base: Body, overrides: Body) -> Body:
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        out[key] = (
            merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


@dataclass
class OperatorEnv:
    emulator: RealisticEmulator
    kube: AsyncKube
    redis: aioredis.Redis
    redis_url: str
    queue_name: str
    start_operator: StartOperator

    async def start(self) -> OperatorThread:
        memo = kopf.Memo(server=str(self.emulator.url).rstrip("/"))
        return await self.start_operator(register=handlers.register, memo=memo)

    def queue(self, name: str = "q1") -> str:
        """The Redis queue of the JobQueue ``name``."""
        return self.queue_name if name == "q1" else f"{self.queue_name}-{name}"

    def jobqueue(self, name: str = "q1", spec: Body | None = None, **meta: Any) -> Body:
        return {
            "apiVersion": "jobqueue.dev/v1alpha1",
            "kind": "JobQueue",
            "metadata": {"name": name, **meta},
            "spec": merge(jobqueue_spec(self.queue(name)), spec or {}),
        }

    async def create(self, name: str = "q1", spec: Body | None = None, **meta: Any) -> Body:
        return await self.kube.create(JOBQUEUES, self.jobqueue(name, spec, **meta))

    async def enqueue(self, count: int, name: str = "q1") -> None:
        queue = Queue(self.queue(name), self.redis)
        try:
            for index in range(count):
                await queue.enqueue("work", {"n": index})
        finally:
            await queue.aclose()

    async def drain(self, name: str = "q1") -> None:
        keys = QueueKeys.for_queue(self.queue(name))
        await self.redis.delete(keys.waiting, keys.ready_since)

    def deployment(self, name: str = "q1-worker") -> Body | None:
        return self.emulator.get_object(DEPLOYMENTS, "default", name)

    def replicas(self, name: str = "q1-worker") -> int | None:
        body = self.deployment(name)
        return None if body is None else int(body["spec"]["replicas"])

    def status(self, name: str = "q1") -> Body:
        body = self.emulator.get_object(JOBQUEUES, "default", name)
        return dict((body or {}).get("status") or {})

    def condition(self, kind: str, name: str = "q1") -> Body:
        return next((c for c in self.status(name).get("conditions", []) if c["type"] == kind), {})

    def events(self, reason: str, kind: str | None = None) -> list[Body]:
        return [
            e
            for e in self.emulator.list_objects(EVENTS, "default")
            if e.get("reason") == reason and (kind is None or e.get("type") == kind)
        ]


@pytest.fixture
async def operator_env(
    emulator: RealisticEmulator,
    kube: AsyncKube,
    redis: aioredis.Redis,
    redis_url: str,
    queue_name: str,
    start_operator: StartOperator,
) -> AsyncIterator[OperatorEnv]:
    emulator.register_crd(PRODUCT_CRD_PATH)
    await kube.create(SECRETS, secret_body("redis", {"url": redis_url}))
    yield OperatorEnv(emulator, kube, redis, redis_url, queue_name, start_operator)
