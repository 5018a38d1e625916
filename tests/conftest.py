"""Fixtures every test package shares: the anyio backend, problem-detail checks, a schema of
its own on the local PostgreSQL server, a free port with a health wait for tests that start a
real server process, and a bucket of its own on a real S3-compatible server (moto's).

PostgreSQL tests FAIL (never skip) when the server is down: CI runs with it up. Each test
gets a fresh schema, dropped afterwards, so runs are repeatable and never touch tables that
other test suites keep in the same database.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
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
from tests.s3 import CREDENTIALS, REGION, MotoServer, start_moto

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
    with _fresh_schema(request) as url:
        yield url


@pytest.fixture
def other_postgres_url(request: pytest.FixtureRequest) -> Iterator[URL]:
    """A second fresh schema, for a test that moves data from one database to another."""
    with _fresh_schema(request) as url:
        yield url


@contextlib.contextmanager
def _fresh_schema(request: pytest.FixtureRequest) -> Iterator[URL]:
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


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """moto's S3 server, one process for the whole run (each test gets its own bucket)."""
    server = start_moto(tmp_path_factory.mktemp("moto") / "moto.log")
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(s3_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new bucket on `s3_server`, with its test credentials in the AWS variables."""
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return s3_server.create_bucket()


@pytest.fixture
def s3_settings(s3_server: MotoServer, s3_bucket: str) -> dict[str, str]:
    """The settings of the s3 backend on `s3_bucket`, for `Settings(**...)`."""
    return {
        "artifact_backend": "s3",
        "s3_bucket": s3_bucket,
        "s3_endpoint_url": s3_server.url,
        "s3_region": REGION,
    }


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


class TcpProxy:
    """Forwards `127.0.0.1:port` to `127.0.0.1:target`, so a test can make a server
    unreachable without touching it: `cut()` drops every connection and refuses new ones,
    `restore()` listens again on the same port."""

    def __init__(self, target: int) -> None:
        self.target, self.port = target, unused_port()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
            listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


@pytest.fixture
def tcp_proxy() -> Iterator[Callable[[int], TcpProxy]]:
    """`tcp_proxy(port)`: a `TcpProxy` to a local port; all are cut after the test."""
    proxies: list[TcpProxy] = []

    def make(target: int) -> TcpProxy:
        proxies.append(TcpProxy(target))
        return proxies[-1]

    yield make
    for proxy in proxies:
        proxy.cut()


@dataclass
class CliRun:
    returncode: int
    stdout: str
    stderr: str


CliRunner = Callable[..., CliRun]


@pytest.fixture
def mpt_service(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[CliRunner]:
    """`mpt_service(settings, *args)`: run `mpt-service` in this process with `settings` as
    its only `MPT_*` variables; returns its exit status and output."""
    from core.settings import get_settings
    from service.cli import main

    def run(settings: dict[str, object], *args: str) -> CliRun:
        for name in [k for k in os.environ if k.startswith("MPT_")]:
            monkeypatch.delenv(name)
        for key, value in settings.items():
            monkeypatch.setenv(f"MPT_{key.upper()}", str(value))
        get_settings.cache_clear()
        capsys.readouterr()
        try:
            code = main(list(args))
        finally:
            get_settings.cache_clear()
        out = capsys.readouterr()
        return CliRun(code, out.out, out.err)

    yield run
    get_settings.cache_clear()
