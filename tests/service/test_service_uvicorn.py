"""The service in a real `uvicorn` process on a loopback port, called over real HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.servers import ADMIN
from tests.processes import unused_port, wait_until_healthy


@pytest.fixture
def server(start_process: Any, free_port: int) -> tuple[str, subprocess.Popen[bytes], Path]:
    """One API process configured only through MPT_* variables, logging uvicorn's lifecycle."""
    started = start_process(free_port, MPT_LOG_LEVEL="INFO")
    return started.url, started.process, started.log


def _activate_old(client: httpx.Client, packages: Any) -> None:
    """Create deployment `default` with the old package as its active release 1."""
    assert client.post("/v1/deployments", json={"name": "default"}).status_code == 201
    response = client.post(
        "/v1/deployments/default/releases",
        files={"file": ("old.zip", packages.old.read_bytes(), "application/zip")},
        data={"activate": "true"},
    )
    assert response.status_code == 201, response.text


def test_uvicorn_serves_predictions_over_real_http(server, packages, tmp_path) -> None:
    url, process, log = server
    with httpx.Client(base_url=url, headers=ADMIN, timeout=30) as client:
        _activate_old(client, packages)
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


def _serve(var_dir: Path, *args: str, **env: str) -> subprocess.Popen[bytes]:
    full = {**os.environ, "MPT_VAR_DIR": str(var_dir), "OMP_NUM_THREADS": "1", **env}
    command = [sys.executable, "-m", "service.cli", "serve", *args]
    with (var_dir / "server.log").open("wb") as log:
        return subprocess.Popen(command, env=full, stdout=log, stderr=subprocess.STDOUT)


def test_serve_workers_runs_several_api_processes_on_one_port(packages, tmp_path) -> None:
    """`serve --workers 2`: two processes (the database migrated once, by the parent) answer
    on one port; predictions go through either."""
    port = unused_port()
    var_dir = tmp_path / "var"
    var_dir.mkdir()
    token = ADMIN["Authorization"].removeprefix("Bearer ")
    env = {"MPT_EMBEDDED_WORKER": "false", "MPT_ADMIN_TOKEN": token, "MPT_LOG_LEVEL": "INFO"}
    process = _serve(var_dir, "--workers", "2", "--port", str(port), **env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(process, url, var_dir / "server.log")
        with httpx.Client(base_url=url, headers=ADMIN, timeout=30) as client:
            _activate_old(client, packages)
            inputs = packages.model_inputs(packages.old, range(5), 1).tolist()
            answers = [client.post("/predict", json={"inputs": inputs}) for _ in range(40)]
        # a process that had not loaded the release yet answers 503 until its next poll
        assert {a.status_code for a in answers} <= {200, 503}
        assert answers[-1].status_code == 200 and answers[-1].json()["release"] == 1
    finally:
        process.terminate()
        process.wait(timeout=60)
    log = (var_dir / "server.log").read_text()
    assert log.count("Application startup complete") == 2, log[-3000:]


def test_serve_workers_refuses_to_run_without_a_separate_celery_worker(tmp_path) -> None:
    var_dir = tmp_path / "var"
    var_dir.mkdir()
    process = _serve(var_dir, "--workers", "2", MPT_ADMIN_TOKEN="k" * 24)
    assert process.wait(timeout=60) == 2
    assert "MPT_EMBEDDED_WORKER=false" in (var_dir / "server.log").read_text()
    assert not (var_dir / "mpt.db").exists()  # refused before touching the database
