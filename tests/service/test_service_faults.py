"""Faults around real API processes: the database unreachable for a while, the disk full or
the artifact store unwritable, the process killed and restarted, an upload cut off mid-body.

The database is made unreachable by cutting a TCP proxy between the API and the shared
PostgreSQL server (which is never stopped); the disk is filled by lowering the API
process's file-size limit (`prlimit`), so a write past it fails as a full disk does.
"""

from __future__ import annotations

import resource
import shutil
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import URL, make_url

pytestmark = pytest.mark.faults

TOKEN = "f" * 24
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
PATIENCE = 60.0  # seconds to recover: only a service that never recovers takes this long


def _until(check: Callable[[], bool], what: str, timeout: float = PATIENCE) -> float:
    """Poll `check` until it holds; the seconds it took."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            pytest.fail(f"{what} did not happen within {timeout} s")
        time.sleep(0.1)
    return time.monotonic() - started


def _deploy(client: httpx.Client, package: Path) -> None:
    assert client.post("/v1/deployments", json={"name": "default"}).status_code == 201
    response = client.post(
        "/v1/deployments/default/releases",
        files={"file": ("old.zip", package.read_bytes())},
        data={"activate": "true"},
    )
    assert response.status_code == 201, response.text


def _predict(client: httpx.Client, inputs: Any) -> httpx.Response:
    return client.post("/predict", json={"inputs": inputs})


def _through(url: URL, port: int) -> str:
    return url.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


@pytest.mark.postgres
def test_faults_database_unreachable_answers_503_keeps_predicting_and_recovers(
    start_server, tcp_proxy, postgres_url: URL, packages, problem, tmp_path: Path
) -> None:
    proxy = tcp_proxy(make_url(postgres_url).port or 5432)
    server = start_server(
        database_url=_through(postgres_url, proxy.port),
        var_dir=tmp_path / "var",
        admin_token=TOKEN,
        release_poll_seconds=0.2,
    )
    inputs = packages.model_inputs(packages.old, range(5), 2).tolist()
    with httpx.Client(base_url=server.url, headers=ADMIN, timeout=30) as client:
        _deploy(client, packages.old)
        assert _predict(client, inputs).status_code == 200  # the admin key is now remembered

        proxy.cut()
        body = problem(client.get("/v1/deployments"), 503)
        assert "database is unreachable" in body["detail"]
        assert client.get("/v1/deployments").headers["retry-after"] == "5"
        problem(client.post("/v1/deployments", json={"name": "during"}), 503)
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "database unreachable"
        unknown = {"Authorization": "Bearer mpt_never-seen-before-key-0123456789"}
        problem(client.get("/v1/deployments", headers=unknown), 503)
        outage_end = time.monotonic() + 3  # several release polls fail meanwhile
        answered = 0
        while time.monotonic() < outage_end:
            response = _predict(client, inputs)
            assert response.status_code == 200, response.text
            assert response.json()["release"] == 1
            answered += 1
        assert client.get("/healthz").status_code == 200 and server.process.poll() is None

        proxy.restore()
        recovery = _until(lambda: client.get("/v1/deployments").status_code == 200, "recovery")
        assert client.get("/readyz").status_code == 200
        names = [d["name"] for d in client.get("/v1/deployments").json()["data"]]
        assert names == ["default"]  # the refused creation left nothing
    print(f"\ndatabase outage: {answered} predictions served, recovered in {recovery:.2f} s")


def _fill_disk(pid: int, limit: int | None) -> None:
    """Files of process `pid` may grow to `limit` bytes (None: back to its hard limit)."""
    _, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (hard if limit is None else limit, hard))


def _store_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.mark.postgres
def test_faults_full_disk_and_unwritable_store_refuse_uploads_and_keep_serving(
    start_server, postgres_url: URL, packages, make, problem, tmp_path: Path
) -> None:
    artifacts = tmp_path / "artifacts"
    server = start_server(
        database_url=postgres_url.render_as_string(hide_password=False),
        artifact_dir=artifacts,
        var_dir=tmp_path / "var",
        admin_token=TOKEN,
        log_level="ERROR",
    )
    inputs = packages.model_inputs(packages.old, range(5), 2).tolist()
    dataset = make.zip(make.tree(["a", "b"], per_class=10, size=(64, 64)))  # 160 KB decoded
    with httpx.Client(base_url=server.url, headers=ADMIN, timeout=30) as client:
        _deploy(client, packages.old)
        before = _store_files(artifacts)
        upload = {"file": ("new.zip", packages.new.read_bytes())}

        _fill_disk(server.process.pid, 64 * 1024)
        try:
            body = problem(client.post("/v1/deployments/default/releases", files=upload), 507)
            assert (
                "artifact store is full" in body["detail"] and str(tmp_path) not in body["detail"]
            )
            body = problem(client.post("/v1/datasets", files={"file": ("d.zip", dataset)}), 507)
            assert "full" in body["detail"]
            assert _predict(client, inputs).status_code == 200
        finally:
            _fill_disk(server.process.pid, None)
        assert _store_files(artifacts) == before

        shutil.rmtree(artifacts / "staging")
        (artifacts / "staging").write_text("not a folder")
        try:
            body = problem(client.post("/v1/deployments/default/releases", files=upload), 503)
            assert "cannot be written" in body["detail"]
        finally:
            (artifacts / "staging").unlink()
        assert [
            r["version"] for r in client.get("/v1/deployments/default/releases").json()["data"]
        ] == [1]

        response = client.post("/v1/deployments/default/releases", files=upload)
        assert response.status_code == 201 and response.json()["version"] == 2  # recovered


@pytest.mark.soak
def test_faults_api_killed_and_restarted_serves_the_active_release_again(
    server_spawner, packages, tmp_path: Path
) -> None:
    settings = {"var_dir": tmp_path / "var", "admin_token": TOKEN}
    server = server_spawner(tmp_path, "first", **settings)
    inputs = packages.model_inputs(packages.old, range(5), 2).tolist()
    try:
        with httpx.Client(base_url=server.url, headers=ADMIN, timeout=30) as client:
            _deploy(client, packages.old)
            assert client.post("/v1/deployments", json={"name": "empty"}).status_code == 201
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=30)
    finally:
        server.stop()
    port = int(server.url.rsplit(":", 1)[1])
    started = time.monotonic()
    again = server_spawner(tmp_path, "second", port=port, **settings)
    try:
        restart = time.monotonic() - started
        with httpx.Client(base_url=again.url, headers=ADMIN, timeout=30) as client:
            ready = client.get("/readyz")
            assert ready.status_code == 200 and ready.json()["deployments"] == {"default": True}
            response = _predict(client, inputs)
            assert response.status_code == 200 and response.json()["release"] == 1
    finally:
        again.stop()
    print(f"\nAPI killed and restarted: healthy and serving after {restart:.2f} s")


@pytest.mark.soak
def test_faults_upload_cut_off_mid_body_leaves_nothing(
    start_server, packages, tmp_path: Path
) -> None:
    server = start_server(var_dir=tmp_path / "var", admin_token=TOKEN)
    with httpx.Client(base_url=server.url, headers=ADMIN, timeout=30) as client:
        _deploy(client, packages.old)
        releases = client.get("/v1/deployments/default/releases").json()["count"]
    before = _store_files(tmp_path / "var" / "artifacts")
    host, port = server.url.removeprefix("http://").split(":")
    boundary = "cutcutcut"
    head = (
        f"POST /v1/deployments/default/releases HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Length: {10 * 1024**2}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n"
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="p.zip"\r\n'
        "Content-Type: application/zip\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(head + packages.new.read_bytes()[:200_000])
    time.sleep(1.0)  # the server notices the disconnect
    with httpx.Client(base_url=server.url, headers=ADMIN, timeout=30) as client:
        assert client.get("/v1/deployments/default/releases").json()["count"] == releases
        assert client.get("/healthz").status_code == 200
    assert _store_files(tmp_path / "var" / "artifacts") == before
