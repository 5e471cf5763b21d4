"""A small terminal chart of a simulated run: arrivals, replicas and the oldest job's age over time.

Each column is one slice of the measured window and shows the slice's highest value, so a short
spike or a late job is never averaged away.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text

from jobqueue_operator.simulate import model

BLOCKS = " ▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float], top: float, style: str = "", over: float | None = None) -> Text:
    """One character per value, scaled to ``top``; values above ``over`` in red."""
    text = Text()
    for value in values:
        level = 0 if top <= 0 else min(len(BLOCKS) - 1, round(value / top * (len(BLOCKS) - 1)))
        if value > 0 and level == 0:
            level = 1
        late = over is not None and value > over
        text.append(BLOCKS[level], style="bold red" if late else style)
    return text


def columns(
    samples: Sequence[model.Sample], start: float, end: float, width: int
) -> list[list[model.Sample]]:
    """The samples of [start, end) in ``width`` equal slices."""
    slices: list[list[model.Sample]] = [[] for _ in range(max(1, width))]
    span = max(end - start, 1e-9)
    for sample in samples:
        if start <= sample.t < end:
            slices[min(len(slices) - 1, int((sample.t - start) / span * len(slices)))].append(sample)
    return slices


def timeline(run: model.Run, width: int = 72) -> Table:
    """Three sparklines over the measured window, with each row's maximum."""
    start, end = run.workload.start, run.workload.end
    slices = columns(run.samples, start, end, width)
    poll = max(1e-9, (run.samples[1].t - run.samples[0].t) if len(run.samples) > 1 else 1.0)
    arrivals = [max((s.arrived / poll for s in part), default=0.0) for part in slices]
    pods = [float(max((s.pods for s in part), default=0)) for part in slices]
    ages = [max((s.oldest_age_s for s in part), default=0.0) for part in slices]
    target = run.target_s
    table = Table.grid(padding=(0, 1))
    table.add_column(justify="right", style="dim")
    table.add_column()
    table.add_column(style="dim")
    table.add_row(
        "arrivals/s", sparkline(arrivals, max(arrivals, default=0.0), "green"), f"max {max(arrivals):.0f}/s"
    )
    table.add_row("replicas", sparkline(pods, max(pods, default=0.0), "cyan"), f"max {max(pods):.0f}")
    age_top = max(max(ages, default=0.0), target or 0.0)
    age_note = f"max {max(ages):.0f}s" + (f" (target {target:g}s)" if target is not None else "")
    table.add_row("oldest age", sparkline(ages, age_top, "yellow", over=target), age_note)
    minutes = (end - start) / 60
    table.add_row("", Text(f"{minutes:.0f} min measured, {width} columns", style="dim"), "")
    return table
