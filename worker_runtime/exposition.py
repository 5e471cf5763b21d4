"""What every jobqueue process exports beside its own metrics, and how its registry is served.

* ``process_*`` (RSS, CPU seconds, open fds, start time) from prometheus_client's process collector;
* ``jobqueue_build_info{component, version, python_version, redis_py_version}`` = 1;
* no ``*_created`` series. prometheus_client prints one per counter and histogram child (the time
  the child was made); on a dashboard ``jobqueue_jobs_created`` reads like "jobs created". The
  library can only turn them off for the whole process (``disable_created_metrics()``), which would
  change what other exporters in an embedding app print, so ``without_created`` drops them from this
  registry's output alone.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import CollectorRegistry, Gauge, ProcessCollector
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

# Metric types whose children carry a ``_created`` sample.
_WITH_CREATED = {"counter", "histogram", "summary", "gaugehistogram"}


class WithoutCreated(Collector):
    """A view of a registry without the ``_created`` samples (what ``/metrics`` serves)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterable[Metric]:
        for family in self.registry.collect():
            if family.type in _WITH_CREATED:
                kept = [s for s in family.samples if not s.name.endswith("_created")]
                if len(kept) != len(family.samples):
                    copy = Metric(family.name, family.documentation, family.type, family.unit)
                    copy.samples = kept
                    family = copy
            yield family


def without_created(registry: CollectorRegistry) -> WithoutCreated:
    return WithoutCreated(registry)


def _version(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


def add_process_metrics(registry: CollectorRegistry, component: str) -> None:
    """Register the process collector and ``jobqueue_build_info`` for ``component`` (worker, operator)."""
    ProcessCollector(registry=registry)
    info = Gauge(
        "jobqueue_build_info",
        "Always 1; the labels say which jobqueue, Python and redis-py this process runs.",
        ["component", "version", "python_version", "redis_py_version"],
        registry=registry,
    )
    info.labels(component, _version("jobqueue"), platform.python_version(), _version("redis")).set(1)
