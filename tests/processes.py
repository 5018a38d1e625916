"""Helpers for tests that start real server processes: a free port, and a wait until the
server answers its health check (`bench.servers`, failing the test instead of raising)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bench import servers

__all__ = ["unused_port", "wait_until_healthy"]


def unused_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    return servers.free_port()


def wait_until_healthy(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    """Poll `url`/healthz until it answers 200; a server that exits or never answers fails
    the test with its log's tail."""
    try:
        servers.wait_healthy(process, url, log)
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
