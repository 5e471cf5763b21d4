"""The JobQueues the operator serves, as the control loop needs them: one small ``Member`` each.

kopf's event handler feeds ``Fleet.observe`` with every watch event (initial listing, changes of
spec, annotations or status) and ``Fleet.forget`` on deletion; the control loop asks ``Fleet.due``
which members to run a pass for. A member keeps the parsed spec (re-parsed only when
``metadata.generation`` changes), the paused condition, the last known status (for "write only
what changed" and "warn only on new problems") and the policy state carried from pass to pass.
Nothing here does I/O.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from jobqueue_operator import builders, policy, spec
from jobqueue_operator.status import Condition

# The control loop's tick: a member's pass runs on the first tick at least pollingInterval after
# its last pass that got through, so a failed pass is retried one tick later.
TICK_SECONDS: Final = 1.0
DEFAULT_POLLING_INTERVAL: Final = 2.0

Key = tuple[str, str]


def key_of(body: Mapping[str, Any]) -> Key:
    """(namespace, name) of a JobQueue body."""
    meta = body.get("metadata") or {}
    return (str(meta.get("namespace") or "default"), str(meta.get("name") or ""))


@dataclass(slots=True)
class Member:
    """One JobQueue: what a pass reads, and what passes carry over to the next one."""

    namespace: str
    name: str
    uid: str
    generation: int | None = None
    jobqueue: spec.JobQueue | None = None
    error: spec.SpecError | None = None
    paused: Condition = field(default_factory=lambda: builders.paused_condition({}))
    status: dict[str, Any] = field(default_factory=dict)
    state: policy.PolicyState | None = None
    last_pass: float | None = None
    policy_written_at: float | None = None
    busy: bool = False
    # resourceVersion of our last status write: a watch event older than it carries an older status.
    written_version: str | None = None

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

    def is_due(self, now: float) -> bool:
        # Half a tick of slack, so an interval equal to the tick runs on every tick.
        return not self.busy and (
            self.last_pass is None or now - self.last_pass >= self.interval - TICK_SECONDS / 2
        )

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
            try:
                self.jobqueue, self.error = spec.parse_jobqueue(body), None
            except spec.SpecError as error:
                self.jobqueue, self.error = None, error
        self.paused = builders.paused_condition(body)
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


class Fleet:
    """Members by (namespace, name); one per operator."""

    def __init__(self) -> None:
        self._members: dict[Key, Member] = {}

    def __len__(self) -> int:
        return len(self._members)

    def __iter__(self) -> Iterator[Member]:
        return iter(list(self._members.values()))

    def get(self, key: Key) -> Member | None:
        return self._members.get(key)

    def observe(self, body: Mapping[str, Any]) -> Member | None:
        """Add or refresh the member of ``body``; an object being deleted is forgotten instead."""
        key = key_of(body)
        meta = body.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            self.forget(key)
            return None
        uid = str(meta.get("uid") or "")
        member = self._members.get(key)
        if member is None or member.uid != uid:  # new, or deleted and created again
            member = self._members[key] = Member(namespace=key[0], name=key[1], uid=uid)
        member.update(body)
        return member

    def forget(self, key: Key) -> Member | None:
        return self._members.pop(key, None)

    def due(self, now: float) -> list[Member]:
        """Members whose pass is due and not already running."""
        return [m for m in self._members.values() if m.is_due(now)]
