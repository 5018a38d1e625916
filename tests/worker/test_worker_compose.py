"""docker-compose.yml's production topology, run natively: a fresh PostgreSQL database, Redis
as the broker, the `migrate` service, two API processes and a Celery worker started with the
compose file's own commands and environment (`.env.example` as `.env`), with only its hosts,
ports and paths mapped to local ones; then one upgrade end to end through the HTTP API, and
both API processes serving the promoted release. The images' HEALTHCHECK commands (read from
the Dockerfile) must pass against them.

No container engine is needed; a compose client (`docker compose` or `docker-compose`, which
scripts/setup.sh installs) checks both compose files with `config`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError

from core.settings import Settings, get_settings
from core.tasks import worker_command
from tests.deploy import (
    COMPOSE,
    DOCKERFILE,
    ENV_EXAMPLE,
    ComposeService,
    compose_services,
    dockerfile_stages,
    read_env_file,
)
from tests.processes import unused_port, wait_until_healthy
from tests.wheels import REPO_ROOT, clean_env, run

POSTGRES_URL = os.environ.get(
    "MPT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
SHARED_VOLUME = "artifacts"
FINISHED = ("succeeded", "failed", "cancelled")


def _dotenv() -> dict[str, str]:
    """`.env.example` as a deployment's `.env`: its placeholders are valid values."""
    return read_env_file(ENV_EXAMPLE)


# --- the files agree with each other ----------------------------------------------------------


def test_worker_compose_runs_the_images_commands_and_the_worker_command() -> None:
    services = compose_services(_dotenv(), _dotenv())
    stages = dockerfile_stages()
    assert services["worker"].command == ["celery", *worker_command()[3:]]
    assert stages["worker"].cmd == services["worker"].command
    assert stages["api"].cmd == services["api"].command
    assert services["migrate"].command == ["mpt-service", "migrate"]
    assert services["api"].replicas == 2
    for name in ("api", "worker"):
        stage = stages[name]
        assert stage.healthcheck and stage.healthcheck[:2] == ["python", "-m"], name
        assert stage.user is not None and stage.user.partition(":")[0] not in ("0", "root"), name
        artifacts = services[name].environment["MPT_ARTIFACT_DIR"]
        assert f"{SHARED_VOLUME}:{artifacts}" in services[name].volumes, name
        assert artifacts.startswith(stage.env["MPT_VAR_DIR"] + "/"), name


def test_worker_compose_env_example_names_every_setting() -> None:
    text = ENV_EXAMPLE.read_text()
    missing = [name for name in Settings.model_fields if f"MPT_{name.upper()}=" not in text]
    assert not missing, f".env.example does not mention {missing}"


def test_worker_compose_refuses_to_start_without_the_keys() -> None:
    for required in ("MPT_ADMIN_TOKEN", "POSTGRES_PASSWORD"):
        variables = {k: v for k, v in _dotenv().items() if k != required}
        with pytest.raises(KeyError, match=required):
            compose_services(variables, variables)


