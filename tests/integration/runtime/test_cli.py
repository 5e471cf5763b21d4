"""The ``jobqueue`` command as a newcomer meets it: the real CLI, as a subprocess, on a real redis-server.

A user's mistake ends in one line on stderr saying what is wrong, never a traceback: exit code 2
for a usage error (a bad argument, option or ``JOBQUEUE_*`` value), 1 for a runtime one (Redis
unreachable or refusing us, a port in use, a module that fails on import, nothing to replay).

| case                                              | exit | the line says                                 |
| ------------------------------------------------- | ---- | --------------------------------------------- |
| payload not JSON, priority/delay out of range     | 2    | what is wrong with it                         |
| bad queue name, ``--count 0``, ``--limit -1``     | 2    | the rule                                      |
| ``--concurrency 0``, ``JOBQUEUE_CONCURRENCY=abc`` | 2    | the option or the variable                    |
| module missing / raising on import / not an App   | 2/1/2 | the module, the error and where              |
| Redis unreachable / wrong password                | 1    | unreachable (refused) / the credentials       |
| metrics port in use                               | 1    | the port, and how to choose another           |
| ``dead purge`` without ids or ``--all``            | 2    | name the jobs                                 |
| ``dead purge --all``, answered no / yes / --yes   | 1/0/0 | nothing purged / purged N                    |
| ``dead replay`` of an id that is not dead         | 1    | no dead job, and what the id is               |
| ``--version``, ``--help`` of every command        | 0    | the version; units and defaults, no reST      |
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.integration.runtime.test_dead_letter import _dead
from worker_runtime import JobState, Queue
from worker_runtime.embedded_redis import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[3]
APPS = "tests.integration.runtime.cli_apps"


def jobqueue(
    *args: str, env: dict[str, str] | None = None, stdin: str = "", timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    variables = {k: v for k, v in os.environ.items() if not k.startswith("JOBQUEUE_")}
    variables |= {"PYTHONPATH": str(ROOT), "JOBQUEUE_METRICS_PORT": "0", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "worker_runtime", *args],
        input=stdin, capture_output=True, text=True, env=variables, cwd=ROOT, timeout=timeout,
    )  # fmt: skip


def one_line_error(result: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    """The process failed with ``code`` and said so in one line, naming ``words``; no traceback."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word.lower() in lines[0].lower(), lines[0]
    return lines[0]


@pytest.fixture
def url(redis_url: str) -> str:
    return redis_url


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["job", "{not json"], ["payload", "not JSON"]),
        (["job", "--priority", "10000000"], ["priority", "1000000"]),
        (["job", "--delay", "-1"], ["delay", ">= 0"]),
        (["job", "--delay", "1e12"], ["delay", "at most"]),
        (["job", "--ttl", "abc"], ["--ttl", "abc"]),
        (["job", "--count", "0"], ["--count", "at least 1"]),
        (["job", "--count", "-5"], ["--count", "at least 1"]),
    ],
    ids=["json", "priority", "negative-delay", "huge-delay", "ttl-word", "count-0", "count-negative"],
)
def test_bad_enqueue_arguments_are_usage_errors(
    url: str, queue_name: str, args: list[str], words: list[str]
) -> None:
    one_line_error(jobqueue("enqueue", queue_name, *args, "--redis-url", url), 2, *words)


def test_enqueue_count_and_job_id(url: str, queue_name: str) -> None:
    done = jobqueue("enqueue", queue_name, "job", '{"n": 1}', "--job-id", "order-1", "--redis-url", url)
    assert done.returncode == 0 and done.stdout.strip() == "order-1", done.stderr
    again = jobqueue("enqueue", queue_name, "job", "--job-id", "order-1", "--redis-url", url)
    assert again.returncode == 0 and "already" in again.stdout, again.stdout
    many = jobqueue("enqueue", queue_name, "job", "--count", "3", "--redis-url", url)
    assert many.returncode == 0 and "enqueued 3 jobs" in many.stdout
    one_line_error(
        jobqueue("enqueue", queue_name, "job", "--count", "2", "--job-id", "x", "--redis-url", url),
        2,
        "--job-id",
    )


def test_a_bad_queue_name_is_a_usage_error(url: str) -> None:
    one_line_error(jobqueue("stats", "bad{name}", "--redis-url", url), 2, "queue name")
    one_line_error(jobqueue("enqueue", "a:b", "job", "--redis-url", url), 2, "queue name")
    one_line_error(jobqueue("dead", "has space", "list", "--redis-url", url), 2, "queue name")


def test_unreachable_redis_is_one_line(queue_name: str) -> None:
    down = f"redis://127.0.0.1:{free_port()}/0"
    for command in (["stats", queue_name], ["enqueue", queue_name, "job"], ["dead", queue_name, "list"]):
        result = jobqueue(*command, "--redis-url", down, "--timeout", "1")
        one_line_error(result, 1, "unreachable", "refused")


@pytest.fixture
def protected() -> Iterator[RedisServer]:
    with RedisServer(extra_args=["--requirepass", "s3cret"]) as server:
        yield server


