"""``jobqueue schedules QUEUE add|list|remove``: a queue's recurring jobs at run time (``schedules``).
A user's mistake is a ``cli_errors.CommandError``, printed as one line."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from worker_runtime import admin_commands
from worker_runtime.cli_errors import RUNTIME, USAGE, CommandError


async def schedules(args: argparse.Namespace) -> None:
    async with admin_commands.open_queue(args) as queue:
        if args.action == "list":
            if args.name or args.job:
                raise CommandError("list takes no schedule name or job", USAGE)
            rows = [
                (info.schedule.name, info.schedule.describe(), _when(info.next_ms))
                for info in await queue.schedules()
            ]
            print(
                admin_commands.table(f"schedules of {args.queue}", ("name", "runs", "next fire (UTC)"), rows)
            )
        elif args.action == "remove":
            if not args.name or args.job:
                raise CommandError("remove takes the schedule's name (and nothing else)", USAGE)
            if not await queue.remove_schedule(args.name):
                raise CommandError(f"no schedule {args.name!r} in queue {args.queue!r}", RUNTIME)
            print(f"removed schedule {args.name}")
        else:
            if not args.name or not args.job or (args.cron is None) == (args.every is None):
                raise CommandError("add takes NAME JOB and one of --cron EXPR and --every SECONDS", USAGE)
            payload = admin_commands.parse_payload(args.payload)
            try:
                changed = await queue.add_schedule(
                    args.name, args.job, cron=args.cron, every=args.every, payload=payload,
                    tz=args.tz, missed=args.missed,
                )  # fmt: skip
            except ValueError as exc:
                raise CommandError(str(exc), USAGE) from None
            print(f"{'added' if changed else 'unchanged:'} schedule {args.name}")


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
