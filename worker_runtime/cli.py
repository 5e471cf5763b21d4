"""The ``jobqueue`` command: run a worker, enqueue, inspect a queue and its dead-letter set.

More subcommands (``operator``, ``dev``, ``simulate``) come from the ``jobqueue.commands``
entry-point group: each entry is a ``main(argv)`` called with the rest of the command line, so
this runtime package never imports the operator. The admin subcommands are in
``admin_commands``; how failures are reported (one line, exit 2 or 1) in ``cli_errors``.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import gc
import importlib
import logging
import math
import os
import signal
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import EntryPoint, PackageNotFoundError, entry_points, version
from typing import Any, NoReturn

import pydantic

from worker_runtime import admin_commands, flow, keys, schedule_commands
from worker_runtime.app import App
from worker_runtime.cli_errors import RUNTIME, USAGE, CommandError, described, settings_problem
from worker_runtime.connection import connect
from worker_runtime.errors import EnqueueError, JobQueueError
from worker_runtime.producer import DEFAULT_ENQUEUE_TIMEOUT_SECONDS, MAX_ENQUEUE_TIMEOUT_SECONDS
from worker_runtime.settings import WorkerSettings

DESCRIPTION = "Run a worker, enqueue jobs, and inspect a queue and its dead-letter set."
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Worker settings that have a command-line option, by field.
WORKER_OPTIONS = {
    "redis_url": "--redis-url",
    "concurrency": "--concurrency",
    "metrics_port": "--metrics-port",
}


def load_app(target: str) -> App:
    """Import ``module:attribute`` (default attribute ``app``) and check it is an App."""
    module_name, _, attribute = target.partition(":")
    if not module_name:
        raise CommandError("give the app as module:attribute, e.g. myproject.jobs:app", USAGE)
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(f"{exc.name}.")):
            raise CommandError(
                f"module {module_name!r} not found: run from the directory that holds it, or set PYTHONPATH",
                USAGE,
            ) from None
        raise CommandError(f"importing {module_name} failed: {described(exc)}", RUNTIME) from None
    except Exception as exc:  # the module's own code raised: say what and where, in one line
        raise CommandError(f"importing {module_name} failed: {described(exc)}", RUNTIME) from None
    name = attribute or "app"
    if not hasattr(module, name):
        raise CommandError(f"module {module_name} has no attribute {name!r} (give module:attribute)", USAGE)
    app = getattr(module, name)
    if not isinstance(app, App):
        raise CommandError(f"{module_name}:{name} is a {type(app).__name__}, not a worker_runtime.App", USAGE)
    return app


async def run_worker(app: App, settings: WorkerSettings) -> None:
    from worker_runtime import http_server
    from worker_runtime.worker import Worker

    # The worker's own loops retry (see Worker).
    client = connect(settings.redis_url, tls=settings.redis_tls_options(), retries=0)
    worker = Worker(app, client, settings)
    server = None
    try:
        if settings.metrics_port:
            server = _serve_metrics(http_server, settings.metrics_port, worker)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
        await worker.run()
    finally:
        if server is not None:
            server.shutdown()
        await client.aclose()


def _serve_metrics(http_server: Any, port: int, worker: Any) -> Any:
    try:
        return http_server.serve(port, worker.metrics.registry, lambda: worker.healthy, lambda: worker.alive)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise CommandError(
                f"metrics port {port} is in use (another worker on this machine?): pass --metrics-port or "
                "set JOBQUEUE_METRICS_PORT to a free port, or 0 to run without /metrics and /healthz"
            ) from None
        raise CommandError(f"cannot serve /metrics on port {port}: {exc.strerror or exc}") from None


def _worker_command(args: argparse.Namespace) -> None:
    app = load_app(args.app)
    given = {field: getattr(args, field) for field in WORKER_OPTIONS if getattr(args, field) is not None}
    try:
        settings = WorkerSettings(**given)  # no JOBQUEUE_QUEUE: the App's queue (worker.served_queue)
    except pydantic.ValidationError as exc:
        raise CommandError(settings_problem(exc, {f: WORKER_OPTIONS[f] for f in given}), USAGE) from None
    # Everything imported so far lives as long as the process: keep it out of the collector, so a
    # full collection walks only what jobs allocate (20-30 ms pauses between jobs otherwise).
    gc.collect()
    gc.freeze()
    from worker_runtime.worker import run_process

    run_process(run_worker(app, settings))


def _async(fn: Callable[[argparse.Namespace], Any]) -> Callable[[argparse.Namespace], None]:
    return lambda args: asyncio.run(fn(args))


# The extra that brings each plugin command's dependencies (pyproject.toml).
PLUGIN_EXTRAS = {"operator": "operator", "dev": "local", "simulate": "local"}


def _load_plugin(entry: EntryPoint) -> Callable[[list[str]], None]:
    try:
        main: Callable[[list[str]], None] = entry.load()
    except ModuleNotFoundError as exc:
        extra = PLUGIN_EXTRAS.get(entry.name, entry.name)
        raise SystemExit(
            f"jobqueue {entry.name}: {exc.name} is not installed; pip install 'jobqueue[{extra}]'"
        ) from None
    return main


# --- arguments -------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error said in one line (the usage itself is one --help away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be an integer of at least {minimum}, got {text!r}"
            ) from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer of at least {minimum}, got {text!r}")
        return value

    return parse


def _port(text: str) -> int:
    value = _at_least(0)(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a port in 0..65535, got {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds, got {text!r}")
    return value


def _timeout(text: str) -> float:
    value = _seconds(text)
    if not 0 < value <= MAX_ENQUEUE_TIMEOUT_SECONDS:
        raise argparse.ArgumentTypeError(
            f"must be seconds in (0, {MAX_ENQUEUE_TIMEOUT_SECONDS:g}], got {text!r}"
        )
    return value


def _queue_name(text: str) -> str:
    try:
        keys.validate_queue_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _rate(text: str) -> tuple[int | None, float]:
    if text == "off":
        return None, 1.0
    jobs, _, seconds = text.partition("/")
    try:
        limit = (int(jobs), float(seconds.removesuffix("s") or "1"))  # 50/1 or 50/1s
        flow.check_rate_limit(*limit)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"must be JOBS/SECONDS (e.g. 50/1) or off, got {text!r}: {exc}"
        ) from None
    return limit


# --breaker's KEY=VALUE parts: the option, and how its value reads.
_BREAKER_PARTS: dict[str, tuple[str, type[int] | type[float]]] = {
    "failures": ("failures", int),
    "cooloff": ("cooloff_seconds", float),
    "ratio": ("failure_ratio", float),
    "window": ("window_seconds", float),
    "min": ("min_attempts", int),
}
_BREAKER_SYNTAX = (
    "must be FAILURES/SECONDS (e.g. 5/30), KEY=VALUE,... with keys failures, cooloff, ratio, window, "
    "min (e.g. ratio=0.5,window=60,min=10,cooloff=30; 5/30,ratio=0.5 mixes both), or off"
)


def _breaker(text: str) -> flow.Breaker | str:
    """``off``, the old ``FAILURES[/SECONDS]``, and/or ``KEY=VALUE`` parts (``_BREAKER_PARTS``)."""
    if text == "off":
        return text
    given: dict[str, int | float | None] = {"failures": None, "cooloff_seconds": 30.0}
    try:
        for i, part in enumerate(text.split(",")):
            key, eq, value = part.partition("=")
            if not eq and i == 0:  # FAILURES/SECONDS, as before the other triggers
                failures, _, seconds = part.partition("/")
                given.update(failures=int(failures), cooloff_seconds=float(seconds or "30"))
            elif key.strip() in _BREAKER_PARTS:
                name, kind = _BREAKER_PARTS[key.strip()]
                given[name] = kind(value)
            else:
                raise ValueError(f"unknown part {part!r}")
        return flow.Breaker(**given)  # type: ignore[arg-type]  # the types are checked there
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{_BREAKER_SYNTAX}; got {text!r}: {exc}") from None


def _cap(text: str) -> int | str:
    if text == "off":
        return text
    return _at_least(0)(text)


def _version() -> str:
    try:
        return version("jobqueue")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    defaults = WorkerSettings.model_fields
    log_help = f"one of {', '.join(LOG_LEVELS)} (default: $JOBQUEUE_LOG_LEVEL, else INFO)"
    parser = _Parser(prog="jobqueue", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"jobqueue {_version()}")
    parser.add_argument(
        "--log-level", type=str.upper, default=os.environ.get("JOBQUEUE_LOG_LEVEL", "INFO"), help=log_help
    )
    # Also after the command (``jobqueue worker app --log-level DEBUG``), overriding the one before.
    logs = _Parser(add_help=False)
    logs.add_argument("--log-level", type=str.upper, default=argparse.SUPPRESS, help=log_help)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    worker = sub.add_parser(
        "worker", help="run a worker for module:app", parents=[logs], description="Run a worker. Settings "
        "come from the JOBQUEUE_* variables (worker_runtime/settings.py); these options override them.",
    )  # fmt: skip
    worker.add_argument("app", help="the worker_runtime.App to serve, as module:attribute (attribute: app)")
    worker.add_argument(
        "--redis-url", help=f"Redis URL, redis://[:password@]host:port/db or rediss:// for TLS "
        f"(default: $JOBQUEUE_REDIS_URL, else {defaults['redis_url'].default})",
    )  # fmt: skip
    worker.add_argument(
        "--concurrency", type=_at_least(1), metavar="N",
        help="jobs run at once, 1..10000 "
        f"(default: $JOBQUEUE_CONCURRENCY, else {defaults['concurrency'].default})",
    )  # fmt: skip
    worker.add_argument(
        "--metrics-port", type=_port, metavar="PORT",
        help="port of /metrics and /healthz, 0 to run without them "
        f"(default: $JOBQUEUE_METRICS_PORT, else {defaults['metrics_port'].default})",
    )  # fmt: skip
    worker.set_defaults(func=_worker_command)

    def queue_command(name: str, help_text: str) -> argparse.ArgumentParser:
        description = help_text[0].upper() + help_text[1:] + "."
        p = sub.add_parser(name, help=help_text, description=description, parents=[logs])
        p.add_argument("queue", type=_queue_name, help="the queue's name")
        p.add_argument(
            "--redis-url",
            help=f"Redis URL (default: $JOBQUEUE_REDIS_URL, else {admin_commands.DEFAULT_REDIS_URL})",
        )
        p.add_argument(
            "--timeout", type=_timeout, default=DEFAULT_ENQUEUE_TIMEOUT_SECONDS, metavar="SECONDS",
            help="seconds to keep trying while Redis is unreachable (default: %(default)g)",
        )  # fmt: skip
        return p

    enqueue = queue_command("enqueue", "enqueue jobs")
    enqueue.add_argument("name", help="the job's name (its handler)")
    enqueue.add_argument("payload", nargs="?", default="null", help="the payload, as JSON (default: null)")
    enqueue.add_argument(
        "--count", type=_at_least(1), default=1, metavar="N", help="enqueue N copies (default: %(default)s)"
    )
    enqueue.add_argument(
        "--job-id", help="the job's id, an idempotency key: an id that exists is not enqueued again "
        "(default: a random id)",
    )  # fmt: skip
    enqueue.add_argument(
        "--priority", type=int, metavar="P",
        help=f"lower runs first, an integer in [{keys.PRIORITY_MIN}, {keys.PRIORITY_MAX}] (default: 0)",
    )  # fmt: skip
    enqueue.add_argument(
        "--delay", type=_seconds, metavar="SECONDS",
        help=f"seconds before the job is ready, at most {keys.MAX_DELAY_SECONDS:,} (default: 0, ready now)",
    )  # fmt: skip
    enqueue.add_argument(
        "--ttl", type=_seconds, metavar="SECONDS",
        help="seconds from now within which the job must start, else it expires (default: no limit)",
    )  # fmt: skip
    enqueue.add_argument(
        "--group", metavar="KEY",
        help="the job's group (a tenant, an API key), counted by the queue's group rate limit "
        "(default: none)",
    )  # fmt: skip
    enqueue.set_defaults(func=_async(admin_commands.enqueue))

    queue_command("stats", "show a queue's jobs by state").set_defaults(func=_async(admin_commands.stats))

    cancel = queue_command("cancel", "delete jobs that are waiting, delayed or retrying (not running ones)")
    cancel.add_argument("job_ids", nargs="+", metavar="JOB_ID", help="the jobs to cancel")
    cancel.set_defaults(func=_async(admin_commands.cancel))

    dead = queue_command("dead", "list, replay or purge dead-lettered jobs")
    dead.add_argument(
        "action", choices=["list", "replay", "purge"],
        help="list them (oldest first), replay them (fresh attempts), or purge them (delete)",
    )  # fmt: skip
    dead.add_argument("job_ids", nargs="*", metavar="JOB_ID", help="the jobs to replay or purge")
    dead.add_argument(
        "--limit", type=_at_least(0), default=50, metavar="N", help="jobs to list (default: %(default)s)"
    )
    dead.add_argument(
        "--all", action="store_true", help="replay or purge every dead job (replay without ids does too)"
    )
    dead.add_argument("--yes", action="store_true", help="purge without asking")
    dead.set_defaults(func=_async(admin_commands.dead))

    queue_command("pause", "stop every worker claiming jobs of a queue (running jobs finish)").set_defaults(
        func=_async(admin_commands.pause)
    )
    queue_command("resume", "let the workers of a paused queue claim again").set_defaults(
        func=_async(admin_commands.resume)
    )
    limit = queue_command("limit", "show or set a queue's rate limit and cap on running jobs")
    limit.add_argument(
        "--rate", type=_rate, metavar="JOBS/SECONDS",
        help="start at most JOBS jobs per SECONDS across all workers, e.g. 50/1; off: no limit",
    )  # fmt: skip
    limit.add_argument(
        "--group-rate", type=_rate, metavar="JOBS/SECONDS",
        help="start at most JOBS jobs of each group (enqueue --group) per SECONDS, e.g. 10/1s; a group "
        "over it waits without holding up the others; off: no limit",
    )  # fmt: skip
    limit.add_argument(
        "--max-running", type=_cap, metavar="N",
        help="run at most N jobs at once across all workers; off: no cap",
    )  # fmt: skip
    limit.add_argument(
        "--breaker", type=_breaker, metavar="FAILURES/SECONDS|KEY=VALUE,...",
        help="a circuit breaker per job name: FAILURES failed attempts in a row stop its claims for "
        "SECONDS, e.g. 5/30; or a failure ratio over a sliding window, e.g. "
        "ratio=0.5,window=60,min=10,cooloff=30 (at least min attempts in window seconds, half of "
        "them failed); both: 5/30,ratio=0.5; off: none",
    )  # fmt: skip
    limit.set_defaults(func=_async(admin_commands.limit))

    sched = queue_command("schedules", "add, list or remove a queue's recurring jobs")
    sched.add_argument("action", choices=["add", "list", "remove"], help="list shows each next fire time")
    sched.add_argument("name", nargs="?", help="the schedule's name (add, remove)")
    sched.add_argument("job", nargs="?", help="the job it enqueues (add)")
    sched.add_argument("--cron", metavar="EXPR", help='a cron expression, e.g. "*/5 * * * *"')
    sched.add_argument("--every", type=_seconds, metavar="SECONDS", help="a plain interval instead")
    sched.add_argument("--payload", default="null", help="the jobs' payload, as JSON (default: null)")
    sched.add_argument("--tz", default="UTC", help="the cron expression's time zone (default: UTC)")
    sched.add_argument(
        "--missed", choices=["skip", "catch_up"], default="skip",
        help="a tick missed by over a minute (no worker up): dropped, or fired once (default: skip)",
    )  # fmt: skip
    sched.set_defaults(func=_async(schedule_commands.schedules))

    # Plugins parse their own arguments; they are imported only when chosen, so a worker image
    # without the operator's dependencies still starts.
    for entry in entry_points(group="jobqueue.commands"):
        plugin = sub.add_parser(entry.name, help=f"{entry.name} commands (jobqueue {entry.name} --help)",
                                add_help=False)  # fmt: skip
        plugin.add_argument("args", nargs=argparse.REMAINDER)
        plugin.set_defaults(func=lambda a, entry=entry: _load_plugin(entry)(a.args), plugin=True)
    return parser


def _fail(command: str, message: str, code: int) -> NoReturn:
    print(f"jobqueue {command}: {message}", file=sys.stderr)
    raise SystemExit(code)


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if getattr(args, "plugin", False):
        # argparse refuses options (``dev -f x``) before a REMAINDER: hand the plugin its argv as is.
        given = list(sys.argv[1:] if argv is None else argv)
        args.args = given[given.index(args.command) + 1 :]
    elif unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.log_level not in LOG_LEVELS:
        parser.error(f"--log-level (or $JOBQUEUE_LOG_LEVEL) must be one of {', '.join(LOG_LEVELS)}, "
                     f"got {args.log_level!r}")  # fmt: skip
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        args.func(args)
    except CommandError as exc:
        _fail(args.command, str(exc), exc.code)
    except EnqueueError as exc:  # a job refused before anything was written: the arguments' fault
        _fail(args.command, str(exc), USAGE)
    except JobQueueError as exc:  # Redis unreachable or refusing us, or another runtime failure
        _fail(args.command, str(exc).strip().splitlines()[0], RUNTIME)
    except KeyboardInterrupt:
        _fail(args.command, "interrupted", 130)
