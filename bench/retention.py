"""Memory per retained job: what a completed job and a dead-lettered job cost Redis while kept.

Jobs go through the real scripts (enqueue, claim, then complete or a permanent failure) on a
redis-server of their own, with a typical payload (an e-mail job, ~200 bytes of JSON), a small
result, and for dead jobs the error and a real Python traceback (~700 bytes). ``used_memory`` is
read before and after ``--jobs`` jobs of each kind, with retention set to keep them all; the
difference per job is the figure docs/runtime.md quotes (the job hash plus its entry in the
finished set and in the indexes). ``MEMORY USAGE`` of one job hash is reported beside it.

    python -m bench.retention [--jobs 10000] [--out bench/results/retention.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from worker_runtime import connect_sync, scripts  # noqa: E402
from worker_runtime.commands import NewJob, QueueCommands  # noqa: E402
from worker_runtime.embedded_redis import RedisServer  # noqa: E402
from worker_runtime.options import JobOptions  # noqa: E402
from worker_runtime.retention import Keep, Retention  # noqa: E402

PAYLOAD = json.dumps(
    {
        "to": "customer-48213@example.com",
        "subject": "Your order #1048213 has shipped",
        "template": "order-shipped",
        "order_id": 1048213,
        "carrier": "DHL",
        "tracking": "JD014600006281390211",
        "locale": "en-GB",
    },
    separators=(",", ":"),
)
RESULT = json.dumps({"message_id": "<20261201.1048213@mail.example.com>"}, separators=(",", ":"))


def _traceback() -> tuple[str, str]:
    """A real error message and traceback, three frames deep, as a failing handler leaves them."""

    def send(to: str) -> None:
        raise ConnectionRefusedError(f"SMTP server smtp.example.com:587 refused the connection for {to}")

    def render_and_send(payload: dict[str, Any]) -> None:
        send(payload["to"])

    try:
        render_and_send(json.loads(PAYLOAD))
    except ConnectionRefusedError as exc:
        return f"{type(exc).__name__}: {exc}", "".join(traceback.format_exception(exc))
    raise AssertionError("unreachable")


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def fill(client: redis.Redis, commands: QueueCommands, count: int, outcome: str) -> None:
    """``count`` jobs enqueued, claimed and completed (or dead-lettered), 500 at a time."""
    options = JobOptions(attempts=3, timeout=300, backoff=(1, 300))
    error, trace = _traceback()
    for start in range(0, count, 500):
        batch = [
            NewJob(f"{outcome}-{i:08d}", "send_email", PAYLOAD, options) for i in range(start, start + 500)
        ]
        scripts.run_sync(client, commands.enqueue_many(batch))
        claimed = scripts.run_sync(client, commands.claim("bench-worker", len(batch), 600_000, -1))
        if outcome == "completed":
            calls = [commands.complete(j.id, j.token, RESULT) for j in claimed.jobs]
        else:
            calls = [commands.fail(j.id, j.token, error, trace, 0, True) for j in claimed.jobs]
        scripts.run_many_sync(client, calls)


def measure(jobs: int) -> dict[str, Any]:
    keep_all = Keep(count=10_000_000, seconds=365 * 86_400)
    results: dict[str, Any] = {"payload_bytes": len(PAYLOAD), "traceback_bytes": len(_traceback()[1])}
    with RedisServer() as server:
        client = connect_sync(server.url)
        results["redis_version"] = server.version()
        for outcome in ("completed", "dead"):
            commands = QueueCommands(
                f"bench-{outcome}", retention=Retention(completed=keep_all, dead=keep_all)
            )
            before = used_memory(client)
            fill(client, commands, jobs, outcome)
            after = used_memory(client)
            sample = commands.keys.job(f"{outcome}-{0:08d}")
            results[f"{outcome}_bytes_per_job"] = (after - before) / jobs
            results[f"{outcome}_job_hash_memory_usage"] = client.memory_usage(sample)
            results[f"{outcome}_kept"] = client.zcard(commands.keys.of_state(outcome))
        client.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "retention.json")
    args = parser.parse_args()
    results = measure(args.jobs)
    for name, value in results.items():
        print(f"{name:36s} {value:,.0f}" if isinstance(value, int | float) else f"{name:36s} {value}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"benchmark": "retention", "jobs": args.jobs, "results": results}, indent=2) + "\n"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
