"""The demo (`make demo`): a burst of 5,000 jobs scaled up and back down by dev mode on this machine.

It starts an embedded redis-server, runs the operator's control loop in-process over local worker
processes (``jobqueue_operator.dev``, the same code as ``jobqueue dev -f examples/demo-jobqueue.yaml``),
then enqueues a burst and a trickle. Watch the workers rise, the backlog drain within the oldest-job
age target, and the fleet fall back to its minimum. It exits 0 when every job ran, counted by job id.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.text import Text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jobqueue_operator.dev import loop as devloop  # noqa: E402
from jobqueue_operator.dev import view  # noqa: E402

from examples import demo_app  # noqa: E402
from worker_runtime import JobSpec, Queue, connect  # noqa: E402
from worker_runtime.embedded_redis import RedisServer  # noqa: E402

MANIFEST = ROOT / "examples" / "demo-jobqueue.yaml"
BURST = 5_000
TRICKLE_PER_SECOND = 20
TRICKLE_SECONDS = 30
DEADLINE_SECONDS = 110


@dataclass
class Producer:
    """Enqueues the burst and the trickle, remembering every acknowledged job id."""

    queue: Queue
    ids: list[str] = field(default_factory=list)
    phase: str = "starting"

    def _specs(self, count: int) -> list[JobSpec]:
        start = len(self.ids)
        return [JobSpec("process_order", {"order_id": start + i}) for i in range(count)]

    async def run(self) -> None:
        self.phase = f"burst: enqueueing {BURST} jobs"
        while len(self.ids) < BURST:
            jobs = await self.queue.enqueue_many(self._specs(min(1000, BURST - len(self.ids))))
            self.ids.extend(job.id for job in jobs)
        self.phase = f"trickle: {TRICKLE_PER_SECOND} jobs/s for {TRICKLE_SECONDS}s"
        step = 0.25
        per_step = round(TRICKLE_PER_SECOND * step)
        started = time.monotonic()
        for tick in range(round(TRICKLE_SECONDS / step)):
            await asyncio.sleep(max(0.0, started + tick * step - time.monotonic()))
            self.ids.extend(job.id for job in await self.queue.enqueue_many(self._specs(per_step)))
        self.phase = f"all {len(self.ids)} jobs enqueued; waiting for the drain and the scale-down"


async def settled(loop: devloop.DevLoop, producer: Producer, receipts: dict[str, int]) -> bool:
    """Everything ran and the fleet is back at its minimum with nothing draining."""
    run = loop.runs[0]
    obs = run.last_observation
    minimum = run.jobqueue.spec.scaling.min_replicas
    return (
        producer.phase.startswith("all")
        and len(receipts) >= len(producer.ids)
        and obs is not None
        and obs.waiting == 0
        and obs.active == 0
        and len(run.actuator.running) == minimum
        and not run.actuator.terminating
    )


async def demo(console: Console, redis_url: str, log_dir: Path) -> int:
    targets = devloop.load_targets([MANIFEST])
    loop = devloop.DevLoop(targets, redis_url, log_dir=log_dir)
    name = targets[0].jobqueue.queue_name
    client = connect(redis_url)
    producer = Producer(Queue(name, client))
    receipts: dict[str, int] = {}
    stop = asyncio.Event()
    interrupted = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, interrupted.set)
    live = view.LiveView(loop, console)
    live.footer.append(Text(""))
    started = time.monotonic()
    with live:
        loop_task = asyncio.create_task(loop.run(stop))
        produce = asyncio.create_task(producer.run())
        try:
            while time.monotonic() - started < DEADLINE_SECONDS and not interrupted.is_set():
                raw = await client.hgetall(demo_app.executions_key(name))
                receipts = {k.decode(): int(v) for k, v in raw.items()}
                live.footer[0] = Text(f"{producer.phase} | {len(receipts)}/{len(producer.ids)} jobs done")
                if await settled(loop, producer, receipts):
                    break
                await asyncio.sleep(0.5)
        finally:
            stop.set()
            await loop_task
            produce.cancel()
            await asyncio.gather(produce, return_exceptions=True)
    clean = await loop.aclose()
    await client.aclose()
    if interrupted.is_set():
        console.print("interrupted: workers drained, nothing left running")
        return 130
    return report(console, loop, producer, receipts, time.monotonic() - started, clean)


def report(
    console: Console,
    loop: devloop.DevLoop,
    producer: Producer,
    receipts: dict[str, int],
    elapsed: float,
    clean: bool,
) -> int:
    summary = view.summarize(loop.runs[0])
    console.print(view.summary_table([summary]))
    lost = [job_id for job_id in producer.ids if job_id not in receipts]
    executions = sum(receipts.values())
    ok = not lost and summary.slo_held is not False and clean
    console.print(
        f"jobs enqueued {len(producer.ids)}, done {len(receipts)} (executions {executions}, "
        f"re-executed {executions - len(receipts)}), lost {len(lost)}\n"
        f"peak workers {summary.peak_workers} (of max {loop.runs[0].jobqueue.spec.scaling.max_replicas}), "
        f"worst oldest-job age {summary.worst_age_s:.1f}s against a target of {summary.slo_s}s, "
        f"workers at the end {len(loop.runs[0].actuator.running)}, {elapsed:.0f}s in all"
    )
    console.print("[bold green]demo passed[/]" if ok else "[bold red]demo failed[/]")
    return 0 if ok else 1


def main() -> int:
    os.chdir(ROOT)  # the workers import examples.demo_app from here
    console = Console()
    with RedisServer() as server, tempfile.TemporaryDirectory(prefix="jobqueue-demo-") as logs:
        console.print(f"embedded redis-server {server.version()} at {server.url}; worker logs in {logs}")
        return asyncio.run(demo(console, server.url, Path(logs)))


if __name__ == "__main__":
    sys.exit(main())
