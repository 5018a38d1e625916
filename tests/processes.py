"""Helpers for tests that start real processes: a free port, a wait until a server answers
its health check, `mpt-service serve` as a context manager, and the `mptctl` command."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

from bench import servers

__all__ = ["mptctl", "serving", "unused_port", "wait_until_healthy"]


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


@contextmanager
def serving(var_dir: Path, env: Mapping[str, str]) -> Iterator[str]:
    """`mpt-service serve` on a free port with everything under `var_dir`, one torch thread
    and `env` on top; yields its URL once it is healthy, and stops it after. Its output goes
    to `var_dir`/server.log."""
    var_dir.mkdir(parents=True, exist_ok=True)
    port = unused_port()
    full_env = {
        **os.environ, "MPT_VAR_DIR": str(var_dir), "MPT_PORT": str(port),
        "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **env,
    }  # fmt: skip
    log = var_dir / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve"], env=full_env, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(process, url, log)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=60)


def mptctl(
    url: str, key: str, *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the `mptctl` command line against `url` with `key` (through MPT_URL and MPT_KEY,
    as a user would set them); its output is captured as text."""
    env = {**os.environ, "MPT_URL": url, "MPT_KEY": key}
    return subprocess.run(
        [sys.executable, "-m", "mptctl.cli", *args],
        env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
