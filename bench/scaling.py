"""Scaling benchmark: the policy and KEDA + HPA on the seven traffic shapes, several seeds, two clusters.

Every run is the simulator of ``jobqueue simulate`` (docs/scaling.md, "Simulate before you deploy"):
the JobQueue's ``spec.scaling`` through ``policy.decide``, and the KEDA + HPA emulation, on the same
arrivals, job times and pods. A JobQueue at the defaults except the fields below:

| configuration | pods start in | jobs                     | slots | maxOldestAge | maxReplicas | base load |
| ------------- | ------------- | ------------------------ | ----- | ------------ | ----------- | --------- |
| A (issue)     | 10 s ±20 %    | lognormal, mean 2 s, sigma 1 | 4 | 30 s         | 100         | 20 jobs/s |
| B             | 30 s ±20 %    | exponential, mean 2 s    | 8     | 60 s         | 100         | 40 jobs/s |

The base load is a tenth of maxReplicas' worth of work (10 pods); the shapes peak at 5-6 x that.
Prints, per configuration, the issue's table (totals over the 7 shapes, the mean over the seeds with
the worst seed beside it) and one row per shape, and writes everything to ``bench/results/scaling.json``.

    python -m bench.scaling [--seeds 1 2 3 4 5] [--processes 2] [--out bench/results/scaling.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "operator"))

from jobqueue_operator import spec  # noqa: E402
from jobqueue_operator.simulate import report, scenario, traces  # noqa: E402

CONFIGS: dict[str, dict[str, Any]] = {
    "A": {"startup_s": 10.0, "target_s": 30, "job_seconds": "lognormal:2:1", "slots": 4},
    "B": {"startup_s": 30.0, "target_s": 60, "job_seconds": "exponential:2", "slots": 8},
}
MAX_REPLICAS = 100
GOAL = {"seconds_over_target": 0.0, "cost_ratio": 1.25, "reversals": 25, "interrupted": 0}
SCALERS = ("keda-hpa", "jobqueue")
LABELS = {"keda-hpa": "KEDA + HPA, listLength 5", "jobqueue": "this project's policy"}


def jobqueue(config: dict[str, Any]) -> spec.JobQueue:
    return spec.parse_jobqueue(
        {
            "apiVersion": "jobqueue.dev/v1alpha1",
            "kind": "JobQueue",
            "metadata": {"name": "bench"},
            "spec": {
                "queue": {"redis": {"urlSecretRef": {"name": "redis", "key": "url"}}},
                "workers": {
                    "concurrency": config["slots"],
                    "template": {"spec": {"containers": [{"name": "worker", "image": "worker"}]}},
                },
                "scaling": {"maxReplicas": MAX_REPLICAS, "targets": {"maxOldestAge": config["target_s"]}},
            },
        }
    )


def one(task: tuple[str, str, int, str]) -> dict[str, Any]:
    name, shape, seed, scaler = task
    config = CONFIGS[name]
    plan = scenario.Scenario.of(
        jobqueue(config),
        startup_s=config["startup_s"],
        job_times=traces.parse_job_times(config["job_seconds"]),
        seed=seed,
    )
    workload = plan.shape(shape)
    started = time.perf_counter()
    outcome = (
        scenario.run_keda(plan, workload) if scaler == "keda-hpa" else scenario.run_policy(plan, workload)
    )
    return {
        "config": name,
        "shape": shape,
        "seed": seed,
        "scaler": scaler,
        "summary": asdict(outcome.summary),
        "cost_ratio": outcome.summary.cost_ratio,
        "kinds": outcome.kinds,
        "base_rate": plan.rate,
        "run_s": round(time.perf_counter() - started, 2),
    }


def totals(results: list[dict[str, Any]], name: str, scaler: str, seeds: list[int]) -> dict[str, Any]:
    """Totals over the seven shapes, per seed; their mean and worst seed."""
    per_seed = []
    for seed in seeds:
        runs = [r for r in results if (r["config"], r["scaler"], r["seed"]) == (name, scaler, seed)]
        per_seed.append(report.total([report.Summary(**r["summary"]) for r in runs]))
    figures = {
        "seconds_over_target": [t.seconds_over_target for t in per_seed],
        "cost_ratio": [t.cost_ratio for t in per_seed],
        "reversals": [t.reversals for t in per_seed],
        "interrupted": [t.interrupted for t in per_seed],
    }
    return {
        key: {"mean": statistics.fmean(values), "worst": max(values), "seeds": values}
        for key, values in figures.items()
    }


def markdown(name: str, results: list[dict[str, Any]], seeds: list[int]) -> str:
    config = CONFIGS[name]
    base = next(r["base_rate"] for r in results if r["config"] == name)
    lines = [
        f"Configuration {name}: pods start in {config['startup_s']:g} s ±20 %, jobs {config['job_seconds']}, "
        f"{config['slots']} slots per pod, maxOldestAge {config['target_s']} s, maxReplicas {MAX_REPLICAS}, "
        f"the rest at the defaults; shapes at {base:g} jobs/s; seeds {', '.join(map(str, seeds))} "
        "(mean over the seeds, worst seed in brackets).",
        "",
        "| over the 7 shapes | seconds over T | replica-seconds ÷ lower bound | direction reversals "
        "| jobs interrupted |",
        "|---|---|---|---|---|",
    ]
    for scaler in SCALERS:
        t = totals(results, name, scaler, seeds)
        cells = [
            f"{t['seconds_over_target']['mean']:,.0f} [{t['seconds_over_target']['worst']:,.0f}]",
            f"{t['cost_ratio']['mean']:.2f} [{t['cost_ratio']['worst']:.2f}]",
            f"{t['reversals']['mean']:.1f} [{t['reversals']['worst']}]",
            f"{t['interrupted']['mean']:,.1f} [{t['interrupted']['worst']}]",
        ]
        lines.append(f"| {LABELS[scaler]} | " + " | ".join(cells) + " |")
    lines += ["| **goal** | **0** | **≤ 1.25** | **≤ 25** | **0** |", ""]
    lines += [
        "| shape | scaler | seconds over T | ÷ lower bound | reversals | interrupted | wait p99 (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for shape in traces.SHAPES:
        for scaler in SCALERS:
            runs = [r for r in results if (r["config"], r["shape"], r["scaler"]) == (name, shape, scaler)]
            summaries = [report.Summary(**r["summary"]) for r in runs]
            combined = report.total(summaries)
            lines.append(
                f"| {shape} | {'KEDA + HPA' if scaler == 'keda-hpa' else 'policy'} | "
                f"{combined.seconds_over_target / len(runs):,.1f} | {combined.cost_ratio:.2f} | "
                f"{combined.reversals / len(runs):.1f} | {combined.interrupted / len(runs):.1f} | "
                f"{max(s.wait_p99_s for s in summaries):.1f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "scaling.json")
    args = parser.parse_args()
    started = time.monotonic()
    tasks = [
        (name, shape, seed, scaler)
        for name in CONFIGS
        for seed in args.seeds
        for shape in traces.SHAPES
        for scaler in SCALERS
    ]
    # The longest runs first, so two processes finish together.
    tasks.sort(key=lambda t: (t[3] != "jobqueue", t[1] not in ("ramp", "diurnal")))
    with multiprocessing.Pool(args.processes) as pool:
        results = pool.map(one, tasks, chunksize=1)
    tables = {name: markdown(name, results, args.seeds) for name in CONFIGS}
    for table in tables.values():
        print(table, end="\n\n")
    elapsed = time.monotonic() - started
    print(f"{len(results)} runs in {elapsed:.0f} s on {args.processes} processes")
    output = {
        "configs": CONFIGS,
        "max_replicas": MAX_REPLICAS,
        "seeds": args.seeds,
        "goal": GOAL,
        "totals": {name: {s: totals(results, name, s, args.seeds) for s in SCALERS} for name in CONFIGS},
        "runs": results,
        "tables": tables,
        "bench_s": round(elapsed, 1),
        "machine": {"python": platform.python_version(), "processes": args.processes},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(output, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