def test_worker_compose_health_checks_fail_without_their_server(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from service.healthcheck import main as check_api
    from worker.healthcheck import main as check_worker

    closed = f"127.0.0.1:{unused_port()}"
    assert check_api(["--url", f"http://{closed}", "--timeout", "2"]) == 1
    monkeypatch.setenv("MPT_BROKER_URL", f"redis://{closed}/0")
    get_settings.cache_clear()
    try:
        assert check_worker(["--timeout", "1"]) == 1
    finally:
        get_settings.cache_clear()
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 2 and all(closed in line for line in errors), errors


def _compose_client() -> list[str] | None:
    """`docker compose` or `docker-compose`, whichever answers `version`; None if neither."""
    for client in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(client[0]) is None:
            continue
        version = subprocess.run([*client, "version"], capture_output=True, check=False)
        if version.returncode == 0:
            return client
    return None


def test_worker_compose_files_pass_docker_compose_config(tmp_path: Path) -> None:
    client = _compose_client()
    assert client is not None, (
        "no compose client: neither `docker compose` nor `docker-compose` runs "
        "(scripts/setup.sh installs Debian's docker-compose when it can)"
    )
    for path in (COMPOSE, REPO_ROOT / "docker-compose.s3.yml", DOCKERFILE):
        shutil.copy(path, tmp_path)
    dotenv = ENV_EXAMPLE.read_text() + "AWS_ACCESS_KEY_ID=compose-test\n"
    (tmp_path / ".env").write_text(dotenv + "AWS_SECRET_ACCESS_KEY=compose-test-secret\n")
    for files in (["docker-compose.yml"], ["docker-compose.yml", "docker-compose.s3.yml"]):
        options = [part for name in files for part in ("-f", name)]
        run([*client, *options, "config", "--quiet"], cwd=tmp_path)


# --- the topology, natively -------------------------------------------------------------------


@pytest.fixture
def database() -> Iterator[URL]:
    """A new database on the local PostgreSQL server (where compose has its `postgres`
    service), dropped after the test."""
    base = make_url(POSTGRES_URL)
    name = f"mpt_compose_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except OperationalError as exc:
        admin.dispose()
        pytest.fail(
            f"PostgreSQL is not reachable at {POSTGRES_URL} ({str(exc.orig).strip()}): start "
            "it with `source scripts/services.sh` (or point MPT_TEST_POSTGRES_URL at one).",
            pytrace=False,
        )
    try:
        yield base.set(database=name)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@dataclass
class Container:
    """A service's process, standing in for its container; `env` is what it was given."""

    name: str
    process: subprocess.Popen[bytes]
    env: dict[str, str]
    log: Path
    url: str = ""

    def terminate(self) -> None:
        """SIGTERM to its process group, as `docker compose down` stops a container."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)

    def stop(self) -> None:
        """`terminate`, then SIGKILL to the group if it lingers (pool children too)."""
        self.terminate()
        with suppress(subprocess.TimeoutExpired):
            self.process.wait(15)
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


@dataclass
class Topology:
    """The compose services as local processes, and how to start more of them."""

    services: dict[str, ComposeService]
    folder: Path
    database: URL
    broker: str
    containers: list[Container]

    def environment(self, service: ComposeService, name: str) -> dict[str, str]:
        """The service's compose environment with its hosts and paths made local: the fresh
        database, the tests' Redis database, one folder as the shared artifact volume, and a
        folder of its own as the container's /var/lib/mpt."""
        env = dict(service.environment)
        database = make_url(env["MPT_DATABASE_URL"])
        assert (database.host, database.port, database.database) == ("postgres", 5432, "mpt")
        assert database.drivername == "postgresql+psycopg"
        env["MPT_DATABASE_URL"] = self.database.render_as_string(hide_password=False)
        broker = urlsplit(env["MPT_BROKER_URL"])
        assert (broker.scheme, broker.hostname, broker.port) == ("redis", "redis", 6379)
        env["MPT_BROKER_URL"] = self.broker
        assert f"{SHARED_VOLUME}:{env['MPT_ARTIFACT_DIR']}" in service.volumes
        env["MPT_ARTIFACT_DIR"] = str(self.folder / SHARED_VOLUME)
        env["MPT_VAR_DIR"] = str(self.folder / name)
        # The running environment's console scripts (mpt-service, celery) and this checkout.
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        local = clean_env(PATH=path, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1")
        return local | {"MKL_NUM_THREADS": "1"} | env

    def start(
        self, service: str, name: str, command: list[str] | None = None, **env: str
    ) -> Container:
        spec = self.services[service]
        full_env = self.environment(spec, name) | env
        log = self.folder / f"{name}.log"
        workdir = self.folder / name
        workdir.mkdir(exist_ok=True)
        with log.open("wb") as out:
            process = subprocess.Popen(
                command or spec.command, cwd=workdir, env=full_env, stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        container = Container(name, process, full_env, log)
        self.containers.append(container)
        return container

    def logs(self, chars: int = 3000) -> str:
        parts = []
        for container in self.containers:
            text = container.log.read_text(errors="replace") if container.log.exists() else ""
            parts.append(f"--- {container.name} ---\n{text[-chars:]}")
        return "\n".join(parts)


@pytest.fixture
def topology(tmp_path: Path, database: URL, redis_url: str) -> Iterator[Topology]:
    """The compose services of `.env.example`, mapped to local servers; every process it
    started is stopped after the test, before its database is dropped."""
    dotenv = _dotenv()
    topology = Topology(compose_services(dotenv, dotenv), tmp_path, database, redis_url, [])
    try:
        yield topology
    finally:
        for container in topology.containers:
            container.terminate()  # all at once: they shut down side by side
        for container in topology.containers:
            container.stop()


def _healthcheck(stage: str, container: Container, timeout: float, topology: Topology) -> None:
    """Run the image's HEALTHCHECK command in the container's environment until it passes."""
    command = dockerfile_stages()[stage].healthcheck
    assert command is not None
    command = [sys.executable if part == "python" else part for part in command]
    deadline = time.monotonic() + timeout
    while True:
        result = subprocess.run(
            command, env=container.env, cwd=topology.folder / container.name,
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        if result.returncode == 0:
            return
        if container.process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(
                f"{container.name}'s health check failed: {result.stderr}\n{topology.logs()}"
            )
        time.sleep(1)


def _until(check: Callable[[], Any], timeout: float, what: str, topology: Topology) -> Any:
    """Call `check` until it returns something truthy; fails with every log's tail."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout:g} s\n{topology.logs()}")
        time.sleep(0.2)
    return value


@pytest.mark.slow
@pytest.mark.postgres
def test_worker_compose_topology_runs_an_upgrade_end_to_end(
    topology: Topology, files: Any, fast_job: dict[str, Any]
) -> None:
    services = topology.services
    migrate = topology.start("migrate", "migrate")
    assert migrate.process.wait(timeout=120) == 0, topology.logs()
    assert "revision head" in migrate.log.read_text()

    # depends_on: the API replicas and the worker start once `migrate` completed.
    assert services["api"].depends_on["migrate"] == "service_completed_successfully"
    assert services["worker"].depends_on["migrate"] == "service_completed_successfully"
    apis = []
    for replica in range(1, services["api"].replicas + 1):
        port = unused_port()
        # Each container binds 0.0.0.0:8000 on its own address; here, a local port each.
        command = ["127.0.0.1" if p == "0.0.0.0" else p for p in services["api"].command]
        api = topology.start("api", f"api-{replica}", command, MPT_PORT=str(port))
        api.url = f"http://127.0.0.1:{port}"
        apis.append(api)
    worker = topology.start("worker", "worker")
    for api in apis:
        wait_until_healthy(api.process, api.url, api.log)
        _healthcheck("api", api, 60, topology)
    _healthcheck("worker", worker, 120, topology)

    token = worker.env["MPT_ADMIN_TOKEN"]
    assert token == _dotenv()["MPT_ADMIN_TOKEN"]
    headers = {"Authorization": f"Bearer {token}"}
    first = httpx.Client(base_url=apis[0].url, headers=headers, timeout=60)
    second = httpx.Client(base_url=apis[-1].url, headers=headers, timeout=60)
    with first, second:
        response = first.post("/v1/deployments", json={"name": "default", "gate": {}})
        assert response.status_code == 201, response.text
        old = ("old.zip", files.old_package.read_bytes(), "application/zip")
        response = first.post(
            "/v1/deployments/default/releases", files={"file": old}, data={"activate": "true"}
        )
        assert response.status_code == 201, response.text
        dataset = ("digits.npz", files.digits_npz.read_bytes(), "application/octet-stream")
        response = second.post("/v1/datasets", files={"file": dataset})
        assert response.status_code == 201, response.text
        body = {"dataset_id": response.json()["id"], **fast_job}
        body |= {"gate": {"max_nfr": 1.0}, "auto_promote": True}
        response = first.post("/v1/deployments/default/upgrades", json=body)
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]

        def finished() -> dict[str, Any] | None:
            job: dict[str, Any] = second.get(f"/v1/upgrades/{job_id}").json()
            return job if job["status"] in FINISHED else None

        job = _until(finished, 120, f"job {job_id} did not finish", topology)
        assert job["status"] == "succeeded", (job["error"], topology.logs())
        assert job["release_version"] == 2 and job["gate"]["promoted"] is True

        inputs = files.model_inputs(range(10), per_class=1).tolist()
        for client in (first, second):

            def serves_v2(client: httpx.Client = client) -> dict[str, Any] | None:
                response = client.post("/predict", json={"inputs": inputs})
                assert response.status_code == 200, response.text
                answer: dict[str, Any] = response.json()
                return answer if answer["release"] == 2 else None

            answer = _until(serves_v2, 30, f"{client.base_url} still serves v1", topology)
            assert len(answer["predictions"]) == len(inputs)
    for container in (*apis, worker):
        assert container.process.poll() is None, f"{container.name} exited\n{topology.logs()}"
