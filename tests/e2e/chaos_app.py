"""The demo's worker app plus a job that kills its worker, for the chaos test.

``kill_worker`` stands for a segfault or an OOM kill in native code: the whole process dies at
once, taking the jobs running beside it down too.
"""

from __future__ import annotations

import os

from examples.demo_app import app
from worker_runtime import JobContext

__all__ = ["app"]


@app.job()
async def kill_worker(ctx: JobContext, payload: None) -> None:
    os._exit(1)
