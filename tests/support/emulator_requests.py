"""How the emulator matches a request to a reaction, in time independent of how many it has served.

kmock (0.8) answers ``request in view`` by iterating the view, that is by filtering every request
logged so far, for each reaction it tries: the cost of one request grows with the number served.
Measured on this machine: a GET took 4 ms on a fresh emulator, 99 ms after 500 requests and 250 ms
after 2,000 (``cProfile``: all of it in ``dsl.View.__contains__`` and ``filtering._check``). An
operator making a few requests a second made the emulator, not itself, slow within minutes, and a
restart of the operator did not help. A real API server's cost per request does not depend on its
uptime, so the emulator must not either:

* ``sees(view, request)`` decides whether the newest request belongs to a view by looking at that
  request only, for the views that are per-request predicates (filters, priorities, and/or/not
  groups over the root). Views that depend on earlier requests (slices such as ``[:1]``, used by
  tests to inject a fault once) return ``None``, and kmock's own check runs for them;
* ``RequestLog`` bounds what is kept (``limit`` requests; the older half is dropped when it is
  full), for the server and for each reaction; a test that injects ``[:n]`` faults makes far fewer;
* ``ClientTally`` counts requests by client (the bearer token, else the User-Agent) and kind
  (``PATCH deployments/scale``), unbounded in time and tiny in memory: tests count per-operator
  traffic with it, benches their request rates.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator, Mapping, MutableSequence
from typing import Any

from kmock._internal import dsl, rendering


def sees(view: Any, request: rendering.Request, root: Any) -> bool | None:
    """Whether ``request`` (just logged by ``root``) is seen through ``view``; None: cannot tell."""
    if view is root:
        return True
    if isinstance(view, dsl.Root):
        return False
    kind = type(view)
    if kind is dsl.Priority:
        return sees(view._source, request, root)
    if kind is dsl.Filter:
        inner = sees(view._source, request, root)
        return inner if not inner else bool(view.criteria(request))
    if kind in (dsl.OrGroup, dsl.AndGroup):
        found = [sees(source, request, root) for source in view._sources]
        if any(value is None for value in found):
            return None
        return any(found) if kind is dsl.OrGroup else all(found)
    if kind is dsl.Exclusion:
        inner = sees(view._source, request, root)
        if not inner:
            return inner
        excluded = [sees(other, request, root) for other in view._exclusions]
        return None if any(value is None for value in excluded) else not any(excluded)
    return None


def _priority_key(payload: Any, length: int) -> tuple[float, ...]:
    priority = tuple(-p for p in payload.priorities)
    return priority + (0,) * (length - len(priority))


def ordered(payloads: list[Any]) -> list[Any]:
    """The reactions in the order kmock tries them (highest priority first, then oldest)."""
    length = max((len(p.priorities) for p in payloads), default=0)
    return sorted(payloads, key=lambda p: _priority_key(p, length))


def trim(log: MutableSequence[Any], limit: int) -> None:
    """Drop the older half of a request log that outgrew ``limit``."""
    if len(log) > limit:
        del log[: len(log) // 2]


def client_of(request: rendering.Request) -> str:
    """Who sent it: the bearer token, else the User-Agent."""
    auth = str(request.headers.get("Authorization") or "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return str(request.headers.get("User-Agent") or "anonymous")


def kind_of(request: rendering.Request) -> str:
    """``GET deployments``, ``WATCH jobqueues``, ``PATCH deployments/scale``, ``GET /version``..."""
    resource = request.resource
    if resource is None or not resource.plural:
        return f"{str(request.method).rsplit('.', 1)[-1].upper()} {request.url.path}"
    sub = f"/{request.subresource}" if request.subresource else ""
    action = str(request.action).rsplit(".", 1)[-1].upper()
    verb = "WATCH" if action == "WATCH" else str(request.method).rsplit(".", 1)[-1].upper()
    return f"{verb} {resource.plural}{sub}"


class ClientTally:
    """Requests by client and kind, since the emulator started."""

    def __init__(self) -> None:
        self._counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        self.total = 0

    def add(self, request: rendering.Request) -> None:
        self._counts[client_of(request)][kind_of(request)] += 1
        self.total += 1

    def of(self, client: str) -> collections.Counter[str]:
        """A copy of one client's counts by kind."""
        return collections.Counter(self._counts.get(client, {}))

    def clients(self) -> Iterator[str]:
        return iter(list(self._counts))


WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE")


def writes(counts: Mapping[str, int]) -> dict[str, int]:
    """The mutating kinds of a client's counts."""
    return {k: v for k, v in counts.items() if k.split(" ", 1)[0] in WRITE_VERBS}
