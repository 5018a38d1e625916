"""Fixtures every test package shares: the anyio backend, problem-detail checks, a schema of
its own on the local PostgreSQL server, and a free port with a health wait for tests that
start a real server process.

PostgreSQL tests FAIL (never skip) when the server is down: CI runs with it up. Each test
gets a fresh schema, dropped afterwards, so runs are repeatable and never touch tables that
other test suites keep in the same database.
"""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError

from bench import servers
from core.db import make_engine

PROBLEM_JSON = "application/problem+json"
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
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


HealthWait = Callable[["subprocess.Popen[bytes]", str, Path], None]


def wait_until_healthy(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    """Poll `url`/healthz until it answers 200 (`bench.servers.wait_healthy`); a server that
    exits or never answers fails the test with its log's tail."""
    try:
        servers.wait_healthy(process, url, log)
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def wait_healthy() -> HealthWait:
    """`wait_healthy(process, url, log)`: see `wait_until_healthy`."""
    return wait_until_healthy
