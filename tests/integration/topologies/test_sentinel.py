"""The runtime and the operator's probe on a Sentinel set (a master, a replica, three sentinels).

Cases:

- a ``redis+sentinel://`` URL, async and blocking producers: a queue's whole life (``scenario``);
- a failover while the producer and the worker are busy, the master killed (SIGKILL) or handed
  over alive (``SENTINEL FAILOVER``: the old master answers READONLY, then follows the new one):
  the producer, the worker and the operator's probe carry on by themselves; the acknowledged
  enqueues lost are measured: with ``wait_for_replicas=1`` none, without it only the ones the old
  master acknowledged in the moments around the failover;
- a master name the sentinels do not know: ``EnqueueTimeout`` naming it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from jobqueue_operator import prober, tunables

from tests.integration.topologies import scenario
from tests.support import topologies
from tests.support.wait import wait_for
from worker_runtime import EnqueueTimeout, Queue, Worker, WorkerSettings, connect, connect_sync
from worker_runtime.connection import AsyncClient, SyncClient
from worker_runtime.keys import QueueKeys
from worker_runtime.observation import QueueObservation

# Acknowledged enqueues a failover may lose are those the replica had not received when the master
# died: on loopback that is well under this many seconds before the kill.
REPLICATION_LAG_BOUND_SECONDS = 1.0


@pytest.fixture
async def client(sentinel_set: topologies.SentinelSet) -> AsyncIterator[AsyncClient]:
    made = connect(sentinel_set.url)
    yield made
    await made.aclose()


@pytest.fixture
def sync_client(sentinel_set: topologies.SentinelSet) -> Iterator[SyncClient]:
    made = connect_sync(sentinel_set.url)
    yield made
    made.close()


def _name() -> str:
    return f"s-{uuid.uuid4().hex[:10]}"


async def test_a_queues_life_through_the_sentinels(client: AsyncClient, sync_client: SyncClient) -> None:
    await scenario.exercise(client, sync_client, [_name(), _name()])


class Traffic:
    """A producer enqueueing one job after another (each acknowledged before the next) and a worker
    completing them, both on clients made from the Sentinel URL."""

    def __init__(self, client: AsyncClient, name: str, replicas: int = 0) -> None:
        self.name = name
        self.client = client
        self.app = scenario.build_app(name)
        self.queue = Queue(name, client, app=self.app, enqueue_timeout=30, wait_for_replicas=replicas)
        settings = scenario.worker_settings(name).model_copy(update={"keep_completed": 100_000})
        self.worker = Worker(self.app, client, WorkerSettings.model_validate(settings.model_dump()))
        self.acked: dict[str, float] = {}
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Traffic:
        self._tasks = [asyncio.create_task(self._produce()), asyncio.create_task(self.worker.run())]
        return self

    async def _produce(self) -> None:
        n = 0
        while not self._stop.is_set():
            job_id = f"j{n}"
            await self.queue.enqueue("ok", n, job_id=job_id)
            self.acked[job_id] = time.monotonic()
            n += 1

    async def acked_at_least(self, count: int, timeout: float = 60) -> None:  # noqa: ASYNC109
        await wait_for(lambda: len(self.acked) >= count, timeout=timeout, message=f"{count} enqueues acked")

    async def stop_producing(self) -> None:
        self._stop.set()
        await asyncio.wait_for(self._tasks[0], 60)

    async def drained(self) -> None:
        async def empty() -> bool:
            stats = await self.queue.stats()
            return stats.waiting == 0 and stats.active == 0 and stats.retrying == 0

        await wait_for(empty, timeout=60, message="the queue drained", ignore=(Exception,))

    async def lost(self) -> list[str]:
        """Acknowledged job ids with no job in Redis now (retention keeps every completed one here)."""
        keys = QueueKeys.for_queue(self.name)
        pipe = self.client.pipeline(transaction=False)
        ids = list(self.acked)
        for job_id in ids:
            pipe.exists(keys.job(job_id))
        found = await pipe.execute()
        return [job_id for job_id, present in zip(ids, found, strict=True) if not present]

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        self.worker.stop()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.queue.aclose()


@pytest.mark.parametrize("replicas", [0, 1], ids=["acked-by-master", "wait-for-1-replica"])
@pytest.mark.parametrize("failover", ["handover", "kill"])
async def test_a_failover_mid_run(
    sentinel_set: topologies.SentinelSet, client: AsyncClient, failover: str, replicas: int
) -> None:
    """The producer, the worker and the operator's probe carry on through the failover; what is
    lost is measured: with ``wait_for_replicas=1`` nothing, without it only enqueues acknowledged
    in the moments before the failover (the master acknowledged them before its replica had them)."""
    sentinel_set.wait_settled()
    operator_probe = prober.Prober(tunables.ProbeTunables(attempts=1))
    try:
        async with Traffic(client, _name(), replicas) as traffic:
            await traffic.acked_at_least(300)
            before = await _probed(operator_probe, sentinel_set.url, traffic.name)
            assert before.enqueued_total >= 300
            old = sentinel_set.master_port()
            started = time.monotonic()
            if failover == "kill":
                sentinel_set.kill_master()  # SIGKILL: the replica is promoted after 1 s of silence
            else:
                sentinel_set.hand_over()  # SENTINEL FAILOVER: the old master lives on, then follows
            sentinel_set.wait_for_new_master(old)
            took = time.monotonic() - started
            if failover == "handover":
                sentinel_set.wait_for_replica(old)  # until then it still takes writes, then drops them
            else:
                sentinel_set.restart_as_replica(old)  # the only replica: wait_for_replicas needs one
            await traffic.acked_at_least(len(traffic.acked) + 300)
            await traffic.stop_producing()
            await traffic.drained()
            lost = await traffic.lost()
            after = await _probed(operator_probe, sentinel_set.url, traffic.name)
    finally:
        await operator_probe.close()
    late = sorted(round(traffic.acked[job_id] - started, 3) for job_id in lost)
    print(
        f"\nsentinel {failover}, wait_for_replicas={replicas}: new master after {took:.1f}s; "
        f"{len(lost)} of {len(traffic.acked)} acknowledged enqueues lost "
        f"(acknowledged at {late[:3]}...{late[-3:]} s from the failover)"
    )
    if replicas:
        assert lost == [], "an enqueue a replica confirmed survives the failover"
    assert all(t > -REPLICATION_LAG_BOUND_SECONDS for t in late), late
    assert after.completed == len(traffic.acked) - len(lost), after  # the worker carried on
    assert after.observed_at_ms > before.observed_at_ms


async def _probed(operator_probe: prober.Prober, url: str, name: str) -> QueueObservation:
    found = await operator_probe.probe_many(url, [name])
    assert not found.errors, found.errors
    return found.observations[name]


async def test_an_unknown_master_name_is_unavailable(sentinel_set: topologies.SentinelSet) -> None:
    url = sentinel_set.url.rsplit("/", 1)[0] + "/no-such-master"
    client = connect(url)
    queue = Queue(_name(), client, enqueue_timeout=0.5)
    try:
        with pytest.raises(EnqueueTimeout, match="No master found for 'no-such-master'"):
            await queue.enqueue("ok", 1)
    finally:
        await queue.aclose()
        await client.aclose()
