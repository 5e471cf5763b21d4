"""What dev mode shows: a live table per queue while it runs, and a summary when it stops."""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from jobqueue_operator.dev.loop import DevLoop, QueueRun


@dataclass(frozen=True)
class QueueSummary:
    """A queue's figures over the whole run."""

    queue: str
    enqueued: int
    completed: int
    failed: int
    dead: int
    waiting: int
    active: int
    peak_workers: int
    workers_started: int
    worst_age_s: float
    slo_s: int | None
    scale_events: int
    probe_failures: int
    unexpected_exits: int

    @property
    def slo_held(self) -> bool | None:
        return None if self.slo_s is None else self.worst_age_s <= self.slo_s


def summarize(run: QueueRun) -> QueueSummary:
    obs = run.last_observation
    stats = run.actuator.stats
    return QueueSummary(
        queue=run.name,
        enqueued=obs.enqueued_total if obs else 0,
        completed=obs.completed_total if obs else 0,
        failed=obs.failed_total if obs else 0,
        dead=obs.dead if obs else 0,
        waiting=obs.waiting if obs else 0,
        active=obs.active if obs else 0,
        peak_workers=stats.peak,
        workers_started=stats.started,
        worst_age_s=run.worst_age_s,
        slo_s=run.slo_seconds,
        scale_events=run.scale_events,
        probe_failures=run.probe_failures,
        unexpected_exits=len(stats.unexpected_exits),
    )


def _age(run: QueueRun) -> Text:
    obs = run.last_observation
    age = obs.oldest_ready_age_s if obs else 0.0
    slo = run.slo_seconds
    if slo is None:
        return Text(f"{age:.1f}s")
    style = "red" if age > slo else "yellow" if age > slo / 2 else "green"
    return Text(f"{age:.1f}s / {slo}s", style=style)


def queue_table(loop: DevLoop) -> Table:
    """One row per queue: depth, oldest age against its SLO, throughput, workers, last reason."""
    elapsed = loop.clock() - loop.started_at
    table = Table(title=f"jobqueue dev: {len(loop.runs)} queue(s), {elapsed:.0f}s", expand=True)
    for column in ("queue", "waiting", "active", "oldest age / SLO", "done/s", "workers", "decision"):
        table.add_column(column, justify="left" if column in ("queue", "decision") else "right")
    for run in loop.runs:
        obs = run.last_observation
        throughput = run.state.throughput or 0.0
        actuator = run.actuator
        workers = f"{len(actuator.running)} → {run.desired}"
        if actuator.terminating:
            workers += f" (+{len(actuator.terminating)} draining)"
        table.add_row(
            run.name,
            str(obs.waiting if obs else "-"),
            str(obs.active if obs else "-"),
            _age(run),
            f"{throughput:.0f}",
            workers,
            Text(run.reason, overflow="fold"),
        )
    return table


def summary_table(summaries: list[QueueSummary]) -> Table:
    table = Table(title="summary")
    for column in (
        "queue",
        "completed",
        "enqueued",
        "peak workers",
        "worst age / SLO",
        "scalings",
        "lost probes",
    ):
        table.add_column(column, justify="left" if column == "queue" else "right")
    for s in summaries:
        slo = "" if s.slo_s is None else f" / {s.slo_s}s ({'held' if s.slo_held else 'MISSED'})"
        table.add_row(
            s.queue,
            str(s.completed),
            str(s.enqueued),
            str(s.peak_workers),
            f"{s.worst_age_s:.1f}s{slo}",
            str(s.scale_events),
            str(s.probe_failures),
        )
    return table


class LiveView:
    """A rich ``Live`` display of the loop, refreshed a few times a second; a no-op when disabled."""

    def __init__(self, loop: DevLoop, console: Console | None = None, *, enabled: bool = True) -> None:
        self.loop = loop
        self.console = console or Console()
        self.footer: list[RenderableType] = []
        self._live = (
            Live(get_renderable=self.render, console=self.console, refresh_per_second=4, transient=False)
            if enabled
            else None
        )

    def render(self) -> RenderableType:
        return Group(queue_table(self.loop), *self.footer)

    def __enter__(self) -> LiveView:
        if self._live is not None:
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.refresh()
            self._live.stop()
