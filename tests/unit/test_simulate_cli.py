"""``jobqueue simulate``: what it prints for a JobQueue, and one clear line with exit 2 for bad input.

| input                                   | outcome                                                |
| --------------------------------------- | ------------------------------------------------------ |
| a JobQueue and one shape                | the figures and a chart; KEDA's row on request         |
| a recorded trace (CSV of timestamps)    | the same, on that trace                                |
| missing file, not YAML, no JobQueue,    | ``error: ...`` naming the file, the field or the value |
| invalid JobQueue, two without --name,   | and exit status 2                                      |
| unknown trace, bad CSV, bad --job-seconds|                                                        |
| negative --startup                      | argparse's usage error, exit status 2                  |
| the ``jobqueue`` command                | finds ``simulate`` through its entry point             |
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from jobqueue_operator.simulate import cli

JOBQUEUE = {
    "apiVersion": "jobqueue.dev/v1alpha1",
    "kind": "JobQueue",
    "metadata": {"name": "orders"},
    "spec": {
        "queue": {"name": "orders", "redis": {"urlSecretRef": {"name": "r", "key": "url"}}},
        "workers": {"concurrency": 4, "template": {"spec": {"containers": [{"name": "w", "image": "x"}]}}},
        "scaling": {"maxReplicas": 10, "targets": {"maxOldestAge": 30}},
    },
}


def manifest(tmp_path: Path, *documents: object, name: str = "jobqueue.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(documents or [JOBQUEUE]))
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        cli.main(list(argv))
        code = 0
    except SystemExit as exit:
        code = int(exit.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_one_shape_prints_the_figures_and_a_chart(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "-f", str(manifest(tmp_path)), "--trace", "noisy", "--compare-keda")
    assert (code, err) == (0, "")
    assert "JobQueue orders: maxOldestAge 30s, replicas 0-10, 4 slots per pod" in out
    assert "shapes at 2.0 jobs/s" in out  # a tenth of maxReplicas' work: 1 pod x 4 slots / 2 s
    rows = [
        line.split() for line in out.splitlines() if line.startswith("noisy ") and len(line.split()) == 10
    ]
    lines = {row[1]: row for row in rows}
    assert set(lines) == {"policy", "keda"}
    assert lines["policy"][2] == "0"  # no second over maxOldestAge
    assert "arrivals/s" in out and "oldest age" in out and "÷ bound" in out


def test_a_recorded_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "arrivals.csv"
    trace.write_text("t\n" + "\n".join(str(1_700_000_000 + i * 0.25) for i in range(2400)))
    code, out, _ = run(capsys, "-f", str(manifest(tmp_path)), "--trace", str(trace), "--seed", "3")
    assert code == 0 and any(line.startswith("arrivals.csv ") for line in out.splitlines())


def test_all_shapes_and_a_total(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "-f", str(manifest(tmp_path)), "--rate", "1", "--job-seconds", "exp:1")
    rows = [line.split()[0] for line in out.splitlines() if line.endswith(tuple("0123456789"))]
    assert code == 0 and rows[-1] == "total" and {"step", "bursts", "idle-burst"} <= set(rows)


@pytest.mark.parametrize(
    ("make", "argv", "message"),
    [
        (lambda p: p / "missing.yaml", [], "missing.yaml: No such file or directory"),
        (lambda p: _write(p, "x.yaml", "a: [b"), [], "x.yaml: not YAML"),
        (lambda p: _write(p, "x.yaml", "kind: Deployment\n"), [], "x.yaml: no JobQueue in it"),
        (
            lambda p: manifest(p, {**JOBQUEUE, "spec": {**JOBQUEUE["spec"], "scaling": {"maxReplicas": 0}}}),
            [],
            "JobQueue orders: spec.scaling.maxReplicas",
        ),
        (lambda p: manifest(p, JOBQUEUE, JOBQUEUE), [], "2 JobQueues (orders, orders); pick one with --name"),
        (lambda p: manifest(p), ["--name", "other"], "no JobQueue named 'other' in it"),
        (lambda p: manifest(p), ["--trace", "sawtooth"], "--trace sawtooth: not a shape"),
        (lambda p: manifest(p), ["--trace", "BAD"], "BAD: line 3: not a number or timestamp: 'not-a-time'"),
        (lambda p: manifest(p), ["--job-seconds", "gamma:2"], "--job-seconds 'gamma:2': expected"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: object, argv: list[str], message: str
) -> None:
    _write(tmp_path, "BAD", "t\n12\nnot-a-time\n")
    path = make(tmp_path)  # type: ignore[operator]
    argv = [tmp_path / "BAD" if a == "BAD" else a for a in argv]  # type: ignore[misc]
    code, out, err = run(capsys, "-f", str(path), *map(str, argv))
    assert code == 2 and out == ""
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) <= 2, err
    assert "Traceback" not in err


def _write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("argv", [["--startup", "-3"], ["--startup", "x"], []])
def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        cli.main([*(["-f", str(manifest(tmp_path))] if argv else []), *argv])
    assert exit.value.code == 2 and "usage: jobqueue simulate" in capsys.readouterr().err


def test_the_jobqueue_command_finds_simulate(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "worker_runtime",
            "simulate",
            "-f",
            str(manifest(tmp_path)),
            "--trace",
            "step",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "JobQueue orders" in done.stdout
