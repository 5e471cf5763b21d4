"""An app for worker subprocesses in tests; the queue name comes from ``TEST_QUEUE``."""

from __future__ import annotations

import asyncio
import os

from worker_runtime import App, JobContext

app = App(os.environ.get("TEST_QUEUE", "test"))


@app.job()
async def sleep(ctx: JobContext, payload: float) -> str:
    await asyncio.sleep(payload)
    return f"slept {payload}s on attempt {ctx.attempt}"
