"""Apps the CLI tests point ``jobqueue worker`` at: one that is fine, one that fails on import, and
an attribute that is not an App. The queue name comes from ``TEST_QUEUE``."""

from __future__ import annotations

import os

from worker_runtime import App, JobContext

app = App(os.environ.get("TEST_QUEUE", "test"))
not_an_app = {"queue": "test"}


@app.job()
async def noop(ctx: JobContext, payload: object) -> None:
    return None
