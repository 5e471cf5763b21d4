"""The worker app of the monitoring tier: jobs that complete, fail once, or can never succeed.

The queue name comes from ``TEST_QUEUE``. ``flaky`` fails its first attempt (a retry, after a short
backoff) and completes on the second; ``poison`` fails permanently (dead-lettered at once).
"""

from __future__ import annotations

import asyncio
import os

from worker_runtime import App, Backoff, JobContext, Permanent

app = App(os.environ.get("TEST_QUEUE", "test"))


@app.job()
async def ok(ctx: JobContext, payload: float) -> None:
    await asyncio.sleep(payload)


@app.job(attempts=3, backoff=Backoff(base=0.2, cap=0.5))
async def flaky(ctx: JobContext, payload: float) -> None:
    await asyncio.sleep(payload)
    if ctx.attempt == 1:
        raise RuntimeError("the first attempt fails")


@app.job()
async def poison(ctx: JobContext, payload: None) -> None:
    raise Permanent("this job can never succeed")
