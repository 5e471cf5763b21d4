"""The demo's worker app: an ``orders`` queue whose handler takes 20-50 ms, like a small API call.

Each run of the handler records a receipt (``HINCRBY demo:{<queue>}:executions <job id> 1``) with a
client of its own, the way a real handler's side effect lands somewhere else; the demo and the
end-to-end tests count receipts by job id to prove nothing was lost and to count re-executions.

Knobs, from the environment (dev mode passes a manifest container's literal ``env``):

- ``JOBQUEUE_QUEUE`` picks the queue (dev mode sets it from the JobQueue), default ``orders``;
- ``DEMO_JOB_MS`` the handler's duration range in ms, ``"20-50"`` by default;
- a payload ``{"work_ms": 5000}`` overrides the duration of one job (long jobs in tests).
"""

from __future__ import annotations

import asyncio
import os
import random

import redis.asyncio as aioredis
from pydantic import BaseModel, Field

from worker_runtime import App, JobContext, connect

app = App(os.environ.get("JOBQUEUE_QUEUE", "orders"))


def executions_key(queue: str) -> str:
    """The hash of receipts: job id -> times the handler ran to its end."""
    return f"demo:{{{queue}}}:executions"


def _duration_range() -> tuple[float, float]:
    low, _, high = os.environ.get("DEMO_JOB_MS", "20-50").partition("-")
    return float(low) / 1000, float(high or low) / 1000


class Order(BaseModel):
    order_id: int = Field(ge=0)
    work_ms: float | None = Field(None, ge=0, description="Simulated work; default from DEMO_JOB_MS.")


_receipts: aioredis.Redis | None = None
_DURATION = _duration_range()


async def _record(job_id: str) -> None:
    """Write the receipt, riding out a Redis restart (a lost receipt would read as a lost job)."""
    global _receipts
    if _receipts is None:
        _receipts = connect(os.environ.get("JOBQUEUE_REDIS_URL", "redis://localhost:6379/0"))
    for attempt in range(60):
        try:
            await _receipts.hincrby(executions_key(app.queue), job_id, 1)
            return
        except (ConnectionError, OSError, aioredis.RedisError):
            await asyncio.sleep(min(0.1 * 2**attempt, 1.0))
    raise RuntimeError(f"could not record the receipt of job {job_id}")


@app.job()
async def process_order(ctx: JobContext, payload: Order) -> dict[str, int]:
    seconds = payload.work_ms / 1000 if payload.work_ms is not None else random.uniform(*_DURATION)
    await asyncio.sleep(seconds)
    await _record(ctx.job_id)
    return {"order_id": payload.order_id}
