"""Probe many queues in one pipelined round trip (the operator and dev mode call this every poll)."""

from __future__ import annotations

from collections.abc import Sequence

from worker_runtime import scripts
from worker_runtime.commands import QueueCommands
from worker_runtime.connection import AsyncClient
from worker_runtime.observation import QueueObservation


async def probe_queues(client: AsyncClient, queues: Sequence[str]) -> dict[str, QueueObservation]:
    """Depth, oldest ready age, counters and worker heartbeats of every queue, by name.

    One read-only script per queue (each touches one hash slot), all in one pipeline.
    """
    names = list(dict.fromkeys(queues))
    observations = await scripts.run_many(client, [QueueCommands(name).probe() for name in names])
    return dict(zip(names, observations, strict=True))
