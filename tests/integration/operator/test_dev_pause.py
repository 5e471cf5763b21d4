"""Dev mode pauses exactly as the operator does (one decision, ``spec.paused_by``), over real Redis.

Case matrix: the annotation written ``" True "`` (any case, spaces around) -> paused: the queue is
probed, no worker process starts; ``spec.scaling.paused`` -> paused; neither -> the backlog starts
workers (the test's control). Without an API server's schema in front, dev mode parses as
strictly as the operator: ``paused: "yes"``, a ``scaling`` list or ``maxReplicas: "5"`` stops
``jobqueue dev`` with one line naming the JobQueue and the field, exit code 2, no traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import yaml
from jobqueue_operator import spec
from jobqueue_operator.dev import cli as devcli
from jobqueue_operator.dev import loop as devloop

from worker_runtime import Queue


def manifest(queue: str, annotations: dict[str, str], paused: bool) -> dict[str, Any]:
    container = {"name": "worker", "image": "example/worker:1", "args": ["examples.demo_app:app"]}
    return {
        "apiVersion": spec.API_VERSION,
        "kind": spec.KIND,
        "metadata": {"name": queue, "annotations": annotations},
        "spec": {
            "queue": {"name": queue, "redis": {"urlSecretRef": {"name": "redis", "key": "url"}}},
            "workers": {"concurrency": 1, "template": {"spec": {"containers": [container]}}},
            "scaling": {"maxReplicas": 2, "targets": {"backlogPerReplica": 1}, "paused": paused},
        },
    }


@pytest.mark.parametrize(
    ("annotations", "paused", "expected"),
    [
        ({spec.PAUSED_ANNOTATION: " True "}, False, True),
        ({}, True, True),
        ({}, False, False),
    ],
    ids=["annotation-with-spaces", "spec", "neither"],
)
async def test_dev_loop_pauses_like_the_operator(
    redis: aioredis.Redis,
    redis_url: str,
    queue_name: str,
    tmp_path: Path,
    annotations: dict[str, str],
    paused: bool,
    expected: bool,
) -> None:
    queue = Queue(queue_name, redis)
    for index in range(3):
        await queue.enqueue("work", {"n": index})
    targets = devloop.targets_from_documents([manifest(queue_name, annotations, paused)])
    loop = devloop.DevLoop(targets, redis_url, log_dir=tmp_path)
    try:
        await loop.step()
        run = loop.run_for(queue_name)
        assert run.last_observation is not None and run.last_observation.waiting == 3
        assert (len(run.actuator.running) == 0) is expected, run.reason
    finally:
        await loop.aclose(within=10)
        await queue.aclose()


@pytest.mark.parametrize(
    ("scaling", "path"),
    [
        ({"paused": "yes"}, "spec.scaling.paused"),
        ([{"maxReplicas": 2}], "spec.scaling"),
        ({"maxReplicas": "5"}, "spec.scaling.maxReplicas"),
    ],
    ids=["paused-yes", "scaling-list", "string-replicas"],
)
def test_dev_mode_refuses_what_the_schema_would(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], scaling: Any, path: str
) -> None:
    body = manifest("lax", {}, paused=False)
    body["spec"]["scaling"] = scaling if isinstance(scaling, list) else body["spec"]["scaling"] | scaling
    (tmp_path / "lax.yaml").write_text(yaml.safe_dump(body))
    with pytest.raises(SystemExit) as exited:
        devcli.main(["-f", str(tmp_path / "lax.yaml")])
    assert exited.value.code == 2
    captured = capsys.readouterr()
    out = (captured.out + captured.err).strip()
    assert out.startswith(f"error: JobQueue lax: {path}: "), out
    assert "Traceback" not in out
