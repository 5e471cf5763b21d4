"""``jobqueue dev``: the operator's control loop over worker processes on this machine."""

from jobqueue_operator.dev.local_actuator import ActuatorStats, LocalActuator, Removal, WorkerProcess
from jobqueue_operator.dev.loop import DevLoop, DevTarget, ManifestError, QueueRun, load_targets
from jobqueue_operator.dev.view import LiveView, QueueSummary, summarize

__all__ = [
    "ActuatorStats",
    "DevLoop",
    "DevTarget",
    "LiveView",
    "LocalActuator",
    "ManifestError",
    "QueueRun",
    "QueueSummary",
    "Removal",
    "WorkerProcess",
    "load_targets",
    "summarize",
]
