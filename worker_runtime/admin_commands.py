"""The admin subcommands of ``jobqueue``: enqueue, stats, the dead-letter set (list, replay,
purge) and flow control (pause, resume, limit). Each takes the parsed arguments of its subcommand
(``cli.build_parser``); a user's mistake is a ``cli_errors.CommandError``, which ``cli.main``
prints as one line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pydantic

from worker_runtime.cli_errors import RUNTIME, USAGE, CommandError, settings_problem
from worker_runtime.connection import connect
from worker_runtime.endpoint import TlsOptions
from worker_runtime.errors import JobNotFound, RedisUnavailable
from worker_runtime.flow import Breaker, FlowConfig
from worker_runtime.options import JobSpec
from worker_runtime.producer import ENQUEUE_BATCH
from worker_runtime.queue import Queue
from worker_runtime.settings import RedisTlsSettings, WorkerSettings
from worker_runtime.states import STATES, JobState

DEFAULT_REDIS_URL: str = WorkerSettings.model_fields["redis_url"].default


def redis_url(args: argparse.Namespace) -> str:
    """``--redis-url``, else ``$JOBQUEUE_REDIS_URL``, else the default. Only that variable is read
    (and the TLS ones): a bad value in another ``JOBQUEUE_*`` variable must not break an admin command."""
    return args.redis_url or os.environ.get("JOBQUEUE_REDIS_URL") or DEFAULT_REDIS_URL


def redis_tls() -> TlsOptions:
    """TLS from the ``JOBQUEUE_REDIS_TLS*`` variables only (a worker image's, mounted from Secrets)."""
    try:
        return RedisTlsSettings().redis_tls_options()
    except pydantic.ValidationError as exc:
        raise CommandError(settings_problem(exc, {}), USAGE) from None


@contextlib.asynccontextmanager
async def open_queue(args: argparse.Namespace) -> AsyncIterator[Queue]:
    client = connect(redis_url(args), tls=redis_tls())
    queue = Queue(args.queue, client, enqueue_timeout=args.timeout)
    try:
        yield queue
    finally:
        await queue.aclose()
        await client.aclose()


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Plain aligned columns: the admin commands run inside worker images, which carry no
    terminal-UI library (a few lines of padding do not need one)."""
    cells = [list(header), *([str(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join([title, *lines])


def parse_payload(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CommandError(
            f'the payload is not JSON ({exc}); quote it for the shell: \'{{"to": "x"}}\'', USAGE
        ) from None


async def enqueue(args: argparse.Namespace) -> None:
    payload = parse_payload(args.payload)
    if args.job_id is not None and args.count > 1:
        raise CommandError("--job-id names one job: it cannot go with --count", USAGE)
    spec = JobSpec(
        args.name,
        payload,
        job_id=args.job_id,
        priority=args.priority,
        delay=args.delay,
        ttl=args.ttl,
        group=args.group,
    )
    async with open_queue(args) as queue:
        done = 0
        try:
            while done < args.count:
                jobs = await queue.enqueue_many([spec] * min(ENQUEUE_BATCH, args.count - done))
                done += len(jobs)
        except RedisUnavailable as exc:
            if done:
                raise CommandError(f"enqueued {done} of {args.count} jobs, then: {exc}", RUNTIME) from None
            raise
    if args.count > 1:
        print(f"enqueued {args.count} jobs")
    elif jobs[0].created:
        print(jobs[0].id)
    else:
        print(f"{jobs[0].id} (already enqueued, {jobs[0].state}: not written again)")


async def cancel(args: argparse.Namespace) -> None:
    """Cancel each job; one that could not be (none, running, finished) is named, exit 1."""
    async with open_queue(args) as queue:
        refused = [job_id for job_id in args.job_ids if not await queue.cancel(job_id)]
    print(f"cancelled {len(args.job_ids) - len(refused)} job(s)")
    if refused:
        raise CommandError(
            f"not waiting, delayed or retrying (left as they are): {' '.join(refused)}", RUNTIME
        )


async def stats(args: argparse.Namespace) -> None:
    async with open_queue(args) as queue:
        observed = await queue.stats()
    rows: list[tuple[object, ...]] = [(state, getattr(observed, state)) for state in STATES]
    if observed.group_held:
        rows.append(("  of them held by group limits", observed.group_held))
    rows.append(("oldest ready age", f"{observed.oldest_ready_age_s:.1f}s"))
    print(table(f"queue {args.queue}", ("state", "jobs"), rows))
    print(describe_flow(observed.flow, observed.rate_used))
    for breaker in observed.breakers:
        print(f"breaker of {breaker.job}: {breaker.state} (until {breaker.until_ms} ms)")


def describe_flow(config: FlowConfig, rate_used: int | None = None) -> str:
    """Flow control in one line: ``claims: running; rate limit 50/1s; max running 3``."""
    parts = ["claims: paused" if config.paused else "claims: running"]
    if config.rate_limit is not None:
        used = "" if rate_used is None else f" ({rate_used} started in this window)"
        parts.append(f"rate limit {config.rate_limit.jobs}/{config.rate_limit.seconds:g}s{used}")
    if config.group_rate_limit is not None:
        parts.append(f"group rate limit {config.group_rate_limit.jobs}/{config.group_rate_limit.seconds:g}s")
    if config.max_running is not None:
        parts.append(f"max running {config.max_running}")
    if config.breaker is not None:
        parts.append(describe_breaker(config.breaker))
    return "; ".join(parts)


def describe_breaker(breaker: Breaker) -> str:
    """``breakers at 5 failures in a row or a failure ratio of 0.5 among >= 10 attempts in 60s,
    cool-off 30s``."""
    triggers = []
    if breaker.failures is not None:
        triggers.append(f"{breaker.failures} failures in a row")
    if breaker.failure_ratio is not None:
        triggers.append(
            f"a failure ratio of {breaker.failure_ratio:g} among >= {breaker.min_attempts} attempts "
            f"in {breaker.window_seconds:g}s"
        )
    return f"breakers at {' or '.join(triggers)}, cool-off {breaker.cooloff_seconds:g}s"


async def pause(args: argparse.Namespace) -> None:
    async with open_queue(args) as queue:
        print(describe_flow(await queue.pause()))


async def resume(args: argparse.Namespace) -> None:
    async with open_queue(args) as queue:
        print(describe_flow(await queue.resume()))


async def limit(args: argparse.Namespace) -> None:
    """``--rate`` and ``--group-rate JOBS/SECONDS`` or ``off``, ``--max-running N`` or ``off``;
    none: show them."""
    async with open_queue(args) as queue:
        config = await queue.flow()
        try:
            if args.rate is not None:
                jobs, seconds = args.rate
                config = await queue.set_rate_limit(jobs, seconds)
            if args.group_rate is not None:
                jobs, seconds = args.group_rate
                config = await queue.set_group_rate_limit(jobs, seconds)
            if args.max_running is not None:
                config = await queue.set_max_running(None if args.max_running == "off" else args.max_running)
            if args.breaker == "off":
                config = await queue.set_breaker(None)
            elif args.breaker is not None:
                b: Breaker = args.breaker
                config = await queue.set_breaker(
                    b.failures, b.cooloff_seconds, failure_ratio=b.failure_ratio,
                    window_seconds=b.window_seconds, min_attempts=b.min_attempts,
                )  # fmt: skip
        except ValueError as exc:
            raise CommandError(str(exc), USAGE) from None
    print(describe_flow(config))


async def dead(args: argparse.Namespace) -> None:
    ids: list[str] = list(dict.fromkeys(args.job_ids))
    if args.action == "list" and (ids or args.all):
        raise CommandError("list takes no job ids and no --all (--limit says how many)", USAGE)
    if ids and args.all:
        raise CommandError("give job ids or --all, not both", USAGE)
    async with open_queue(args) as queue:
        if args.action == "list":
            jobs = await queue.dead_jobs(limit=args.limit)
            rows = [(j.id, j.name, j.attempts_made, j.error or "") for j in jobs]
            print(table(f"dead jobs of {args.queue}", ("id", "job", "attempts", "error"), rows))
        elif args.action == "replay":
            await _replay(queue, ids)
        else:
            await _purge(queue, ids, everything=args.all, ask=not args.yes)


async def _replay(queue: Queue, ids: list[str]) -> None:
    """Without ids, everything dead (replaying loses nothing, so it needs no --all)."""
    if not ids:
        print(f"replayed {await queue.replay_all_dead()} job(s)")
        return
    replayed, problems = 0, []
    for job_id in ids:
        if await queue.replay_dead(job_id):
            replayed += 1
        else:
            problems.append(await _why_not_dead(queue, job_id))
    if replayed or not problems:
        print(f"replayed {replayed} job(s)")
    if problems:
        raise CommandError("; ".join(problems), RUNTIME)


async def _why_not_dead(queue: Queue, job_id: str) -> str:
    try:
        job = await queue.get_job(job_id)
    except JobNotFound:
        return f"no job {job_id!r} in queue {queue.name!r} (never enqueued, or deleted by retention)"
    return f"job {job_id!r} is {job.state}, not dead: nothing to replay"


async def _purge(queue: Queue, ids: list[str], *, everything: bool, ask: bool) -> None:
    if not ids and not everything:
        raise CommandError("name the dead jobs to purge, or pass --all to purge every one", USAGE)
    not_dead = [i for i in ids if not await _is_dead(queue, i)]
    if everything:
        what = f"all {(await queue.stats()).dead} dead job(s)"
    else:
        shown = ", ".join(ids[:3]) + (", ..." if len(ids) > 3 else "")
        what = f"{len(ids) - len(not_dead)} dead job(s) ({shown})"
    if ask and not _confirm(f"Purge {what} of queue {queue.name}? This cannot be undone. [y/N] "):
        raise CommandError("nothing purged", RUNTIME)
    print(f"purged {await queue.purge_dead(None if everything else ids)} job(s)")
    if not_dead:
        raise CommandError(f"not dead jobs, left alone: {', '.join(not_dead)}", RUNTIME)


async def _is_dead(queue: Queue, job_id: str) -> bool:
    with contextlib.suppress(JobNotFound):
        return (await queue.get_job(job_id)).state is JobState.DEAD
    return False


def _confirm(question: str) -> bool:
    try:
        answer = input(question)
    except EOFError:  # nothing to read (stdin closed): not a yes
        print()
        return False
    return answer.strip().lower() in {"y", "yes"}
