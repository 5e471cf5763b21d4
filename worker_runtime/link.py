"""What a worker knows of its connection to Redis, and the order its loops resume in after a loss.

Every Redis round trip of the worker reports here (``answered``, ``failed``). From that:

- ``reachable`` is what ``/healthz`` says: false from the first failed round trip (a claim, a lease
  extension, an ack), true again from the next that succeeds, whatever the worker is busy with;
- after a failure, ``leases_current`` is cleared until the lease keeper has extended every running
  job's lease again: claims wait for it, so on reconnect a worker secures its own jobs first;
- ``connected_for()`` is how long the link has been up since the last loss (or the start): a
  worker recovers other workers' expired leases only once it has been connected for a whole
  heartbeat window, so that after an outage every live worker had the time to re-extend its own;
- an error that retrying cannot fix (a wrong password, a failed TLS check) is ``fatal``: the worker
  stops and ``Worker.run`` raises it as a ``ConfigurationError``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from worker_runtime import connection
from worker_runtime.errors import ConfigurationError

log = logging.getLogger("jobqueue.worker")


class Link:
    def __init__(self, on_fatal: Callable[[], None]) -> None:
        self.on_fatal = on_fatal
        self.reachable = False
        self.leases_current = asyncio.Event()
        self.fatal: ConfigurationError | None = None
        self.lost = asyncio.Event()  # set on a failure: wakes the lease keeper to reconnect
        self._up_since: float | None = None
        self._warned = False

    def answered(self) -> None:
        self.reachable = True

    def failed(self, exc: BaseException, what: str) -> None:
        """A round trip failed; ``what`` names it for the log (one warning per outage)."""
        problem = connection.configuration_problem(exc)
        if problem is not None:
            if self.fatal is None:
                log.error("%s", problem)
                self.fatal = ConfigurationError(problem)
                self.on_fatal()
            return
        if self.reachable or not self._warned:
            log.warning("redis unreachable (%s failed: %s); retrying", what, exc)
            self._warned = True
        self.reachable = False
        self._up_since = None
        self.leases_current.clear()
        self.lost.set()

    def leases_extended(self) -> None:
        """The lease keeper extended every running job's lease: claims may go on."""
        if self._up_since is None:
            self._up_since = time.monotonic()
            if self._warned:
                log.info("redis reachable again; leases extended")
        self._warned = False
        self.reachable = True
        self.lost.clear()
        self.leases_current.set()

    def connected_for(self) -> float:
        """Seconds since the link came up (0 while it is down)."""
        return 0.0 if self._up_since is None else time.monotonic() - self._up_since
