"""``jobqueue dev -f jobqueue.yaml [--redis URL]``: the operator's loop over local worker processes.

Reads JobQueue manifests (multi-document YAML; other kinds are ignored), validates them with the
operator's models and runs ``scaling_pass.run_pass`` every polling interval with a local actuator.
Without ``--redis`` it starts an embedded redis-server on a free port. Ctrl-C or SIGTERM drains the
workers (SIGTERM, in-flight jobs finish) and stops the embedded server: nothing is left running.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry, start_http_server
from rich.console import Console

from jobqueue_operator.dev import loop as devloop
from jobqueue_operator.dev import view
from jobqueue_operator.metrics import OperatorMetrics
from worker_runtime import exposition
from worker_runtime.embedded_redis import RedisServer, RedisServerError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jobqueue dev", description=__doc__.splitlines()[0])
    parser.add_argument(
        "-f", "--file", type=Path, action="append", required=True, help="JobQueue manifest(s); repeatable"
    )
    parser.add_argument("--redis", metavar="URL", help="Redis URL; default: an embedded redis-server")
    parser.add_argument("--log-dir", type=Path, help="worker logs, a file per process (default: temp dir)")
    parser.add_argument("--duration", type=float, help="stop after this many seconds (default: until Ctrl-C)")
    parser.add_argument("--no-live", action="store_true", help="print changes, not a live view")
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=8080,
        help="serve the operator's /metrics on 127.0.0.1 at this port, for a local Prometheus; "
        "0 turns it off (default: %(default)s)",
    )
    return parser


def serve_metrics(port: int, console: Console) -> OperatorMetrics | None:
    """The operator's metrics, served on loopback as ``jobqueue operator run`` serves them; a port
    in use is a warning, not an error: dev mode is for trying a spec, and runs without them."""
    if not port:
        return None
    registry = CollectorRegistry()
    exposition.add_process_metrics(registry, "operator")
    metrics = OperatorMetrics(registry)
    try:
        start_http_server(port, addr="127.0.0.1", registry=exposition.without_created(registry))
    except OSError as exc:
        console.print(
            f"[yellow]operator metrics not served: port {port}: {exc.strerror or exc}[/] "
            "(--metrics-port PORT picks another, 0 turns them off)"
        )
        return None
    console.print(f"operator metrics on http://127.0.0.1:{port}/metrics")
    return metrics


@contextlib.contextmanager
def redis_for(url: str | None, console: Console) -> Iterator[str]:
    """The given URL, or an embedded redis-server's for the duration of the block."""
    if url:
        yield url
        return
    with RedisServer() as server:
        console.print(f"[bold]embedded redis-server[/] {server.version()} at {server.url} (stopped on exit)")
        yield server.url


async def run(
    targets: list[devloop.DevTarget],
    redis_url: str,
    *,
    log_dir: Path,
    duration: float | None,
    console: Console,
    live: bool,
    metrics: OperatorMetrics | None = None,
) -> list[view.QueueSummary]:
    """Run the loop until SIGINT/SIGTERM (or ``duration``), drain the workers, return the summary."""
    stop = asyncio.Event()
    aio = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        aio.add_signal_handler(sig, stop.set)
    if duration is not None:
        aio.call_later(duration, stop.set)
    printer = None if live else _printer(console)
    loop = devloop.DevLoop(targets, redis_url, log_dir=log_dir, on_pass=printer, metrics=metrics)
    try:
        with view.LiveView(loop, console, enabled=live):
            await loop.run(stop)
    finally:
        console.print("stopping: draining workers (SIGTERM, in-flight jobs finish)...")
        clean = await loop.aclose()
        for sig in (signal.SIGINT, signal.SIGTERM):
            aio.remove_signal_handler(sig)
    summaries = [view.summarize(r) for r in loop.runs]
    console.print(view.summary_table(summaries))
    if not clean:
        console.print("[yellow]some workers outlived their grace period and were killed[/]")
    return summaries


def _printer(console: Console) -> Callable[[devloop.DevLoop], None]:
    seen: dict[str, tuple[int, int]] = {}

    def on_pass(loop: devloop.DevLoop) -> None:
        for run in loop.runs:
            key = (len(run.actuator.running), run.desired)
            if seen.get(run.name) != key:
                seen[run.name] = key
                obs = run.last_observation
                waiting = obs.waiting if obs else "-"
                console.print(
                    f"{time.strftime('%H:%M:%S')} {run.name}: waiting={waiting} workers={key[0]} "
                    f"desired={key[1]} ({run.reason})"
                )

    return on_pass


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    console = Console()
    try:
        targets = devloop.load_targets(args.file)
    except devloop.ManifestError as exc:
        console.print(f"[red]error:[/] {exc}")
        sys.exit(2)
    for t in targets:
        console.print(f"JobQueue {t.jobqueue.metadata.name}: queue {t.jobqueue.queue_name!r}, app {t.app}")
    with contextlib.ExitStack() as stack:
        log_dir = args.log_dir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="jobqueue-dev-"))
        )
        console.print(f"worker logs in {log_dir}")
        try:
            url = stack.enter_context(redis_for(args.redis, console))
        except RedisServerError as exc:
            console.print(f"[red]error:[/] {exc}")
            sys.exit(1)
        metrics = serve_metrics(args.metrics_port, console)
        asyncio.run(
            run(
                targets,
                url,
                log_dir=log_dir,
                duration=args.duration,
                console=console,
                live=not args.no_live,
                metrics=metrics,
            )
        )
