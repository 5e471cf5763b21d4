"""The Kubernetes ``Actuator``: sets the replicas of the owned or referenced worker Deployment.

Before a scale-down it writes ``controller.kubernetes.io/pod-deletion-cost`` on the Deployment's
pods from the workers' heartbeats (in-flight jobs per pod), so the ReplicaSet controller removes
idle pods first. ``conflicting_hpa`` finds an HPA targeting the same Deployment (in the HPAs the
control loop listed for the namespace), which the operator reports instead of fighting it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any, Final

from jobqueue_operator import kube_api, readiness, scaling_pass
from worker_runtime.observation import QueueObservation

DELETION_COST: Final = "controller.kubernetes.io/pod-deletion-cost"


def label_selector(match_labels: Mapping[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(match_labels.items()))


def hpa_targets(hpa: Mapping[str, Any], deployment: str) -> bool:
    """Whether an autoscaling/v2 HPA scales this Deployment."""
    ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
    return bool(ref.get("kind") == "Deployment" and ref.get("name") == deployment)


def conflicting_hpa(hpas: Iterable[Mapping[str, Any]], deployment: str) -> str | None:
    """The name of an HPA that targets this Deployment, if any."""
    for hpa in hpas:
        if hpa_targets(hpa, deployment):
            return str(hpa["metadata"]["name"])
    return None


class KubeActuator:
    """Scales one Deployment; built per pass from the Deployment just listed."""

    def __init__(self, api: kube_api.KubeApi, namespace: str, deployment: Mapping[str, Any]) -> None:
        self.api = api
        self.namespace = namespace
        self.name = str(deployment["metadata"]["name"])
        spec = deployment.get("spec") or {}
        self._replicas = int(spec.get("replicas", 1))
        self._match_labels: dict[str, str] = dict((spec.get("selector") or {}).get("matchLabels") or {})
        self.reported = readiness.Replicas.of(deployment)

    @property
    def replicas(self) -> readiness.Replicas:
        """What the Deployment reports of its pods, with the replicas asked for now."""
        return self.reported.scaled_to(self._replicas)

    async def current_replicas(self) -> int:
        """The Deployment's spec.replicas (what was asked for, not what runs yet)."""
        return self._replicas

    async def ready_replicas(self) -> int | None:
        """The Deployment's status.readyReplicas; None until its controller has reported a status."""
        return self.reported.ready if self.reported.reported else None

    async def scale(self, desired: int, observation: QueueObservation | None) -> None:
        if desired < self._replicas and observation is not None:
            await self.mark_deletion_costs(observation)
        await self.api.scale_deployment(self.namespace, self.name, desired)
        self._replicas = desired

    async def mark_deletion_costs(self, observation: QueueObservation) -> dict[str, int]:
        """Annotate each pod with its in-flight jobs (pods without a heartbeat count as idle)."""
        if not self._match_labels:
            return {}
        costs = scaling_pass.deletion_costs(observation.workers)
        pods = await self.api.list_pods(self.namespace, label_selector(self._match_labels))
        changes: dict[str, int] = {}
        for pod in pods:
            name = str(pod["metadata"]["name"])
            cost = costs.get(name, 0)
            current = ((pod["metadata"].get("annotations")) or {}).get(DELETION_COST)
            if current != str(cost):
                changes[name] = cost
        await asyncio.gather(
            *(
                self.api.annotate_pod(self.namespace, name, {DELETION_COST: str(cost)})
                for name, cost in changes.items()
            )
        )
        return changes


_: type[scaling_pass.Actuator] = KubeActuator
