"""Handlers the benchmarks run in worker processes."""

from __future__ import annotations

import time
from typing import Any

from worker_runtime import App, JobContext

app = App("bench")


@app.job()
async def noop(ctx: JobContext, payload: Any) -> None:
    return None


@app.job()
def noop_sync(ctx: JobContext, payload: Any) -> None:
    """A plain ``def`` handler: what a job costs that runs in the worker's child processes."""
    return None


@app.job()
async def stamp(ctx: JobContext, payload: Any) -> float:
    """Return the wall-clock time the handler started, to measure pickup latency."""
    return time.time()
