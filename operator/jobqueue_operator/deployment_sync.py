"""Bring a JobQueue's owned worker Deployment to what its spec wants, as a controller does every pass.

Run by the control loop (so only by the leader) before each scaling pass of a JobQueue with a pod
template, with the Deployment as the namespace's listing found it:

| found                                       | done                                            |
| ------------------------------------------- | ----------------------------------------------- |
| not listed, and no Deployment of that name  | created (Normal Event ``WorkersCreated``)       |
| owned, its template hash or labels differ   | patched (Normal Event ``WorkersUpdated``)       |
| owned and up to date                        | nothing                                         |
| a Deployment of that name not owned by this | nothing; ``Conflict``: SpecValid=False, naming  |
| JobQueue                                    | its owner                                       |
| refused by the API server (400, 403, 422)   | ``DeploymentRejected``: SpecValid=False with    |
|                                             | the API server's own message                    |

The listing selects the operator's label, so a Deployment of the same name without it is looked up
by name before anything is created. Other API errors (500, timeouts) are raised: the pass fails and
the next tick tries again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from jobqueue_operator import kube_api, spec, status, worker_deployment

Body = dict[str, Any]
# Answers of the API server that refuse the object itself (retrying the same body cannot help).
REFUSALS: Final = frozenset({400, 403, 422})


@dataclass
class Synced:
    """The Deployment to scale (None: none this pass), the problem that stops it, and Events."""

    deployment: Body | None = None
    problem: status.Problem | None = None
    events: list[tuple[str, str, str]] = field(default_factory=list)


def _rejected(name: str, exc: kube_api.ApiError) -> Synced:
    message = f"the API server refused Deployment {name}: {exc.message}"
    return Synced(problem=status.Problem(status.Reason.DEPLOYMENT_REJECTED, message))


def _foreign(namespace: str, name: str, existing: Mapping[str, Any]) -> Synced:
    owner = worker_deployment.controller_of(existing)
    whose = f"controlled by {owner}" if owner else "not created by the operator"
    message = (
        f"Deployment {namespace}/{name} already exists and is {whose}; it is left alone. Rename or "
        "delete it, or set spec.workers.deploymentRef to scale it"
    )
    return Synced(problem=status.Problem(status.Reason.CONFLICT, message))


async def sync(
    api: kube_api.KubeApi,
    jobqueue: spec.JobQueue,
    listed: Body | None,
    stamp: worker_deployment.Stamp | None = None,
) -> Synced:
    """Create, update or refuse the owned Deployment. ``stamp`` (``Stamp.of`` what this generation
    of the spec wants) spares building the Deployment when the one found is up to date."""
    namespace = jobqueue.metadata.namespace or "default"
    name = worker_deployment.worker_deployment_name(jobqueue)
    existing = listed if listed is not None else await api.get_deployment(namespace, name)
    if existing is not None and not worker_deployment.owned_by(existing, jobqueue.metadata.uid):
        return _foreign(namespace, name, existing)
    if existing is not None and stamp is not None and stamp.matches(existing):
        return Synced(dict(existing))
    wanted = worker_deployment.worker_deployment(jobqueue)
    if existing is None:
        write = api.create_deployment(namespace, wanted)
        return await _written(write, name, status.EventReason.WORKERS_CREATED, "created")
    drift = worker_deployment.deployment_drift(existing, wanted)
    if drift is None:
        return Synced(dict(existing))
    write = api.patch_deployment(namespace, name, drift, json_patch=True)
    return await _written(write, name, status.EventReason.WORKERS_UPDATED, "updated")


async def _written(write: Awaitable[Body], name: str, reason: status.EventReason, done: str) -> Synced:
    """The Deployment as the create or patch left it, with its Event; or the API server's refusal."""
    try:
        body = await write
    except kube_api.ApiError as exc:
        if exc.status in REFUSALS:
            return _rejected(name, exc)
        raise
    return Synced(body, events=[(status.EventType.NORMAL, reason, f"Deployment {name} {done}")])
