"""Fixtures every test package shares: the anyio backend, problem-detail checks, a schema of
its own on the local PostgreSQL server, and a free port with a health wait for tests that
start a real server process.

PostgreSQL tests FAIL (never skip) when the server is down: CI runs with it up. Each test
gets a fresh schema, dropped afterwards, so runs are repeatable and never touch tables that
other test suites keep in the same database.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError

from core.db import make_engine
from tests.processes import unused_port, wait_until_healthy

PROBLEM_JSON = "application/problem+json"
REPO_ROOT = Path(__file__).resolve().parents[1]
POSTGRES_URL = os.environ.get(
    "MPT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """`response` is an RFC 9457 problem with `status`; returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    body: dict[str, Any] = response.json()
    assert {"type", "title", "status", "detail"} <= body.keys(), body
    assert body["status"] == status
    assert body["title"] and body["detail"] and body["type"]
    return body


@pytest.fixture
def problem() -> Callable[[httpx.Response, int], dict[str, Any]]:
    """`problem(response, status)`: assert an RFC 9457 problem and return its body."""
    return assert_problem


def _create_schema(admin: sa.Engine, schema: str) -> None:
    try:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    except OperationalError as exc:
        admin.dispose()
        pytest.fail(
            f"PostgreSQL is not reachable at {POSTGRES_URL} ({str(exc.orig).strip()}). These "
            "tests need the real server: start it with `source scripts/services.sh` (or point "
            "MPT_TEST_POSTGRES_URL at one).",
            pytrace=False,
        )


@pytest.fixture
def postgres_url(request: pytest.FixtureRequest) -> Iterator[URL]:
    """A fresh schema (`<test package>_test_<hex>`) on the local PostgreSQL server, first on
    the connections' search path; dropped after the test."""
    base = make_url(POSTGRES_URL).update_query_dict({"connect_timeout": "5"})
    schema = f"{request.path.parent.name}_test_{uuid.uuid4().hex[:12]}"
    admin = make_engine(base, poolclass=sa.NullPool)
    _create_schema(admin, schema)
    try:
        yield base.update_query_dict({"options": f"-csearch_path={schema}"})
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    return unused_port()


HealthWait = Callable[["subprocess.Popen[bytes]", str, Path], None]


@pytest.fixture
def wait_healthy() -> HealthWait:
    """`wait_healthy(process, url, log)`: see `wait_until_healthy`."""
    return wait_until_healthy


@dataclass
class Server:
    """A `uvicorn` process serving `service.app:create_app`; `log` holds its output."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


ServerStart = Callable[..., Server]


def spawn_server(folder: Path, name: str = "api", **settings: object) -> Server:
    """A real uvicorn process of the service on a free port, working in `folder` and
    configured only through `MPT_*` variables (no embedded worker unless asked); healthy
    when returned. The caller stops it."""
    port = settings.pop("port", None) or unused_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPT_")}
    values: dict[str, object] = {"embedded_worker": "false", "log_level": "INFO", **settings}
    env |= {f"MPT_{key.upper()}": str(value) for key, value in values.items()}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    log = folder / f"{name}.log"
    command = [sys.executable, "-m", "uvicorn", "--factory", "service.app:create_app"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    with log.open("ab") as output:
        process = subprocess.Popen(command, cwd=folder, env=env, stdout=output, stderr=output)
    server = Server(f"http://127.0.0.1:{port}", process, log)
    try:
        wait_until_healthy(process, server.url, log)
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[ServerStart]:
    """`start_server(name, **mpt_settings)`: `spawn_server` in the test's folder; every
    server is killed after the test."""
    servers: list[Server] = []

    def start(name: str = "api", **settings: object) -> Server:
        server = spawn_server(tmp_path, name, **settings)
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(scope="session")
def server_spawner() -> Callable[..., Server]:
    """`spawn_server` itself, for fixtures of a wider scope that manage their servers."""
    return spawn_server
