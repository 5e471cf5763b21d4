"""How many worker pods really run: the Deployment's status, not the replicas the operator asked for.

``Replicas.of(deployment)`` reads what the Deployment controller reports (``status.replicas``,
``readyReplicas``, ``availableReplicas``, ``updatedReplicas``) and the condition that explains a
rollout that does not progress: ``Progressing=False`` (``ProgressDeadlineExceeded``) or
``ReplicaFailure=True`` (``FailedCreate``: a quota, a refused pod). ``not_ready`` turns that into
the ``Ready=False, WorkersNotReady`` verdict: when fewer pods are ready than were asked for, for
longer than ``loop.workers_not_ready_seconds``, or at once when the Deployment reports a failure.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Failure:
    """A Deployment condition saying why its rollout is stuck."""

    type: str
    reason: str
    message: str

    def describe(self) -> str:
        return f"Deployment {self.type}: {self.reason}: {self.message}".rstrip(": ")


@dataclass(frozen=True)
class Replicas:
    """What the worker Deployment asks for and what it reports."""

    asked: int
    current: int
    ready: int
    available: int
    updated: int
    reported: bool  # the Deployment controller has written a status at all
    failure: Failure | None = None

    @classmethod
    def of(cls, deployment: Mapping[str, Any], asked: int | None = None) -> Replicas:
        spec = deployment.get("spec") or {}
        status = deployment.get("status") or {}
        wanted = int(spec.get("replicas", 1)) if asked is None else asked
        return cls(
            asked=wanted,
            current=_count(status, "replicas"),
            ready=_count(status, "readyReplicas"),
            available=_count(status, "availableReplicas"),
            updated=_count(status, "updatedReplicas"),
            reported=bool(status),
            failure=failure_of(status.get("conditions")),
        )

    def scaled_to(self, asked: int) -> Replicas:
        """The same report after the operator set spec.replicas to ``asked``."""
        return Replicas(
            asked, self.current, self.ready, self.available, self.updated, self.reported, self.failure
        )

    @property
    def short(self) -> bool:
        """Fewer pods ready than asked for."""
        return self.ready < self.asked


def _count(status: Mapping[str, Any], key: str) -> int:
    value = status.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def failure_of(conditions: Any) -> Failure | None:
    """The condition of a stuck rollout, if the Deployment reports one."""
    for condition in conditions if isinstance(conditions, list) else []:
        if not isinstance(condition, Mapping):
            continue
        kind, state = condition.get("type"), condition.get("status")
        if (kind == "Progressing" and state == "False") or (kind == "ReplicaFailure" and state == "True"):
            return Failure(str(kind), str(condition.get("reason") or ""), str(condition.get("message") or ""))
    return None


def short_since(replicas: Replicas, since: float | None, now: float) -> float | None:
    """When the shortfall began (``since`` carried from the last pass), None when there is none."""
    if not replicas.short:
        return None
    return since if since is not None else now


def not_ready(replicas: Replicas, since: float | None, now: float, patience: float) -> str | None:
    """The WorkersNotReady message, or None while the workers are ready (or still within patience)."""
    if not replicas.short:
        return None
    waited = now - since if since is not None else 0.0
    if replicas.failure is None and waited < patience:
        return None
    message = f"{replicas.ready} of {replicas.asked} worker replicas ready"
    if replicas.failure is None:
        message += f" for more than {patience:g}s"
    else:
        message += f"; {replicas.failure.describe()}"
    return message
