"""Probe many queues in one pipelined round trip (the operator and dev mode call this every poll)."""

from __future__ import annotations

from collections.abc import Sequence

import redis
import redis.asyncio as aioredis

from worker_runtime import scripts
from worker_runtime.commands import QueueCommands, parse_probe
from worker_runtime.observation import QueueObservation


async def probe_queues(client: aioredis.Redis, queues: Sequence[str]) -> dict[str, QueueObservation]:
    """Depth, oldest ready age, counters and worker heartbeats of every queue, by name.

    One read-only script per queue (each touches one hash slot), all in one pipeline.
    """
    names = list(dict.fromkeys(queues))
    replies = await scripts.run_many(client, [QueueCommands(name).probe() for name in names])
    return {name: parse_probe(name, reply) for name, reply in zip(names, replies, strict=True)}


def probe_queues_sync(client: redis.Redis, queues: Sequence[str]) -> dict[str, QueueObservation]:
    names = list(dict.fromkeys(queues))
    replies = scripts.run_many_sync(client, [QueueCommands(name).probe() for name in names])
    return {name: parse_probe(name, reply) for name, reply in zip(names, replies, strict=True)}
