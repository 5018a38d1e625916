"""Real API processes for the serving benchmarks: model packages of a given architecture,
`uvicorn` processes on loopback ports, and a deployment with its releases registered."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import torch

from mpt import models
from mpt.io import InputSpec, Manifest, save_package

ADMIN_TOKEN = "bench-admin-token-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CIFAR_SPEC = InputSpec(3, 32, 32, (0.49, 0.48, 0.45), (0.25, 0.24, 0.26))


def make_package(path: Path, arch: str, num_classes: int = 10, seed: int = 0) -> Path:
    """A package of `arch` with fresh weights on 3x32x32 inputs: time does not depend on
    what the weights are."""
    torch.manual_seed(seed)
    model = models.create(arch, num_classes, in_channels=3).eval()
    labels = [f"class-{i}" for i in range(num_classes)]
    return save_package(path, model, Manifest(arch, num_classes, labels, CIFAR_SPEC))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ApiProcess:
    url: str
    process: subprocess.Popen[bytes]
    log: Path


def wait_healthy(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    """Poll `url`/healthz until it answers 200; `RuntimeError` with the log's tail if the
    process exits or stays silent for 180 s (far above a cold start on a busy machine)."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}:\n{_tail(log)}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the server did not answer /healthz within 180 s:\n{_tail(log)}")


def _tail(log: Path) -> str:
    return log.read_text()[-4000:]


def start_api(
    var_dir: Path, port: int | None = None, workers: int = 1, **variables: str
) -> ApiProcess:
    """`mpt-service serve --workers N` configured only through MPT_* variables (`var_dir` and
    the admin key, then `variables`), its output in `var_dir`/api-<port>.log; returns once it
    answers /healthz."""
    port = port or free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPT_")}
    env |= {
        "MPT_VAR_DIR": str(var_dir),
        "MPT_ADMIN_TOKEN": ADMIN_TOKEN,
        "MPT_LOG_LEVEL": "WARNING",
        "MPT_EMBEDDED_WORKER": "false",  # the API alone: no Celery worker beside it
        **variables,
    }
    var_dir.mkdir(parents=True, exist_ok=True)
    log = var_dir / f"api-{port}.log"
    command = [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", str(workers)]
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, cwd=var_dir.parent, env=env, stdout=output, stderr=output
        )
    server = ApiProcess(f"http://127.0.0.1:{port}", process, log)
    try:
        wait_healthy(process, server.url, log)
    except BaseException:
        stop([server])
        raise
    return server


def stop(servers: list[ApiProcess]) -> None:
    """Ask each process to shut down gracefully; kill the ones that do not within 30 s."""
    for server in servers:
        if server.process.poll() is None:
            server.process.terminate()
    for server in servers:
        try:
            server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=30)


@contextmanager
def api_processes(
    var_dir: Path, count: int = 1, workers: int = 1, **variables: str
) -> Iterator[list[ApiProcess]]:
    """`count` API processes sharing `var_dir` (and `MPT_DATABASE_URL` when given), started
    one after the other so only the first runs the migrations."""
    servers: list[ApiProcess] = []
    try:
        for _ in range(count):
            servers.append(start_api(var_dir, workers=workers, **variables))
        yield servers
    finally:
        stop(servers)


def wait_ready(urls: list[str], streak: int = 10) -> None:
    """Wait until every process has loaded every active release: /readyz answers 200
    `streak` times in a row at each URL (several processes may share one port)."""
    deadline = time.monotonic() + 180
    for url in urls:
        ready = 0
        while ready < streak:
            ready = ready + 1 if httpx.get(f"{url}/readyz", timeout=10).status_code == 200 else 0
            if time.monotonic() > deadline:
                raise RuntimeError(f"not all of {urls} loaded the active releases within 180 s")
            time.sleep(0.02 if ready else 0.1)


def deploy(url: str, packages: list[Path], name: str = "default") -> None:
    """Create deployment `name`, activate the first package, register the others."""
    with httpx.Client(base_url=url, headers=ADMIN, timeout=120) as client:
        response = client.post("/v1/deployments", json={"name": name})
        response.raise_for_status()
        for i, package in enumerate(packages):
            response = client.post(
                f"/v1/deployments/{name}/releases",
                files={"file": (package.name, package.read_bytes(), "application/zip")},
                data={"activate": "true"} if i == 0 else {},
            )
            response.raise_for_status()