def test_a_wrong_password_is_one_line(protected: RedisServer, queue_name: str) -> None:
    url = f"redis://:wrong@127.0.0.1:{protected.port}/0"
    one_line_error(jobqueue("stats", queue_name, "--redis-url", url), 1, "credentials")
    env = {"JOBQUEUE_REDIS_URL": f"redis://127.0.0.1:{protected.port}/0", "TEST_QUEUE": queue_name}
    one_line_error(jobqueue("enqueue", queue_name, "job", env=env), 1, "credentials")


@pytest.mark.parametrize(
    ("target", "code", "words"),
    [
        ("no_such_module:app", 2, ["no_such_module", "not found"]),
        (f"{APPS}:nope", 2, ["nope"]),
        (f"{APPS}:not_an_app", 2, ["not_an_app", "not a worker_runtime.App"]),
        ("tests.integration.runtime.cli_broken_app", 1, ["ZeroDivisionError", "cli_broken_app.py", "line 6"]),
        ("", 2, ["module:attribute"]),
    ],
    ids=["missing", "no-attribute", "not-an-app", "raises-on-import", "empty"],
)
def test_a_bad_worker_module_is_one_line(url: str, target: str, code: int, words: list[str]) -> None:
    one_line_error(jobqueue("worker", target, "--redis-url", url), code, *words)


@pytest.mark.parametrize(
    ("options", "env", "words"),
    [
        (["--concurrency", "0"], {}, ["--concurrency", "at least 1"]),
        (["--metrics-port", "70000"], {}, ["--metrics-port", "65535"]),
        ([], {"JOBQUEUE_CONCURRENCY": "abc"}, ["JOBQUEUE_CONCURRENCY", "abc"]),
        ([], {"JOBQUEUE_LEASE_SECONDS": "-1"}, ["JOBQUEUE_LEASE_SECONDS", "greater than 0"]),
        (["--log-level", "LOUD"], {}, ["--log-level", "LOUD"]),
        ([], {"JOBQUEUE_LOG_LEVEL": "LOUD"}, ["JOBQUEUE_LOG_LEVEL", "LOUD"]),
    ],
    ids=["concurrency-0", "port-range", "env-not-int", "env-negative", "log-level", "env-log-level"],
)
def test_bad_worker_settings_are_usage_errors(
    url: str, queue_name: str, options: list[str], env: dict[str, str], words: list[str]
) -> None:
    result = jobqueue(
        "worker", f"{APPS}:app", "--redis-url", url, *options, env={"TEST_QUEUE": queue_name, **env}
    )
    one_line_error(result, 2, *words)


def test_a_metrics_port_in_use_says_which_and_how_to_change_it(url: str, queue_name: str) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = jobqueue("worker", f"{APPS}:app", "--redis-url", url, "--metrics-port", port,
                          env={"TEST_QUEUE": queue_name})  # fmt: skip
    one_line_error(result, 1, port, "in use", "--metrics-port", "JOBQUEUE_METRICS_PORT")


async def test_dead_list_replay_and_purge(redis: aioredis.Redis, url: str, queue_name: str) -> None:
    queue = Queue(queue_name, redis)
    dead = await _dead(redis, queue, 3)
    listed = jobqueue("dead", queue_name, "list", "--redis-url", url)
    assert listed.returncode == 0 and all(i in listed.stdout for i in dead), listed.stdout
    assert not any(
        i in jobqueue("dead", queue_name, "list", "--limit", "0", "--redis-url", url).stdout for i in dead
    )
    one_line_error(jobqueue("dead", queue_name, "list", "--limit", "-1", "--redis-url", url), 2, "--limit")

    one_line_error(jobqueue("dead", queue_name, "purge", "--redis-url", url), 2, "--all")
    refused = jobqueue("dead", queue_name, "purge", "--all", "--redis-url", url, stdin="n\n")
    assert refused.returncode == 1 and "nothing purged" in refused.stderr
    assert "3 dead job" in refused.stdout  # the question named what would go
    assert (await queue.stats()).dead == 3

    one_line_error(jobqueue("dead", queue_name, "replay", "nope", "--redis-url", url), 1, "no job 'nope'")
    waiting = (await queue.enqueue("job")).id
    one_line_error(jobqueue("dead", queue_name, "replay", waiting, "--redis-url", url), 1, waiting, "waiting")
    replayed = jobqueue("dead", queue_name, "replay", dead[0], "--redis-url", url)
    assert replayed.returncode == 0 and "replayed 1 job" in replayed.stdout
    assert (await queue.get_job(dead[0])).state is JobState.WAITING

    one = jobqueue("dead", queue_name, "purge", dead[1], "--yes", "--redis-url", url)
    assert one.returncode == 0 and "purged 1 job" in one.stdout
    assert [j.id for j in await queue.dead_jobs()] == [dead[2]]
    everything = jobqueue("dead", queue_name, "purge", "--all", "--redis-url", url, stdin="y\n")
    assert everything.returncode == 0 and "purged 1 job" in everything.stdout
    assert (await queue.stats()).dead == 0
    await queue.aclose()


def test_version_and_help() -> None:
    version = jobqueue("--version")
    assert version.returncode == 0 and version.stdout.startswith("jobqueue ")
    for command in ([], ["worker"], ["enqueue"], ["stats"], ["dead"]):
        shown = jobqueue(*command, "--help")
        assert shown.returncode == 0, shown.stderr
        assert "``" not in shown.stdout and ":class:" not in shown.stdout, shown.stdout
