"""The service in a real `uvicorn` process on a loopback port, called over real HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ADMIN = {"Authorization": "Bearer " + "u" * 24}


@pytest.fixture
def server(
    tmp_path: Path, free_port: int, wait_healthy: Any
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`uvicorn --factory service.app:create_app` configured only through MPT_* variables."""
    port = free_port
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPT_")}
    env |= {
        "MPT_VAR_DIR": str(tmp_path / "var"),
        "MPT_ADMIN_TOKEN": "u" * 24,
        "MPT_LOG_LEVEL": "WARNING",
        "MPT_EMBEDDED_WORKER": "false",  # the API alone: no Celery worker beside it
    }
    log = tmp_path / "uvicorn.log"
    command = [sys.executable, "-m", "uvicorn", "--factory", "service.app:create_app"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as output:
        process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=output, stderr=output)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(process, url, log)
        yield url, process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


def test_uvicorn_serves_predictions_over_real_http(server, packages, tmp_path) -> None:
    url, process = server
    with httpx.Client(base_url=url, headers=ADMIN, timeout=30) as client:
        assert client.post("/v1/deployments", json={"name": "default"}).status_code == 201
        response = client.post(
            "/v1/deployments/default/releases",
            files={"file": ("old.zip", packages.old.read_bytes(), "application/zip")},
            data={"activate": "true"},
        )
        assert response.status_code == 201, response.text
        inputs = packages.model_inputs(packages.old, range(5), 2)
        response = client.post("/predict", json={"inputs": inputs.tolist()})
        assert response.status_code == 200, response.text
        assert response.json()["release"] == 1 and len(response.json()["predictions"]) == 2
        assert client.get("/readyz").json()["deployments"] == {"default": True}
        unauthorised = client.get("/v1/deployments", headers={"Authorization": "Bearer nope"})
        assert unauthorised.status_code == 401
    assert (tmp_path / "var" / "mpt.db").is_file()

    process.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises the signal it caught as its exit status.
    assert process.wait(timeout=30) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in (tmp_path / "uvicorn.log").read_text()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/healthz", timeout=1)
