"""One active operator among replicas: leader election through a ``coordination.k8s.io/v1`` Lease.

The algorithm of client-go's ``tools/leaderelection`` (which controller-runtime's ``--leader-elect``
uses), with its three timings (``tunables.LeaderElectionTunables``: 15 s, 10 s, 2 s):

* every ``retry_period`` a candidate reads the Lease. It takes it (or creates it) when it is free
  (no holder: a leader that exited released it) or expired: unchanged for ``lease_duration``
  since this candidate first saw that version of it. The time is this process's monotonic clock,
  never the holder's ``renewTime``, so clock skew between nodes does not matter;
* every write carries the ``resourceVersion`` just read, so of two candidates racing for a free
  Lease one gets 409 Conflict and stays a standby;
* the leader renews every ``retry_period`` (one PATCH carrying its last resourceVersion; a 409 means
  the Lease moved on and is read again). It leads until ``renew_deadline`` after the start of its
  last successful renewal: ``is_leader()`` turns false by the clock alone, even while a renewal
  hangs, ``lease_duration - renew_deadline`` (5 s) before any standby may take over;
* on shutdown the leader stops acting, then releases the Lease (empty holder, 1 s duration), so a
  standby takes over within one ``retry_period``.

Failover after a crash (SIGKILL, node loss): a standby saw the last renewal at most one
``retry_period`` after it was written, and takes over ``lease_duration`` after seeing it; so the
Lease changes hands at most ``lease_duration + retry_period`` (17 s) after the leader died, plus one
API round trip. A leader that loses the Lease steps down and goes back to being a candidate (it
does not exit: an API server outage must not become a crash loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import kopf

from jobqueue_operator import kube_api, tunables

logger = logging.getLogger(__name__)

SERVICE_ACCOUNT_NAMESPACE: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
# Releases tried at a fresh resourceVersion before leaving the Lease to expire.
RELEASE_ATTEMPTS: Final = 3

Body = dict[str, Any]
Callback = Callable[[], None]


def default_identity() -> str:
    """``$POD_NAME`` (else the host name) and a random suffix, as controller-runtime does."""
    base = os.environ.get("POD_NAME") or socket.gethostname() or "jobqueue-operator"
    return f"{base}_{uuid.uuid4().hex[:8]}"


def default_namespace() -> str:
    """The operator's own namespace: ``$POD_NAMESPACE``, the service account's, else ``default``."""
    explicit = os.environ.get("POD_NAMESPACE")
    if explicit:
        return explicit
    with contextlib.suppress(OSError):
        found = SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
        if found:
            return found
    return "default"


def micro_time(timestamp: float) -> str:
    """A Kubernetes MicroTime (RFC 3339 with microseconds)."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class LeaseRecord:
    """What a Lease says, and the version it was read at."""

    holder: str
    duration: float
    transitions: int
    acquired: str | None
    renewed: str | None
    version: str

    @classmethod
    def of(cls, lease: Mapping[str, Any]) -> LeaseRecord:
        spec = lease.get("spec") or {}
        return cls(
            holder=str(spec.get("holderIdentity") or ""),
            duration=float(spec.get("leaseDurationSeconds") or 0),
            transitions=int(spec.get("leaseTransitions") or 0),
            acquired=spec.get("acquireTime"),
            renewed=spec.get("renewTime"),
            version=str((lease.get("metadata") or {}).get("resourceVersion") or ""),
        )

    def same_as(self, other: LeaseRecord | None) -> bool:
        """Unchanged since ``other`` (by its content: a new resourceVersion alone is no renewal)."""
        return other is not None and (self.holder, self.renewed, self.transitions) == (
            other.holder,
            other.renewed,
            other.transitions,
        )


