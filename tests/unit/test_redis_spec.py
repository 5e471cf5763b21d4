"""``spec.queue.redis``: the TLS Secrets handed to worker pods, and the URL forms the operator accepts.

| case | expected |
| --- | --- |
| no TLS | no TLS variables, volumes or mounts |
| TLS on, CA and client certificate from Secrets | ``JOBQUEUE_REDIS_TLS*`` at read-only files |
| the template mounts a volume of the same name | ours replaces it, its own others are kept |
| ``clientCertSecretRef`` with a name only | the ``kubernetes.io/tls`` keys |
| Sentinel and Cluster URLs, with TLS schemes | accepted; one with no host refused, without its value |
"""

from __future__ import annotations

from typing import Any

import pytest
from jobqueue_operator import redis_spec, secrets, spec, worker_deployment

Body = dict[str, Any]


def jobqueue(tls: Body | None = None, containers: list[Body] | None = None) -> spec.JobQueue:
    redis: Body = {"urlSecretRef": {"name": "redis", "key": "url"}}
    if tls is not None:
        redis["tls"] = tls
    return spec.parse_jobqueue(
        {
            "metadata": {"name": "emails", "namespace": "shop", "uid": "u1", "generation": 1},
            "spec": {
                "queue": {"name": "outbound", "redis": redis},
                "workers": {
                    "template": {"spec": {"containers": containers or [{"name": "worker", "image": "w"}]}}
                },
                "scaling": {"targets": {"backlogPerReplica": 10}},
            },
        }
    )


def _pod(jobqueue: spec.JobQueue) -> Body:
    return worker_deployment.pod_template(jobqueue)["spec"]  # type: ignore[no-any-return]


def test_no_tls_adds_nothing() -> None:
    pod = _pod(jobqueue())
    (container,) = pod["containers"]
    assert not [e for e in container["env"] if e["name"].startswith("JOBQUEUE_REDIS_TLS")]
    assert not [v for v in pod.get("volumes", []) if v["name"].startswith("jobqueue-redis")]


FULL_TLS: Body = {
    "enabled": True,
    "caSecretRef": {"name": "redis-ca", "key": "ca.pem"},
    "clientCertSecretRef": {"name": "redis-client", "certKey": "cert.pem", "keyKey": "key.pem"},
}


def test_tls_secrets_become_read_only_files_and_variables() -> None:
    pod = _pod(jobqueue(FULL_TLS))
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["JOBQUEUE_REDIS_TLS"] == "true"
    assert env["JOBQUEUE_REDIS_TLS_CA_FILE"] == "/etc/jobqueue/redis-tls/ca/ca.crt"
    assert env["JOBQUEUE_REDIS_TLS_CERT_FILE"] == "/etc/jobqueue/redis-tls/client/tls.crt"
    assert env["JOBQUEUE_REDIS_TLS_KEY_FILE"] == "/etc/jobqueue/redis-tls/client/tls.key"
    assert "JOBQUEUE_REDIS_TLS_INSECURE_SKIP_VERIFY" not in env
    volumes = {v["name"]: v["secret"] for v in pod["volumes"] if "secret" in v}
    assert volumes[redis_spec.CA_VOLUME] == {
        "secretName": "redis-ca", "items": [{"key": "ca.pem", "path": "ca.crt"}], "defaultMode": 0o444,
    }  # fmt: skip
    assert volumes[redis_spec.CLIENT_VOLUME]["items"] == [
        {"key": "cert.pem", "path": "tls.crt"}, {"key": "key.pem", "path": "tls.key"},
    ]  # fmt: skip
    mounts = [m for m in container["volumeMounts"] if m["name"].startswith("jobqueue-redis")]
    assert mounts and all(m["readOnly"] is True for m in mounts)


def test_a_template_volume_of_the_same_name_is_replaced_its_others_kept() -> None:
    own = [{"name": redis_spec.CA_VOLUME, "mountPath": "/x"}, {"name": "data", "mountPath": "/data"}]
    pod = _pod(jobqueue(FULL_TLS, [{"name": "worker", "image": "w", "volumeMounts": own}]))
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["data"] == "/data" and mounts[redis_spec.CA_VOLUME] == "/etc/jobqueue/redis-tls/ca"


def test_a_client_certificate_secret_by_name_uses_the_kubernetes_tls_keys() -> None:
    tls = jobqueue({"clientCertSecretRef": {"name": "c"}}).spec.queue.redis.tls
    assert tls.client_cert_secret_ref is not None
    assert (tls.client_cert_secret_ref.cert_key, tls.client_cert_secret_ref.key_key) == ("tls.crt", "tls.key")
    env = {e["name"]: e["value"] for e in redis_spec.worker_tls(tls).env}
    assert "JOBQUEUE_REDIS_TLS" not in env  # a client certificate alone does not turn TLS on


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://s1:26379,s2:26379/mymaster",
        "rediss+sentinel://:pw@s1,s2/mymaster/2",
        "redis+cluster://n1:6379,n2:6379",
        "rediss+cluster://user:pw@n1:7000",
    ],
)
def test_sentinel_and_cluster_urls_are_accepted(url: str) -> None:
    assert secrets.url_problem(url) is None


def test_a_cluster_url_with_no_host_is_refused_without_its_value() -> None:
    problem = secrets.url_problem("redis+cluster://secret-password@")
    assert problem is not None and "names no host" in problem and "secret-password" not in problem
