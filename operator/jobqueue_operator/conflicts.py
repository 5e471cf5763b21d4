"""Two JobQueues that want the same thing: the older keeps it, the other is refused (pure, no I/O).

What JobQueues must not share:

| target                                          | what sharing it would do                       |
| ----------------------------------------------- | ---------------------------------------------- |
| a Deployment (owned ``<name>-worker`` or a      | two policies set its replicas in turn: it      |
| ``deploymentRef``), by namespace and name       | flaps between their answers                    |
| a Redis queue (server and database, queue name) | two fleets serve one backlog, each sized for   |
|                                                 | all of it                                      |

``losers`` takes every claimant of every target and returns, for each JobQueue that must give way,
the message of its ``SpecValid=False, Conflict`` condition, naming the JobQueue that keeps the
target. The one that keeps it is the oldest (``creationTimestamp``, then namespace and name), so
a new JobQueue never takes over what an existing one runs. A Deployment of that name that the
operator does not own is the same conflict, found when the Deployment is read
(``deployment_sync``).
"""

from __future__ import annotations

import urllib.parse
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

Key = tuple[str, str]


@dataclass(frozen=True)
class Claim:
    """A JobQueue's claim on a target; ``order`` sorts the oldest first."""

    key: Key
    order: tuple[str, str, str]
    target: tuple[str, ...]
    what: str  # the target in words, e.g. "Deployment team/emails-worker"


def deployment_claim(key: Key, order: tuple[str, str, str], namespace: str, name: str) -> Claim:
    return Claim(key, order, ("deployment", namespace, name), f"Deployment {namespace}/{name}")


def queue_claim(key: Key, order: tuple[str, str, str], server: str, queue: str) -> Claim:
    return Claim(key, order, ("queue", server, queue), f"Redis queue {queue!r} on {server}")


def redis_server(url: str) -> str:
    """Where a URL's keys live, for comparison: host, port and database (credentials, options and
    spelling aside: ``redis://h/0`` and ``redis://user:pw@h:6379`` are the same keys)."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if "+" in scheme:  # Sentinel or Cluster: the nodes by address, then the master's name
        hosts = parts.netloc.rpartition("@")[2].lower()
        return f"{scheme}://{hosts}{parts.path or '/'}"
    try:
        port = parts.port or 6379
    except ValueError:
        port = 6379
    database = parts.path.strip("/") or "0"
    return f"{(parts.hostname or '').lower()}:{port}/{database}"


def losers(claims: Iterable[Claim]) -> dict[Key, str]:
    """Each JobQueue that gives way, and why (the first target it loses, in words)."""
    by_target: dict[tuple[str, ...], list[Claim]] = defaultdict(list)
    for claim in claims:
        by_target[claim.target].append(claim)
    out: dict[Key, str] = {}
    for contenders in by_target.values():
        distinct = {claim.key: claim for claim in contenders}
        if len(distinct) < 2:
            continue
        first, *others = sorted(distinct.values(), key=lambda claim: claim.order)
        keeper = f"{first.key[0]}/{first.key[1]}"
        for claim in others:
            out.setdefault(
                claim.key,
                f"{claim.what} is already served by JobQueue {keeper}, which is older; "
                "replicas are left to it",
            )
    return out
