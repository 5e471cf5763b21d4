"""The kind end-to-end script: its own checks always run; the real run is opt-in.

| case                                   | runs                                                      |
| -------------------------------------- | --------------------------------------------------------- |
| script parses (`bash -n`)              | always                                                    |
| names exactly the missing tools        | always (PATH without docker, kind, kubectl, helm)         |
| full run on a kind cluster             | `pytest -m kind` with JOBQUEUE_E2E_KIND=1 and the tools   |
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("run.sh")
TOOLS = ("docker", "kind", "kubectl", "helm")


def test_script_parses() -> None:
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_script_names_the_missing_tools(tmp_path: Path) -> None:
    bash = shutil.which("bash")
    assert bash
    for tool in ("dirname", "sed"):  # what the script uses before its tool check
        found = shutil.which(tool)
        assert found
        (tmp_path / tool).symlink_to(found)
    result = subprocess.run(
        [bash, str(SCRIPT)],
        env={"PATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "missing on PATH: docker kind kubectl helm" in result.stderr


@pytest.mark.kind
@pytest.mark.timeout(1800)
def test_kind_end_to_end() -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if os.environ.get("JOBQUEUE_E2E_KIND") != "1" or missing:
        reason = f"set JOBQUEUE_E2E_KIND=1 and install {', '.join(missing) or 'nothing more'} to run on kind"
        print(reason)
        pytest.skip(reason)
    subprocess.run(["bash", str(SCRIPT)], check=True, timeout=1700)
