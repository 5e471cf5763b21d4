"""The ``jobqueue`` command: run a worker, enqueue, inspect a queue and its dead-letter set.

More subcommands (``operator``, ``dev``) come from the ``jobqueue.commands`` entry-point group: each
entry is a ``main(argv)`` called with the rest of the command line, so this runtime package never
imports the operator.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import Any

from rich.console import Console
from rich.table import Table

from worker_runtime.app import App
from worker_runtime.connection import connect
from worker_runtime.queue import JobSpec, Queue
from worker_runtime.settings import WorkerSettings

console = Console()


def load_app(target: str) -> App:
    """Import ``module:attribute`` (default attribute ``app``) and check it is an App."""
    module_name, _, attribute = target.partition(":")
    sys.path.insert(0, os.getcwd())
    app = getattr(importlib.import_module(module_name), attribute or "app")
    if not isinstance(app, App):
        raise SystemExit(f"{target} is a {type(app).__name__}, not a worker_runtime.App")
    return app


async def run_worker(app: App, settings: WorkerSettings) -> None:
    from worker_runtime import http_server
    from worker_runtime.worker import Worker

    client = connect(settings.redis_url)
    worker = Worker(app, client, settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    server = None
    if settings.metrics_port:
        server = http_server.serve(settings.metrics_port, worker.metrics.registry, lambda: worker.healthy)
    try:
        await worker.run()
    finally:
        if server is not None:
            server.shutdown()
        await client.aclose()


def _worker_command(args: argparse.Namespace) -> None:
    overrides = {
        k: v
        for k, v in {
            "redis_url": args.redis_url,
            "concurrency": args.concurrency,
            "metrics_port": args.metrics_port,
        }.items()
        if v is not None
    }
    app = load_app(args.app)
    settings = WorkerSettings(**({"queue": app.queue} | overrides))
    # Everything imported so far lives as long as the process: keep it out of the collector, so a
    # full collection walks only what jobs allocate (20-30 ms pauses between jobs otherwise).
    gc.collect()
    gc.freeze()
    asyncio.run(run_worker(app, settings))


def _queue(args: argparse.Namespace) -> Queue:
    return Queue(args.queue, connect(args.redis_url or WorkerSettings().redis_url))


async def _enqueue(args: argparse.Namespace) -> None:
    queue = _queue(args)
    payload = json.loads(args.payload)
    specs = [JobSpec(args.name, payload, priority=args.priority, delay=args.delay) for _ in range(args.count)]
    for start in range(0, len(specs), 1000):
        jobs = await queue.enqueue_many(specs[start : start + 1000])
        if args.count == 1:
            console.print(jobs[0].id)
    if args.count > 1:
        console.print(f"enqueued {args.count} jobs")
    await queue.redis.aclose()


async def _stats(args: argparse.Namespace) -> None:
    queue = _queue(args)
    stats = await queue.stats()
    table = Table("state", "jobs", title=f"queue {args.queue}")
    for field in ("waiting", "delayed", "active", "completed", "failed", "dead"):
        table.add_row(field, str(getattr(stats, field)))
    table.add_row("oldest ready age", f"{stats.oldest_ready_age_s:.1f}s")
    console.print(table)
    await queue.redis.aclose()


async def _dead(args: argparse.Namespace) -> None:
    queue = _queue(args)
    if args.action == "list":
        table = Table("id", "job", "attempts", "error", title=f"dead jobs of {args.queue}")
        for job in await queue.dead_jobs(limit=args.limit):
            table.add_row(job.id, job.name, str(job.attempts_made), job.error or "")
        console.print(table)
    elif args.action == "replay":
        count = (
            await queue.replay_all_dead()
            if args.job_id is None
            else int(await queue.replay_dead(args.job_id))
        )
        console.print(f"replayed {count} job(s)")
    else:
        console.print(f"purged {await queue.purge_dead()} job(s)")
    await queue.redis.aclose()


def _async(fn: Callable[[argparse.Namespace], Any]) -> Callable[[argparse.Namespace], None]:
    return lambda args: asyncio.run(fn(args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jobqueue", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default=os.environ.get("JOBQUEUE_LOG_LEVEL", "INFO"))
    sub = parser.add_subparsers(dest="command", required=True)

    worker = sub.add_parser("worker", help="run a worker for module:app (settings from JOBQUEUE_* env)")
    worker.add_argument("app", help="module:attribute of a worker_runtime.App")
    worker.add_argument("--redis-url")
    worker.add_argument("--concurrency", type=int)
    worker.add_argument("--metrics-port", type=int)
    worker.set_defaults(func=_worker_command)

    def queue_command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("queue")
        p.add_argument("--redis-url", help="default: $JOBQUEUE_REDIS_URL")
        return p

    enqueue = queue_command("enqueue", "enqueue jobs")
    enqueue.add_argument("name")
    enqueue.add_argument("payload", nargs="?", default="null", help="JSON payload")
    enqueue.add_argument("--count", type=int, default=1)
    enqueue.add_argument("--priority", type=int)
    enqueue.add_argument("--delay", type=float)
    enqueue.set_defaults(func=_async(_enqueue))

    queue_command("stats", "show a queue's depth by state").set_defaults(func=_async(_stats))

    dead = queue_command("dead", "list, replay or purge dead-lettered jobs")
    dead.add_argument("action", choices=["list", "replay", "purge"])
    dead.add_argument("job_id", nargs="?")
    dead.add_argument("--limit", type=int, default=50)
    dead.set_defaults(func=_async(_dead))

    # Plugins parse their own arguments; they are imported only when chosen, so a worker image
    # without the operator's dependencies still starts.
    for entry in entry_points(group="jobqueue.commands"):
        plugin = sub.add_parser(entry.name, help=f"{entry.name} commands ({entry.module})", add_help=False)
        plugin.add_argument("args", nargs=argparse.REMAINDER)
        plugin.set_defaults(func=lambda a, entry=entry: entry.load()(a.args), plugin=True)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if getattr(args, "plugin", False):
        # argparse refuses options (``dev -f x``) before a REMAINDER: hand the plugin its argv as is.
        given = list(sys.argv[1:] if argv is None else argv)
        args.args = given[given.index(args.command) + 1 :]
    elif unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args.func(args)
