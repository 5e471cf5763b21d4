"""Bad specs a real API server accepts: each is reported on its own JobQueue and harms no other.

Case matrix:

| JobQueue                                       | it gets                                  | neighbour  |
| ---------------------------------------------- | ---------------------------------------- | ---------- |
| metadata.name of 210 characters, no queue name | SpecValid=False at spec.queue.name       | scales     |
| its queue's key holds a string (WRONGTYPE)     | Degraded ProbeFailed, naming the queue   | scales     |
| no containers / containers or env as a string  | SpecValid=False InvalidSpec, field path, | -          |
|                                                | a Warning; no Deployment; fixed -> runs  |            |
| a container without an image                   | SpecValid=False DeploymentRejected with  | -          |
|                                                | the API server's own message, a Warning  |            |
| a name of 100 characters                       | a Deployment the API server accepts      | -          |
| a Secret key holding no Redis URL              | Degraded SecretKeyInvalid naming Secret  | -          |
|                                                | and key (never the value); the fix is    |            |
|                                                | picked up at the next pass; no log line  |            |
|                                                | repeated each pass, none unnamed         |            |
| deploymentRef to the Deployment of an older    | SpecValid=False Conflict, a Warning; the | scales it  |
| JobQueue                                       | Deployment follows the older one only;   |            |
|                                                | the older deleted -> it takes over       |            |
| the Redis queue of an older JobQueue           | SpecValid=False Conflict                 | scales     |
| <name>-worker exists, not the operator's       | SpecValid=False Conflict; the Deployment | -          |
|                                                | is left exactly as it was                |            |
| with no schema in front (the emulator applies  | SpecValid=False InvalidSpec at the path, | scales     |
| none): scaling a list, paused "yes", replicas  | a Warning; no Deployment, not Paused;    |            |
| "5", true for an integer                       | no handler fails, nothing is logged as   |            |
|                                                | an error; fixed -> runs                  |            |
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.integration.operator.conftest import OperatorEnv
from tests.support.kube_client import DEPLOYMENTS, JOBQUEUES, SECRETS, deployment_body, secret_body
from tests.support.wait import wait_for
from worker_runtime.keys import QueueKeys

LONG = "long-" + "q" * 205  # 210 characters: a valid object name, too long for a queue name


async def refused(env: OperatorEnv, name: str, reason: str) -> dict[str, Any]:
    """The SpecValid=False condition of ``name`` with ``reason``, once written."""
    cond = await wait_for(
        lambda: env.condition("SpecValid", name).get("reason") == reason and env.condition("SpecValid", name),
        message=f"{name}: SpecValid=False {reason}",
    )
    assert cond["status"] == "False"
    return cond


async def test_a_queue_name_the_runtime_refuses_stops_no_neighbour(operator_env: OperatorEnv) -> None:
    env = operator_env
    await env.start()
    await env.create(LONG, {"queue": {"name": None}})
    await env.create("q1")
    await env.enqueue(8)
    await wait_for(lambda: env.replicas() == 4, message="the neighbour on the same Redis URL scales")
    cond = await refused(env, LONG, "InvalidSpec")
    assert "spec.queue.name" in cond["message"] and "metadata.name" in cond["message"]
    await wait_for(lambda: env.events("InvalidSpec", "Warning"), message="a Warning Event")
    assert env.deployment(f"{LONG}-worker") is None


async def test_a_queue_that_fails_its_probe_fails_alone(operator_env: OperatorEnv) -> None:
    env = operator_env
    await env.start()
    await env.redis.set(QueueKeys.for_queue(env.queue("q2")).waiting, "not a sorted set")
    await env.create("q1")
    await env.create("q2")
    await env.enqueue(4)
    await wait_for(lambda: env.replicas() == 2, message="q1 scales")
    degraded = await wait_for(
        lambda: (
            env.condition("Degraded", "q2").get("reason") == "ProbeFailed" and env.condition("Degraded", "q2")
        ),
        message="q2 Degraded",
    )
    assert env.queue("q2") in degraded["message"] and "WRONGTYPE" in degraded["message"]
    await wait_for(lambda: env.condition("Degraded", "q1").get("status") == "False", message="q1 is fine")
    await env.redis.delete(QueueKeys.for_queue(env.queue("q2")).waiting)
    await env.enqueue(2, "q2")
    await wait_for(lambda: env.replicas("q2-worker") == 1, message="q2 recovers once its key is fixed")


@pytest.mark.parametrize(
    ("template", "path"),
    [
        ({"spec": {"containers": []}}, "spec.workers.template.spec.containers"),
        ({"spec": {"containers": "worker"}}, "spec.workers.template.spec.containers"),
        (
            {"spec": {"containers": [{"name": "worker", "image": "w:1", "env": "A=1"}]}},
            "spec.workers.template.spec.containers[0].env",
        ),
    ],
    ids=["no-containers", "containers-string", "env-string"],
)
async def test_a_template_the_operator_cannot_use(
    operator_env: OperatorEnv, template: Any, path: str
) -> None:
    env = operator_env
    await env.start()
    await env.create("q1", {"workers": {"template": template}})
    cond = await refused(env, "q1", "InvalidSpec")
    assert path in cond["message"]
    await wait_for(lambda: env.events("InvalidSpec", "Warning"), message="a Warning Event")
    assert env.deployment() is None
    fixed = {"spec": {"containers": [{"name": "worker", "image": "example/worker:1"}]}}
    await env.kube.patch(JOBQUEUES, "q1", {"spec": {"workers": {"template": fixed}}})
    await wait_for(env.deployment, message="the Deployment once the template is fixed")
    await wait_for(lambda: env.condition("SpecValid").get("status") == "True", message="SpecValid again")


async def test_a_deployment_the_api_server_refuses(operator_env: OperatorEnv) -> None:
    env = operator_env
    await env.start()
    await env.create("q1", {"workers": {"template": {"spec": {"containers": [{"name": "worker"}]}}}})
    cond = await refused(env, "q1", "DeploymentRejected")
    assert 'Deployment.apps "q1-worker" is invalid' in cond["message"]
    assert "spec.template.spec.containers[0].image: Required value" in cond["message"]
    warning = await wait_for(lambda: env.events("DeploymentRejected", "Warning"), message="a Warning Event")
    assert "image: Required value" in warning[0]["message"]
    assert env.deployment() is None
    await env.kube.patch(
        JOBQUEUES,
        "q1",
        {"spec": {"workers": {"template": {"spec": {"containers": [{"name": "worker", "image": "w:1"}]}}}}},
    )
    await wait_for(env.deployment, message="created once the image is given")


async def test_a_long_name_gets_a_deployment_the_api_server_accepts(operator_env: OperatorEnv) -> None:
    env = operator_env
    name = "payments-" + "x" * 91  # 100 characters
    await env.start()
    await env.create(name)
    await env.enqueue(2, name)
    deployment = await wait_for(lambda: env.deployment(f"{name}-worker"), message="the Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert all(len(value) <= 63 for value in labels.values()) and labels["jobqueue.dev/jobqueue"].startswith(
        "payments-"
    )
    await wait_for(lambda: env.replicas(f"{name}-worker") == 1, message="and it scales")


def secret_reads(env: OperatorEnv) -> int:
    """GETs of Secrets so far, by every client (the operator's, in this test)."""
    tally = env.emulator.clients
    return sum(tally.of(client).get("GET secrets", 0) for client in tally.clients())


async def test_a_secret_without_a_redis_url(
    operator_env: OperatorEnv, caplog: pytest.LogCaptureFixture
) -> None:
    env = operator_env
    caplog.set_level(logging.WARNING)
    await env.kube.create(SECRETS, secret_body("garbled", {"url": "hunter2 not a url"}))
    await env.start()
    await env.create("q1", {"queue": {"redis": {"urlSecretRef": {"name": "garbled"}}}})
    degraded = await wait_for(
        lambda: env.condition("Degraded").get("reason") == "SecretKeyInvalid" and env.condition("Degraded"),
        message="SecretKeyInvalid",
    )
    assert "Secret default/garbled" in degraded["message"] and "key 'url'" in degraded["message"]
    assert "hunter2" not in degraded["message"], "the value may be a password: never repeat it"
    await wait_for(lambda: env.events("SecretKeyInvalid", "Warning"), message="a Warning Event")
    # Passes go on meanwhile: a line names the JobQueue and the Secret, and is not repeated each pass.
    reads = secret_reads(env)
    await wait_for(lambda: secret_reads(env) >= reads + 3, message="three more passes read the Secret")
    ours = ("jobqueue_operator", "kopf.objects")
    logged = [r.getMessage() for r in caplog.records if r.name.startswith(ours)]
    assert all("garbled" in m and "q1" in m for m in logged), logged
    assert len(logged) == len(set(logged)), f"logged again on every pass: {logged}"
    await env.kube.patch(SECRETS, "garbled", {"stringData": {"url": env.redis_url}, "data": None})
    # The next pass reads the Secret again: a problem is never cached (the URL cache keeps 10 s).
    await wait_for(lambda: env.condition("Degraded").get("status") == "False", timeout=5, message="fixed")


async def test_two_jobqueues_on_one_deployment(operator_env: OperatorEnv) -> None:
    env = operator_env
    await env.kube.create(DEPLOYMENTS, deployment_body("mine", replicas=0))
    await env.start()
    ref = {"workers": {"template": None, "deploymentRef": {"name": "mine"}}}
    await env.create("q1", ref)
    await env.enqueue(4)
    await wait_for(lambda: env.replicas("mine") == 2, message="q1 scales mine")
    await env.create("q2", ref)
    await env.enqueue(8, "q2")
    cond = await refused(env, "q2", "Conflict")
    assert "Deployment default/mine" in cond["message"] and "default/q1" in cond["message"]
    await wait_for(lambda: env.events("Conflict", "Warning"), message="a Warning Event")
    await wait_for(lambda: env.status("q2").get("waiting") is None and env.status("q1").get("waiting") == 4)
    assert env.replicas("mine") == 2, "the Deployment follows the older JobQueue only"
    await env.kube.delete(JOBQUEUES, "q1")
    await wait_for(lambda: env.replicas("mine") == 4, message="q2 takes over once q1 is gone")
    await wait_for(lambda: env.condition("SpecValid", "q2").get("status") == "True", message="q2 valid")


async def test_two_jobqueues_on_one_redis_queue(operator_env: OperatorEnv) -> None:
    env = operator_env
    await env.start()
    await env.create("q1")
    await env.enqueue(4)
    await wait_for(lambda: env.replicas() == 2, message="q1 scales")
    await env.create("q2", {"queue": {"name": env.queue("q1")}})
    cond = await refused(env, "q2", "Conflict")
    assert f"Redis queue {env.queue('q1')!r}" in cond["message"] and "default/q1" in cond["message"]
    await wait_for(lambda: env.events("Conflict", "Warning"), message="a Warning Event")
    assert env.replicas("q2-worker") is None and env.replicas() == 2


async def test_a_worker_deployment_the_operator_does_not_own(operator_env: OperatorEnv) -> None:
    env = operator_env
    theirs = deployment_body("q1-worker", replicas=1, image="their/app:7")
    await env.kube.create(DEPLOYMENTS, theirs)
    before = env.deployment()
    await env.start()
    await env.create("q1")
    await env.enqueue(6)
    cond = await refused(env, "q1", "Conflict")
    assert "Deployment default/q1-worker already exists" in cond["message"]
    await wait_for(lambda: env.events("Conflict", "Warning"), message="a Warning Event")
    assert env.deployment() == before, "the foreign Deployment was changed"


def touched(env: OperatorEnv, name: str) -> str | None:
    body = env.emulator.get_object(JOBQUEUES, "default", name) or {}
    return ((body.get("metadata") or {}).get("labels") or {}).get("touched")


@pytest.mark.parametrize(
    ("scaling", "path", "reason"),
    [
        ([{"maxReplicas": 3}], "spec.scaling", "dictionary"),
        ({"paused": "yes"}, "spec.scaling.paused", "valid boolean"),
        ({"maxReplicas": "5"}, "spec.scaling.maxReplicas", "integer"),
        ({"minReplicas": True}, "spec.scaling.minReplicas", "integer"),
    ],
    ids=["scaling-list", "paused-yes", "string-replicas", "bool-replicas"],
)
async def test_a_spec_no_schema_checked_is_parsed_strictly(
    operator_env: OperatorEnv, caplog: pytest.LogCaptureFixture, scaling: Any, path: str, reason: str
) -> None:
    env = operator_env
    caplog.set_level(logging.WARNING)
    await env.start()
    body = env.jobqueue("q2")
    body["spec"]["scaling"] = scaling if isinstance(scaling, list) else body["spec"]["scaling"] | scaling
    await env.kube.create(JOBQUEUES, body)
    await env.create("q1")
    await env.enqueue(4, "q2")
    await env.enqueue(4)
    await wait_for(lambda: env.replicas() == 2, message="the neighbour scales")
    cond = await refused(env, "q2", "InvalidSpec")
    assert path in cond["message"] and reason in cond["message"], cond["message"]
    await wait_for(lambda: env.events("InvalidSpec", "Warning"), message="a Warning Event")
    # Each watch event of q2 goes through the handler again: touch it a few times.
    for n in range(3):
        await env.kube.patch(JOBQUEUES, "q2", {"metadata": {"labels": {"touched": str(n)}}})
    await wait_for(lambda: touched(env, "q2") == "2", message="the last touch is stored")
    await wait_for(lambda: env.status("q1").get("waiting") == 4, message="a pass after the touches")
    assert env.replicas("q2-worker") is None, "replicas of a refused spec are left alone"
    assert env.condition("Paused", "q2").get("status") != "True", "nothing pauses on a refused spec"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or "Traceback" in r.getMessage()]
    assert errors == [], [r.getMessage() for r in errors]
    failed = [r for r in caplog.records if "failed" in r.getMessage() and r.name.startswith("kopf")]
    assert failed == [], [r.getMessage() for r in failed]
    fixed = env.jobqueue("q2")["spec"]["scaling"]
    dropped = {} if isinstance(scaling, list) else {key: None for key in scaling if key not in fixed}
    await env.kube.patch(JOBQUEUES, "q2", {"spec": {"scaling": fixed | dropped}})
    await wait_for(lambda: env.replicas("q2-worker") == 2, message="the fixed spec runs")
    await wait_for(lambda: env.condition("SpecValid", "q2").get("status") == "True", message="valid again")
