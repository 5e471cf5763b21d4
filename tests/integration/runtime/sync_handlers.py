"""Plain ``def`` handlers for in-process worker tests. They run in the worker's child processes,
which import them by reference: a ``def`` handler must be defined at module level."""

from __future__ import annotations

import os
from typing import Any

from worker_runtime import JobContext


def shout(ctx: JobContext, payload: str) -> dict[str, Any]:
    ctx.set_progress_sync({"step": "upper"})
    return {"text": payload.upper(), "pid": os.getpid()}
