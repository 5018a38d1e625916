"""A real S3-compatible server for tests: moto's server in a process of its own on a free
loopback port, reached over HTTP by the same boto3 client the store uses in production."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.s3_store import make_client
from tests.processes import unused_port

__all__ = ["CREDENTIALS", "REGION", "MotoServer", "start_moto"]

REGION = "us-east-1"
# moto accepts any key until `enforce_auth`; the standard AWS variables carry them, as in
# production, and the files and instance metadata of the machine running the tests are off.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_CONFIG_FILE": "/nonexistent/aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@dataclass
class MotoServer:
    """`python -m moto.server` on `url`; `log` holds its output."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path
    _client: Any = None

    def client(self) -> Any:
        """The boto3 client of this server, made once (making one takes a few tenths of a
        second); it read its credentials from the environment of the first test."""
        if self._client is None:
            self._client = make_client(self.url, REGION)
        return self._client

    def create_bucket(self) -> str:
        """A new, empty bucket of the test's own."""
        name = f"mpt-test-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        return name

    def enforce_auth(self, enforce: bool) -> None:
        """Check credentials from now on (unknown keys are refused), or stop checking."""
        count = b"0" if enforce else b"inf"
        response = httpx.post(
            f"{self.url}/moto-api/reset-auth",
            content=count,
            headers={"content-type": "text/plain"},
            timeout=10,
        )
        response.raise_for_status()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


def start_moto(log: Path, timeout: float = 30.0) -> MotoServer:
    """Start moto's server and wait until it accepts connections."""
    port = unused_port()
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with log.open("ab") as output:
        process = subprocess.Popen(command, stdout=output, stderr=output)
    server = MotoServer(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return server
        except OSError:
            time.sleep(0.05)
    server.stop()
    pytest.fail(f"moto's S3 server did not start: {log.read_text()[-2000:]}", pytrace=False)
