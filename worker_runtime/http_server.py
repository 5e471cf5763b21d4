"""The worker's small HTTP server, on a daemon thread: ``/metrics`` (Prometheus), ``/healthz``
(readiness: can the worker reach Redis) and ``/livez`` (liveness: does its event loop still turn).

Probe a worker's pod with ``/livez`` for liveness and, if at all, ``/healthz`` for readiness:
``/healthz`` answers 503 during a Redis outage, and a liveness probe on it would restart every
worker of the fleet in the middle of its jobs, which the worker keeps across the outage otherwise
(docs/runtime.md).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from worker_runtime.exposition import without_created


def serve(
    port: int,
    registry: CollectorRegistry,
    healthy: Callable[[], bool],
    alive: Callable[[], bool] = lambda: True,
    host: str = "0.0.0.0",
) -> ThreadingHTTPServer:
    """Start serving; ``healthy()`` decides ``/healthz`` and ``alive()`` ``/livez`` (200 or 503)."""
    exported = without_created(registry)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/metrics"):
                self._reply(200, generate_latest(exported), CONTENT_TYPE_LATEST)
            elif self.path.startswith("/healthz"):
                self._probe(healthy(), b"redis unreachable\n")
            elif self.path.startswith("/livez"):
                self._probe(alive(), b"event loop stuck\n")
            else:
                self._reply(404, b"not found\n", "text/plain")

        def _probe(self, ok: bool, failing: bytes) -> None:
            self._reply(200 if ok else 503, b"ok\n" if ok else failing, "text/plain")

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="jobqueue-http", daemon=True).start()
    return server
