"""What the operator writes to a queue before its pass: the JobQueue's ``spec.flow`` into the
queue's ``flow`` hash, where the workers' claims read it (``worker_runtime.flow``), and the due
ticks of its schedules that no worker fired (a fleet at zero), so the scheduled jobs wake it up.

After each probe, the fields the spec sets are compared with what the probe read; only when they
differ (the spec changed, or someone changed Redis through the API or the CLI) does one pipelined
round trip per Redis URL write them, through the same script as ``Queue.pause`` and the CLI, so
held workers are woken at once. The fields the spec leaves out are never touched. A write that
fails is logged and retried on the next pass; the pass goes on with what the probe read.

A schedule's tick is fired only when the probe saw one due: through ``worker_runtime.schedule_ops``,
fenced by the tick as the workers' fires are, so a tick is enqueued once whoever fires it. The job
it enqueues is seen by the next pass, which activates the fleet.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

from jobqueue_operator import flow_spec
from worker_runtime import connection, operations, schedule_ops, scripts
from worker_runtime.commands import QueueCommands
from worker_runtime.flow import FlowConfig
from worker_runtime.observation import QueueObservation

logger = logging.getLogger("jobqueue.operator")


def changes(wanted: flow_spec.FlowSpec, observed: FlowConfig) -> dict[str, str]:
    """The flow hash fields to write so that Redis holds what the spec sets ({} when it does)."""
    have = observed.fields()
    return {name: value for name, value in wanted.written().items() if have.get(name) != value}


async def sync(
    client: connection.AsyncClient, queues: Sequence[tuple[str, flow_spec.FlowSpec, QueueObservation]]
) -> dict[str, QueueObservation]:
    """Write what differs for each (queue, spec.flow, observation); the observations, by queue,
    with the flow control as written (unchanged ones are not among them)."""
    calls, targets = [], []
    for queue, wanted, observation in queues:
        fields = changes(wanted, observation.flow)
        if fields:
            calls.append(QueueCommands(queue).configure_flow(fields))
            targets.append((queue, observation, fields))
    if not calls:
        return {}
    try:
        written = await scripts.run_settled(client, calls)
    except Exception as exc:  # the next pass tries again; this one scales on what it read
        logger.warning("writing spec.flow to Redis failed for %d queue(s): %s", len(calls), exc)
        return {}
    updated = {}
    for (queue, observation, fields), config in zip(targets, written, strict=True):
        if isinstance(config, Exception):
            logger.warning("queue %s: writing spec.flow (%s) failed: %s", queue, ", ".join(fields), config)
            continue
        logger.info("queue %s: spec.flow written to Redis (%s)", queue, ", ".join(sorted(fields)))
        updated[queue] = dataclasses.replace(observation, flow=config)
    return updated


async def fire_due(client: connection.AsyncClient, queues: Sequence[QueueObservation]) -> int:
    """Fire the due ticks of the queues whose probe saw one; the scheduled jobs enqueued."""
    enqueued = 0
    for observation in queues:
        if not observation.schedule_due:
            continue
        try:
            fired = await operations.run_async(
                client, schedule_ops.fire_due(QueueCommands(observation.queue))
            )
        except Exception as exc:  # the next pass tries again
            logger.warning("queue %s: firing its due schedules failed: %s", observation.queue, exc)
            continue
        if fired.enqueued:
            logger.info("queue %s: %d scheduled job(s) enqueued (no worker fired them)", observation.queue,
                        fired.enqueued)  # fmt: skip
        enqueued += fired.enqueued
    return enqueued
