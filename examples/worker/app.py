"""A sample worker app: the `emails` queue with two handlers.

Run it locally against a Redis (`JOBQUEUE_REDIS_URL`, default redis://localhost:6379/0):

    jobqueue worker app:app
    jobqueue enqueue emails send_email '{"to": "ada@example.com", "subject": "Hi", "body": "..."}'

The handlers only pretend to work (they sleep `EXAMPLE_JOB_SECONDS`, default 0.5 s), so a burst of
jobs keeps the workers busy long enough for the operator to scale them.
"""

from __future__ import annotations

import asyncio
import os
import time

from pydantic import BaseModel, Field

from worker_runtime import App, JobContext, Permanent

JOB_SECONDS = float(os.environ.get("EXAMPLE_JOB_SECONDS", "0.5"))

app = App("emails")


class EmailPayload(BaseModel):
    """A payload that does not validate is a permanent failure, never a retry loop."""

    to: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    subject: str = Field(max_length=200)
    body: str = ""


class ThumbnailPayload(BaseModel):
    image_url: str
    width: int = Field(128, ge=16, le=2048)


@app.job()
async def send_email(ctx: JobContext, payload: EmailPayload) -> dict[str, str]:
    """An async handler: runs on the worker's event loop, many at once."""
    if payload.to.endswith("@invalid.example"):
        # Retrying cannot help: dead-letter it at once.
        raise Permanent(f"no mail server for {payload.to}")
    await ctx.set_progress({"step": "sending"})
    await asyncio.sleep(JOB_SECONDS)
    return {"to": payload.to, "status": "sent", "attempt": str(ctx.attempt)}


@app.job(timeout=30)
def render_thumbnail(ctx: JobContext, payload: ThumbnailPayload) -> dict[str, int | str]:
    """A plain function: runs in a worker thread, so blocking work does not stall the loop."""
    ctx.set_progress_sync({"step": "rendering"})
    time.sleep(JOB_SECONDS)
    return {"image_url": payload.image_url, "width": payload.width}
