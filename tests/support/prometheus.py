"""A real Prometheus server (Debian's ``prometheus``, from PATH) for the monitoring tier.

``PrometheusServer(config)`` writes the config (and any rule files) into a temporary directory,
starts ``prometheus`` on a free loopback port with its own TSDB there, waits for ``/-/ready`` and
stops it (SIGTERM) on exit. ``query``, ``query_range``, ``label_values``, ``alerts`` and
``targets`` are thin readers of its HTTP API (``/api/v1/...``) that fail with Prometheus' own
error text.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Self

import yaml

from tests.support import processes
from tests.support.wait import wait_for_sync
from worker_runtime.embedded_redis import free_port

Body = dict[str, Any]


def binary() -> str | None:
    """The ``prometheus`` binary on PATH (``apt-get install -y prometheus``), if any."""
    return shutil.which("prometheus")


class PrometheusError(AssertionError):
    pass


class PrometheusServer:
    def __init__(self, config: Body, rule_files: dict[str, str] | None = None) -> None:
        found = binary()
        if found is None:
            raise RuntimeError("prometheus is not on PATH")
        self.binary = found
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._dir = tempfile.TemporaryDirectory(prefix="jobqueue-prometheus-")
        self.root = pathlib.Path(self._dir.name)
        for name, text in (rule_files or {}).items():
            (self.root / name).write_text(text)
        config = {**config, "rule_files": [str(self.root / name) for name in rule_files or {}]}
        self.config_path = self.root / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.log_path = self.root / "prometheus.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        command = [
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.root / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-lifecycle",
            "--log.level=warn",
        ]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=self.root)
        wait_for_sync(self._ready, timeout=30, interval=0.1, message=f"prometheus ready ({self.log()})")
        return self

    def _ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise PrometheusError(f"prometheus exited {self.process.returncode}: {self.log()}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            processes.stop_process(self.process, timeout=15)
        self._dir.cleanup()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ the HTTP API

    def api(self, endpoint: str, **params: str | list[str]) -> Any:
        query = urllib.parse.urlencode(params, doseq=True)
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{endpoint}?{query}", timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:
            raise PrometheusError(f"{endpoint} {params}: {exc.code} {exc.read().decode()}") from None
        if body.get("status") != "success":
            raise PrometheusError(f"{endpoint} {params}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[Body]:
        """An instant query at now: the vector's samples (``metric``, ``value``)."""
        data = self.api("query", query=expr)
        return list(data["result"]) if data["resultType"] == "vector" else [data]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[Body]:
        """A range query, as a Grafana panel runs it: the series (``metric``, ``values``)."""
        data = self.api("query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step=f"{step:g}")
        return list(data["result"])

    def label_values(self, label: str, match: str, start: float, end: float) -> list[str]:
        """What Grafana's ``label_values(match, label)`` variable query lists."""
        return list(
            self.api(f"label/{label}/values", **{"match[]": [match]}, start=f"{start:.3f}", end=f"{end:.3f}")
        )

    def alerts(self) -> list[Body]:
        return list(self.api("alerts")["alerts"])

    def targets(self) -> list[Body]:
        return list(self.api("targets")["activeTargets"])

    def wait_scraped(self, count: int, timeout: float = 30) -> None:
        """Until ``count`` targets are up (their first scrape succeeded)."""
        wait_for_sync(
            lambda: sum(t["health"] == "up" for t in self.targets()) >= count,
            timeout=timeout,
            interval=0.2,
            message=f"{count} targets up",
        )


def finite_points(series: list[Body]) -> int:
    """How many points of a range result are numbers (a quantile of no events is NaN)."""
    return sum(1 for s in series for _, value in s["values"] if value not in ("NaN", "+Inf", "-Inf"))


def now() -> float:
    return time.time()
