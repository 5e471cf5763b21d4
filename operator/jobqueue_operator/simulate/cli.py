"""``jobqueue simulate -f jobqueue.yaml``: a JobQueue's scaling spec, offline, against traffic shapes.

Runs the JobQueue's own ``spec.scaling`` through the operator's ``policy.decide`` in a model of the
queue and its pods (docs/scaling.md, "Simulate before you deploy"), against the seven synthetic
shapes or a recorded arrival trace, and prints what to know before deploying it: seconds over the
age target, waits, replicas, cost against a lower bound, reversals, interrupted jobs and cold starts.

Exit status: 0 when it ran, 2 for a usage or input error (one line on stderr says which).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from jobqueue_operator import spec
from jobqueue_operator.simulate import chart, model, report, scenario, traces

DEFAULT_JOB_SECONDS = "lognormal:2:1"
DEFAULT_STARTUP_S = 10.0


class UsageError(Exception):
    """Bad input: the message is the one line the user sees."""


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, not {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jobqueue simulate", description=__doc__.splitlines()[0])
    parser.add_argument("-f", "--file", type=Path, required=True, help="JobQueue manifest (YAML)")
    parser.add_argument("--name", help="which JobQueue of the file (default: its only one)")
    parser.add_argument(
        "--trace",
        action="append",
        metavar="NAME|FILE",
        help=f"a shape ({', '.join(traces.SHAPES)}), 'all' (the default), or a recorded trace: a CSV of "
        "arrival timestamps, a CSV of timestamp,counter samples or a Prometheus query_range JSON; repeatable",
    )
    parser.add_argument(
        "--startup",
        type=_positive,
        default=DEFAULT_STARTUP_S,
        metavar="S",
        help="pod start-up seconds (±20%%)",
    )
    parser.add_argument(
        "--job-seconds",
        default=DEFAULT_JOB_SECONDS,
        metavar="DIST",
        help="job service times: lognormal:MEAN[:SIGMA], exponential:MEAN or constant:S "
        f"(default {DEFAULT_JOB_SECONDS})",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed of arrivals, jobs and pods")
    parser.add_argument(
        "--rate",
        type=_positive,
        metavar="JOBS_PER_S",
        help="the shapes' base arrival rate (default: a tenth of maxReplicas' worth of work)",
    )
    parser.add_argument("--compare-keda", action="store_true", help="also run KEDA + HPA with their defaults")
    parser.add_argument("--chart", action="store_true", help="a chart per trace (default: with one trace)")
    return parser


def load_jobqueue(path: Path, name: str | None) -> spec.JobQueue:
    """The JobQueue of a manifest file (the named one when there are several)."""
    try:
        documents = [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, Mapping)]
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror or exc}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise UsageError(f"{path}: not YAML: {exc.problem}{where}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not YAML: {' '.join(str(exc).split())}") from None
    found = [d for d in documents if d.get("kind") == spec.KIND]
    names = [str((d.get("metadata") or {}).get("name", "?")) for d in found]
    if name is not None:
        found = [d for d, n in zip(found, names, strict=True) if n == name]
    if not found:
        where = f"named {name!r} " if name is not None else ""
        raise UsageError(f"{path}: no JobQueue {where}in it (kind: {spec.KIND})")
    if len(found) > 1:
        raise UsageError(f"{path}: {len(found)} JobQueues ({', '.join(names)}); pick one with --name")
    return _parse(found[0])


def _parse(document: Mapping[str, Any]) -> spec.JobQueue:
    try:
        return spec.parse_jobqueue(document)
    except spec.SpecError as exc:
        name = (document.get("metadata") or {}).get("name", "?")
        raise UsageError(f"JobQueue {name}: {exc}") from None


def workloads(chosen: Sequence[str] | None, plan: scenario.Scenario) -> list[model.Workload]:
    """The workloads of the ``--trace`` values: shape names, 'all', or trace files."""
    found: list[model.Workload] = []
    for item in chosen or ["all"]:
        if item == "all":
            found.extend(plan.shape(shape) for shape in traces.SHAPES)
        elif item in traces.SHAPES:
            found.append(plan.shape(item))
        else:
            path = Path(item)
            if not path.is_file():
                raise UsageError(f"--trace {item}: not a shape ({', '.join(traces.SHAPES)}) nor a file")
            try:
                text = path.read_text()
            except (OSError, UnicodeDecodeError) as exc:
                raise UsageError(f"--trace {item}: {exc}") from None
            found.append(plan.recorded(path.name, text))
    return found


def describe(jobqueue: spec.JobQueue, plan: scenario.Scenario) -> str:
    scaling = jobqueue.spec.scaling
    targets = scaling.targets
    aims = [f"maxOldestAge {targets.max_oldest_age}s"] if targets.max_oldest_age is not None else []
    aims += [f"backlogPerReplica {targets.backlog_per_replica}"] if targets.backlog_per_replica else []
    return (
        f"JobQueue {jobqueue.metadata.name}: {', '.join(aims)}, replicas {scaling.min_replicas}-"
        f"{scaling.max_replicas}, {plan.concurrency} slots per pod, polled every "
        f"{scaling.polling_interval}s; "
        f"pods start in {plan.startup_s:g}s ±20%, jobs {plan.job_times}, shapes at {plan.rate:.1f} jobs/s, "
        f"seed {plan.seed}"
    )


COLUMNS = ("trace", "by", "over T", "p50/p99", "peak/mean", "replica·s", "÷ bound", "rev.", "intr.", "cold")
LEGEND = (
    "by: the JobQueue's own policy, or KEDA + HPA with their defaults; over T: seconds some job had waited "
    "longer than maxOldestAge; p50/p99: waits (s); peak/mean: replicas; replica·s: their integral; "
    "÷ bound: that over the lower bound (the jobs' own service time / slots per pod: a fluid fleet that "
    "knows the trace); rev.: direction reversals; intr.: jobs killed by a scale-down; cold: pods started. "
    "The model is in docs/scaling.md."
)
_SCALERS = {"jobqueue": "policy", "keda-hpa": "keda"}


def table(rows: Sequence[report.Summary], target: float | None) -> Table:
    out = Table(box=None, pad_edge=False, padding=(0, 1, 0, 0), header_style="bold")
    for header in COLUMNS:
        out.add_column(header, justify="left" if header in ("trace", "by") else "right", no_wrap=True)
    for row in rows:
        late = target is not None and row.seconds_over_target > 0
        over = "-" if target is None else f"{row.seconds_over_target:.0f}"
        out.add_row(
            row.trace,
            _SCALERS.get(row.autoscaler, row.autoscaler),
            f"[bold red]{over}[/]" if late else over,
            f"{row.wait_p50_s:.1f}/{row.wait_p99_s:.1f}",
            f"{row.peak_replicas}/{row.mean_replicas:.1f}",
            _thousands(row.replica_seconds),
            f"{row.cost_ratio:.2f}" if row.lower_bound > 0 else "-",
            str(row.reversals),
            str(row.interrupted),
            str(row.cold_starts),
        )
    return out


def _thousands(value: float) -> str:
    return f"{value / 1000:.1f}k" if value >= 10_000 else f"{value:.0f}"


def run(args: argparse.Namespace, console: Console) -> None:
    jobqueue = load_jobqueue(args.file, args.name)
    try:
        job_times = traces.parse_job_times(args.job_seconds)
    except traces.TraceError as exc:
        raise UsageError(str(exc)) from None
    plan = scenario.Scenario.of(
        jobqueue, startup_s=args.startup, job_times=job_times, seed=args.seed, base_rate=args.rate
    )
    try:
        loads = workloads(args.trace, plan)
    except traces.TraceError as exc:
        raise UsageError(str(exc)) from None
    console.print(describe(jobqueue, plan))
    ours: list[report.Summary] = []
    rows: list[report.Summary] = []
    charts = args.chart or len(loads) == 1
    for workload in loads:
        outcome = scenario.run_policy(plan, workload)
        ours.append(outcome.summary)
        rows.append(outcome.summary)
        if args.compare_keda:
            rows.append(scenario.run_keda(plan, workload).summary)
        if charts:
            console.print(f"[bold]{workload.name}[/]: the JobQueue's policy over the measured window")
            console.print(chart.timeline(outcome.run, width=min(72, max(20, console.width - 34))))
    if len(loads) > 1:
        rows.append(report.total(ours))
        if args.compare_keda:
            rows.append(report.total([r for r in rows if r.autoscaler == "keda-hpa"]))
    console.print(table(rows, plan.target_s))
    console.print(LEGEND, style="dim")


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    console = Console()
    try:
        run(args, console)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
