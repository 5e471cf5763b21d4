"""The JobQueues the operator serves, as the control loop needs them: one ``ServedJobQueue`` each.

kopf's event handler feeds ``ServedJobQueues.observe`` with every watch event (initial listing,
changes of spec, annotations or status) and ``ServedJobQueues.forget`` on deletion; the control
loop asks ``ServedJobQueues.due`` which members to run a scaling pass for. A member keeps the
parsed spec (re-parsed only when ``metadata.generation`` changes), what pauses it, the last
known status (for "write only what changed" and "warn only on new problems") and the policy state
carried from pass to pass.

It also keeps what only the leader may act on: JobQueues that still carry the finalizer earlier
versions added (``LEGACY_FINALIZER``), to be released by the control loop (``releases``), since
kopf itself writes nothing.
Nothing here does I/O.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from jobqueue_operator import policy, spec, worker_deployment

# How often a JobQueue whose spec cannot be parsed has its status reported: the spec's own default.
DEFAULT_POLLING_INTERVAL: Final = float(spec.ScalingSpec.model_fields["polling_interval"].default)
# Added by versions before 0.2 for a delete handler; now only removed.
LEGACY_FINALIZER: Final = "jobqueue.dev/finalizer"

Key = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Release:
    """A body still carrying ``LEGACY_FINALIZER``: its resourceVersion and its other finalizers."""

    version: str
    others: tuple[str, ...]

    @classmethod
    def of(cls, meta: Mapping[str, Any]) -> Release | None:
        finalizers = [str(f) for f in meta.get("finalizers") or []]
        if LEGACY_FINALIZER not in finalizers:
            return None
        others = tuple(f for f in finalizers if f != LEGACY_FINALIZER)
        return cls(str(meta.get("resourceVersion") or ""), others)


def key_of(body: Mapping[str, Any]) -> Key:
    """(namespace, name) of a JobQueue body."""
    meta = body.get("metadata") or {}
    return (str(meta.get("namespace") or "default"), str(meta.get("name") or ""))


@dataclass(slots=True)
class ServedJobQueue:
    """One JobQueue: what a pass reads, and what passes carry over to the next one."""

    namespace: str
    name: str
    uid: str
    created: str = ""  # metadata.creationTimestamp: the older of two claimants keeps what they share
    generation: int | None = None
    jobqueue: spec.JobQueue | None = None
    error: spec.SpecError | None = None
    paused_by: spec.PausedBy | None = None
    status: dict[str, Any] = field(default_factory=dict)
    state: policy.PolicyState | None = None
    last_pass: float | None = None
    policy_written_at: float | None = None
    busy: bool = False
    # resourceVersion of our last status write: a watch event older than it carries an older status.
    written_version: str | None = None
    # What the owned Deployment must carry for this generation of the spec (worker_deployment.Stamp).
    wanted: worker_deployment.Stamp | None = None
    # When the worker Deployment last started having fewer ready pods than asked for (readiness).
    short_since: float | None = None
    # (normalized Redis URL, queue) as last resolved: two JobQueues on one queue is a conflict.
    redis_target: tuple[str, str] | None = None
    # Set while the object still carries LEGACY_FINALIZER.
    legacy_finalizer: Release | None = None

    @property
    def order(self) -> tuple[str, str, str]:
        """Oldest first (creationTimestamp, then namespace and name): who keeps a shared target."""
        return (self.created, self.namespace, self.name)

    @property
    def key(self) -> Key:
        return (self.namespace, self.name)

    @property
    def reference(self) -> dict[str, str]:
        """The ``involvedObject`` of an Event about this JobQueue."""
        return {
            "apiVersion": spec.API_VERSION,
            "kind": spec.KIND,
            "namespace": self.namespace,
            "name": self.name,
            "uid": self.uid,
        }

    @property
    def interval(self) -> float:
        if self.jobqueue is None:
            return DEFAULT_POLLING_INTERVAL
        return float(self.jobqueue.spec.scaling.polling_interval)

    def policy_state(self) -> policy.PolicyState:
        """The state of the last pass, else the one saved in status.policy (an operator restart)."""
        if self.state is None:
            self.state = policy.PolicyState.from_dict(self.status.get("policy"))
        return self.state

    def is_due(self, now: float, tick: float) -> bool:
        """Not busy, and ``interval`` since the last pass, less half a ``tick`` (the control loop's),
        so an interval equal to the tick runs on every tick."""
        return not self.busy and (self.last_pass is None or now - self.last_pass >= self.interval - tick / 2)

    def update(self, body: Mapping[str, Any]) -> None:
        """Take in a newer body of the same object."""
        meta = body.get("metadata") or {}
        generation = meta.get("generation")
        if (
            self.generation is None
            or generation != self.generation
            or (self.jobqueue is None and self.error is None)
        ):
            self.generation = generation
            self.wanted = None
            try:
                self.jobqueue, self.error = spec.parse_jobqueue(body), None
            except spec.SpecError as error:
                self.jobqueue, self.error = None, error
        self.paused_by = spec.paused_by(body)
        self.created = str(meta.get("creationTimestamp") or "")
        self.legacy_finalizer = Release.of(meta)
        if _not_older(meta.get("resourceVersion"), self.written_version):
            self.status = copy.deepcopy(dict(body.get("status") or {}))
            self.written_version = None

    def wrote(self, body: Mapping[str, Any]) -> None:
        """Take in the object as our status patch left it."""
        self.status = dict(body.get("status") or {})
        self.written_version = (body.get("metadata") or {}).get("resourceVersion")


def _not_older(version: Any, written: str | None) -> bool:
    """Whether a watch event's resourceVersion is not older than our last write. Versions are opaque
    to clients; the API server's are integers in practice, so only those are compared."""
    if written is None or not str(version).isdigit() or not str(written).isdigit():
        return True
    return int(version) >= int(written)


class ServedJobQueues:
    """The served JobQueues (members) by (namespace, name); one per operator."""

    def __init__(self) -> None:
        self._members: dict[Key, ServedJobQueue] = {}
        # Objects being deleted that still carry LEGACY_FINALIZER.
        self.releases: dict[Key, Release] = {}

    def __len__(self) -> int:
        return len(self._members)

    def __iter__(self) -> Iterator[ServedJobQueue]:
        return iter(list(self._members.values()))

    def get(self, key: Key) -> ServedJobQueue | None:
        return self._members.get(key)

    def observe(self, body: Mapping[str, Any]) -> ServedJobQueue | None:
        """Add or refresh the member of ``body``; an object being deleted is forgotten instead."""
        key = key_of(body)
        meta = body.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            self.forget(key)
            release = Release.of(meta)
            if release is not None:
                self.releases[key] = release
            else:
                self.releases.pop(key, None)
            return None
        uid = str(meta.get("uid") or "")
        member = self._members.get(key)
        if member is None or member.uid != uid:  # new, or deleted and created again
            member = self._members[key] = ServedJobQueue(namespace=key[0], name=key[1], uid=uid)
        member.update(body)
        return member

    def forget(self, key: Key) -> ServedJobQueue | None:
        return self._members.pop(key, None)

    def gone(self, key: Key) -> None:
        """The object no longer exists (its DELETED event): nothing is left to release either."""
        self._members.pop(key, None)
        self.releases.pop(key, None)

    def reset_memory(self) -> None:
        """Forget what passes carried over (a new leader reads it back from each status)."""
        for member in self._members.values():
            member.state = None
            member.last_pass = None
            member.policy_written_at = None
            member.short_since = None

    def due(self, now: float, tick: float) -> list[ServedJobQueue]:
        """Members whose pass is due and not already running (``tick``: the control loop's)."""
        return [m for m in self._members.values() if m.is_due(now, tick)]
