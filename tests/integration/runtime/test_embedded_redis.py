"""The redis-server the suite and dev mode start: a server that refuses its configuration says why
and leaves nothing open (its stderr pipe and temporary directory), so one bad start cannot end the
whole run with unclosed-resource warnings."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from worker_runtime.embedded_redis import RedisServer, RedisServerError


def test_a_server_refusing_its_configuration_says_why_and_leaves_nothing_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    server = RedisServer(extra_args=["--no-such-directive", "1"])
    with pytest.raises(RedisServerError, match="no-such-directive"):
        server.start()
    assert server.process is None  # its stderr pipe closed with it
    assert list(tmp_path.glob("jobqueue-redis-*")) == []
