"""The service in a real `uvicorn` process on a loopback port, called over real HTTP."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.servers import ADMIN


@pytest.fixture
def server(start_process: Any, free_port: int) -> tuple[str, subprocess.Popen[bytes], Path]:
    """One API process configured only through MPT_* variables."""
    started = start_process(free_port)
    return started.url, started.process, started.log


def test_uvicorn_serves_predictions_over_real_http(server, packages, tmp_path) -> None:
    url, process, log = server
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
    assert "Application shutdown complete" in log.read_text()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/healthz", timeout=1)