class LeaderElector:
    """Competes for one Lease; ``is_leader()`` says whether this replica may act now."""

    def __init__(
        self,
        api: Callable[[], kube_api.KubeApi],
        settings: tunables.LeaderElectionTunables,
        *,
        on_started_leading: Callback | None = None,
        on_stopped_leading: Callback | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.settings = settings
        self.identity = settings.identity or default_identity()
        self.namespace = settings.lease_namespace or default_namespace()
        self.name = settings.lease_name
        self.on_started_leading = on_started_leading
        self.on_stopped_leading = on_stopped_leading
        self.clock = clock
        self.transitions_seen = 0
        self._leading_until: float | None = None
        self._observed: LeaseRecord | None = None
        self._observed_at = 0.0
        self._written_version: str | None = None
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ the answer

    def is_leader(self) -> bool:
        return self._leading_until is not None and self.clock() < self._leading_until

    @property
    def holder(self) -> str:
        """The holder last seen (this replica's identity while it leads)."""
        return self.identity if self.is_leader() else (self._observed.holder if self._observed else "")

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="jobqueue leader election")

    async def stop(self) -> None:
        """Stop competing; a leader stops acting first, then releases the Lease."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        was_leading = self.is_leader()
        self._step_down()
        if was_leading:
            await self._release()

    async def _run(self) -> None:
        while True:
            leading = await self.once()
            await asyncio.sleep(self._once_wait(leading))

    def _once_wait(self, leading: bool) -> float:
        """Seconds to the next attempt: the retry period, or less when the Lease expires sooner."""
        period = self.settings.retry_period_seconds
        observed = self._observed
        if leading or observed is None or not observed.holder or observed.holder == self.identity:
            return period
        remaining = self._observed_at + observed.duration - self.clock()
        return min(period, remaining + 0.01) if remaining > 0 else period

    async def once(self) -> bool:
        """One attempt to acquire or renew; whether this replica leads afterwards."""
        started = self.clock()
        try:
            renewed = await self._try_acquire_or_renew(started)
        except kopf.TemporaryError as exc:  # not logged in yet (the first moment after startup)
            logger.debug("Leader election: waiting: %s", exc)
            renewed = False
        except Exception as exc:  # the API is unreachable: keep leading until the deadline only
            logger.warning("Leader election: Lease %s/%s not renewed: %s", self.namespace, self.name, exc)
            renewed = False
        if renewed:
            newly = not self.is_leader()
            self._leading_until = started + self.settings.renew_deadline_seconds
            if newly:
                logger.info(
                    "Leader election: %s leads (Lease %s/%s)", self.identity, self.namespace, self.name
                )
                if self.on_started_leading is not None:
                    self.on_started_leading()
        elif self._leading_until is not None:
            taken = self._observed is not None and self._observed.holder != self.identity
            if taken or not self.is_leader():
                logger.warning(
                    "Leader election: %s lost the Lease %s/%s", self.identity, self.namespace, self.name
                )
                self._step_down()
        return self.is_leader()

    def _step_down(self) -> None:
        was = self._leading_until is not None
        self._leading_until = None
        self._written_version = None
        if was and self.on_stopped_leading is not None:
            self.on_stopped_leading()

    # ------------------------------------------------------------------ the protocol

    async def _try_acquire_or_renew(self, now: float) -> bool:
        api = self.api()
        if self._written_version is not None and self.is_leader():
            renewed = await self._renew(api)
            if renewed:
                return True
        lease = await api.get_lease(self.namespace, self.name)
        if lease is None:
            return await self._create(api)
        record = LeaseRecord.of(lease)
        if not record.same_as(self._observed):
            self._observed, self._observed_at = record, now
        held_by_other = record.holder and record.holder != self.identity
        if held_by_other and now < self._observed_at + record.duration:
            return False
        return await self._take(api, record)

    def _spec(self, *, transitions: int, acquired: str | None) -> Body:
        now = micro_time(time.time())
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, math.ceil(self.settings.lease_duration_seconds)),
            "acquireTime": acquired or now,
            "renewTime": now,
            "leaseTransitions": transitions,
        }

    async def _create(self, api: kube_api.KubeApi) -> bool:
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": self._spec(transitions=0, acquired=None),
        }
        try:
            created = await api.create_lease(self.namespace, body)
        except kube_api.ApiError as exc:
            if exc.status == 409:  # another candidate created it first
                return False
            raise
        self._remember(created)
        return True

    async def _take(self, api: kube_api.KubeApi, record: LeaseRecord) -> bool:
        """Acquire a free or expired Lease, or renew our own, at the version just read."""
        ours = record.holder == self.identity
        transitions = record.transitions if ours else record.transitions + 1
        spec = self._spec(transitions=transitions, acquired=record.acquired if ours else None)
        patch = {"metadata": {"resourceVersion": record.version}, "spec": spec}
        try:
            written = await api.patch_lease(self.namespace, self.name, patch)
        except kube_api.ApiError as exc:
            if exc.status == 409:  # someone else wrote it since we read it
                return False
            raise
        self._remember(written)
        return True

    async def _renew(self, api: kube_api.KubeApi) -> bool:
        """Renew at the version we last wrote; False when it moved on (then it is read again)."""
        patch = {
            "metadata": {"resourceVersion": self._written_version},
            "spec": {"renewTime": micro_time(time.time())},
        }
        try:
            written = await api.patch_lease(self.namespace, self.name, patch)
        except kube_api.ApiError as exc:
            if exc.status in (404, 409):
                self._written_version = None
                return False
            raise
        self._remember(written)
        return True

    def _remember(self, lease: Mapping[str, Any]) -> None:
        record = LeaseRecord.of(lease)
        self._written_version = record.version
        self._observed, self._observed_at = record, self.clock()
        self.transitions_seen = record.transitions

    async def _release(self) -> None:
        """Give the Lease up at once, so a standby need not wait for it to expire.

        A renewal cancelled by the stop may still have landed (the server applied it, its reply was
        never read), leaving our version behind: on a 409 the Lease is read again and, while it is
        still ours, released at its current version.
        """
        observed = self._observed
        if observed is None or observed.holder != self.identity:
            return
        api = self.api()
        try:
            for _ in range(RELEASE_ATTEMPTS):
                patch = {
                    "metadata": {"resourceVersion": observed.version},
                    "spec": {
                        "holderIdentity": "",
                        "leaseDurationSeconds": 1,
                        "renewTime": micro_time(time.time()),
                    },
                }
                try:
                    await api.patch_lease(self.namespace, self.name, patch)
                except kube_api.ApiError as exc:
                    if exc.status != 409:
                        raise
                    lease = await api.get_lease(self.namespace, self.name)
                    if lease is None or LeaseRecord.of(lease).holder != self.identity:
                        return  # taken by another, or gone: nothing of ours to give up
                    observed = LeaseRecord.of(lease)
                    continue
                logger.info(
                    "Leader election: %s released the Lease %s/%s", self.identity, self.namespace, self.name
                )
                return
            raise kube_api.ApiError(409, f"the Lease kept changing over {RELEASE_ATTEMPTS} attempts")
        except Exception as exc:  # it expires on its own
            logger.warning("Leader election: releasing the Lease failed (it expires by itself): %s", exc)
