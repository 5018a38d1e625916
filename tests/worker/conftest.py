"""Fixtures for worker/: a running API, real `celery worker` subprocesses, small packages.

Every app runs its real lifespan (migrations, bootstrap key, model registry, job janitor) on
a SQLite file (or, for the production-shaped tests, a PostgreSQL schema and the Redis broker)
and an artifact directory of the test's own, and is called through `httpx.AsyncClient` over
`httpx.ASGITransport`. Workers are real `celery -A worker.tasks
worker` processes started with the app's settings as `MPT_*` variables, in a process group
of their own so a test can SIGKILL one with its pool children; every one is killed at
teardown. The Redis tests use a database number of their own and flush only that one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import redis
import sqlalchemy as sa
import torch
from fastapi import FastAPI
from sqlalchemy.engine import URL

from core.models import Release, UpgradeJob
from core.settings import Settings
from core.tasks import worker_command
from mpt.data import ImageDataset, Split, load_dataset, save_npz, split_classes
from mpt.io import load_package, preprocess, save_package
from mpt.train import TrainConfig
from mpt.upgrade import train_package
from service.app import create_app
from service.deps import AppState

ADMIN_TOKEN = "x" * 20
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
REDIS_URL = os.environ.get("MPT_TEST_REDIS_URL", "redis://127.0.0.1:6379/7")
REPO_ROOT = Path(__file__).resolve().parents[2]
FINISHED = ("succeeded", "failed", "cancelled")

# Small enough to train in well under a second per epoch on a busy CPU.
FAST_JOB: dict[str, Any] = {
    "method": "mpt_kl",
    "arch": "mlp",
    "epochs": 2,
    "batch_size": 128,
    "bias": 1.0,
    "seed": 0,
}


@pytest.fixture
def fast_job() -> dict[str, Any]:
    """Upgrade request fields for a job that trains in a few seconds."""
    return dict(FAST_JOB)


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Train with one thread: much faster than fighting other processes for two cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def torch_one_thread() -> Iterator[None]:
    """Torch in this process uses one thread during the test (for in-process training)."""
    with one_torch_thread():
        yield


# --- data and the old model ------------------------------------------------------------------


@dataclass(frozen=True)
class Files:
    """The deployed model (classes 0..4 of `digits`) and the datasets a job may use."""

    digits: ImageDataset
    old_package: Path
    digits_npz: Path  # all ten classes
    partial_npz: Path  # classes 3..9 only: lacks old classes 0, 1, 2
    old_only_npz: Path  # classes 0..4 only: no new class
    large_npz: Path  # all ten classes at 16x16: not the old model's input size

    def model_inputs(self, classes: range, per_class: int) -> torch.Tensor:
        """`per_class` test images of each of `classes`, preprocessed for the old package."""
        test = self.digits.splits["test"]
        picks = [test.x[test.y == c][:per_class] for c in classes]
        spec = load_package(self.old_package).manifest.input
        return preprocess(torch.cat(picks), spec)


@pytest.fixture(scope="session")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    folder = tmp_path_factory.mktemp("worker-files")
    digits = load_dataset("digits")
    with one_torch_thread():
        package, _ = train_package(
            split_classes(digits, list(range(5))),
            arch="mlp",
            config=TrainConfig(epochs=2, seed=0, device="cpu"),
        )
    old = save_package(folder / "old.zip", package.model, package.manifest)
    full = save_npz(digits, folder / "digits.npz")
    partial = save_npz(split_classes(digits, list(range(3, 10))), folder / "digits-3-9.npz")
    old_only = save_npz(split_classes(digits, list(range(5))), folder / "digits-0-4.npz")
    large = save_npz(_upscaled(digits), folder / "digits-16x16.npz")
    return Files(digits, old, full, partial, old_only, large)


def _upscaled(dataset: ImageDataset) -> ImageDataset:
    """`dataset` with every image twice as high and wide."""
    splits = {
        name: Split(split.x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3), split.y)
        for name, split in dataset.splits.items()
    }
    return ImageDataset(f"{dataset.name}-x2", list(dataset.classes), splits, dataset.augment)


# --- settings and running apps ---------------------------------------------------------------


def make_settings(var_dir: Path, **overrides: Any) -> Settings:
    """Settings of a test: everything under `var_dir`, any `.env` ignored, no worker started
    by the API unless `embedded_worker=True` is passed."""
    values: dict[str, Any] = {
        "var_dir": var_dir,
        "admin_token": ADMIN_TOKEN,
        "embedded_worker": False,
        "release_poll_seconds": 0.2,
        **overrides,
    }
    return Settings(_env_file=None, **values)


def worker_environment(settings: Settings) -> dict[str, str]:
    """The environment of a worker process for `settings` (one torch thread)."""
    env = {**os.environ, **settings.environment(), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


@dataclass
class Api:
    """A running app; `client` sends the admin key."""

    app: FastAPI
    client: httpx.AsyncClient
    settings: Settings
    files: Files
    worker_logs: list[Path]
    dataset_id: str = ""  # set by fixtures that upload one

    @property
    def state(self) -> AppState:
        state: AppState = self.app.state.mpt
        return state

    async def deploy_old(self, name: str = "default", gate: dict[str, Any] | None = None) -> None:
        """Create deployment `name` serving the old 5-class package as release 1."""
        response = await self.client.post(
            "/v1/deployments", json={"name": name, "gate": gate or {}}
        )
        assert response.status_code == 201, response.text
        response = await self.client.post(
            f"/v1/deployments/{name}/releases",
            files={"file": ("old.zip", self.files.old_package.read_bytes(), "application/zip")},
            data={"activate": "true"},
        )
        assert response.status_code == 201, response.text
        assert response.json()["version"] == 1

    async def upload(self, path: Path) -> str:
        """Upload an `.npz` dataset; returns its id."""
        response = await self.client.post(
            "/v1/datasets",
            files={"file": (path.name, path.read_bytes(), "application/octet-stream")},
        )
        assert response.status_code == 201, response.text
        dataset_id: str = response.json()["id"]
        return dataset_id

    async def submit(
        self,
        dataset_id: str,
        name: str = "default",
        headers: dict[str, str] | None = None,
        **body: Any,
    ) -> httpx.Response:
        return await self.client.post(
            f"/v1/deployments/{name}/upgrades",
            json={"dataset_id": dataset_id, **body},
            headers=headers,
        )

    async def submit_ok(self, dataset_id: str, **body: Any) -> str:
        response = await self.submit(dataset_id, **body)
        assert response.status_code == 202, response.text
        assert response.json()["status"] == "queued"
        job_id: str = response.json()["id"]
        return job_id

    async def job(self, job_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/v1/upgrades/{job_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def wait_job(
        self,
        job_id: str,
        until: Callable[[dict[str, Any]], bool] = lambda job: job["status"] in FINISHED,
        timeout: float = 120.0,
        every: float = 0.1,
    ) -> dict[str, Any]:
        """Poll the job until `until(job)` holds; fails with the workers' log tails."""
        deadline = time.monotonic() + timeout
        job = await self.job(job_id)
        while not until(job):
            if time.monotonic() > deadline:
                pytest.fail(f"job {job_id} never got there: {job}\n{self.log_tails()}")
            await anyio.sleep(every)
            job = await self.job(job_id)
        return job

    def log_tails(self, chars: int = 4000) -> str:
        parts = []
        for path in self.worker_logs:
            text = path.read_text(errors="replace") if path.exists() else "(no log)"
            parts.append(f"--- {path.name} ---\n{text[-chars:]}")
        return "\n".join(parts)

    async def releases(self, name: str = "default") -> list[dict[str, Any]]:
        response = await self.client.get(f"/v1/deployments/{name}/releases")
        assert response.status_code == 200, response.text
        data: list[dict[str, Any]] = response.json()["data"]
        return data

    async def active_version(self, name: str = "default") -> int | None:
        response = await self.client.get(f"/v1/deployments/{name}")
        assert response.status_code == 200, response.text
        active = response.json()["active_release"]
        return None if active is None else int(active["version"])

    def jobs_by_status(self) -> dict[str, int]:
        """How many upgrade job rows there are of each status."""
        with self.state.sessions() as session:
            rows = session.execute(
                sa.select(UpgradeJob.status, sa.func.count()).group_by(UpgradeJob.status)
            ).all()
        return {status: count for status, count in rows}

    def release_rows(self) -> list[Release]:
        with self.state.sessions() as session:
            return list(session.scalars(sa.select(Release).order_by(Release.version)))

    def checkpoints(self, job_id: str) -> Path:
        """The job's scratch folder in the local store, where its checkpoints are written as
        `<stage>.pt` (not created here: a test asks whether it exists)."""
        return self.settings.artifact_dir / "scratch" / job_id


StartApi = Callable[..., Awaitable[Api]]


async def _dispose_engine(app: FastAPI, timeout: float = 5.0) -> None:
    """Close the app's pooled connections once the threads its lifespan left running (a
    poll cancelled mid-flight) have returned theirs."""
    engine: sa.Engine = app.state.mpt.sessions.kw["bind"]
    deadline = time.monotonic() + timeout
    while engine.pool.checkedout() and time.monotonic() < deadline:  # type: ignore[attr-defined]
        await anyio.sleep(0.02)
    engine.dispose()


@pytest.fixture
async def start_api(tmp_path: Path, files: Files) -> AsyncIterator[StartApi]:
    """Start apps: `await start_api(**settings_overrides)`; all shut down after the test."""
    async with AsyncExitStack() as stack:

        async def start(**overrides: Any) -> Api:
            settings = make_settings(tmp_path / "var", **overrides)
            app = create_app(settings)
            # The lifespan leaves its engine's pooled connections open: close them after it.
            stack.push_async_callback(_dispose_engine, app)
            await stack.enter_async_context(app.router.lifespan_context(app))
            client = await stack.enter_async_context(
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app),
                    base_url="http://test",
                    headers=ADMIN,
                    timeout=30,
                )
            )
            return Api(app, client, settings, files, worker_logs)

        worker_logs: list[Path] = []
        yield start


# --- real Celery workers ---------------------------------------------------------------------


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The broker URL of the Redis tests; their database is flushed before and after."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5)
    try:
        client.flushdb()
    except redis.ConnectionError as exc:
        client.close()
        pytest.fail(
            f"Redis is not reachable at {REDIS_URL} ({exc}). These tests need the real server: "
            "start it with `source scripts/services.sh` (or point MPT_TEST_REDIS_URL at one).",
            pytrace=False,
        )
    try:
        yield REDIS_URL
    finally:
        client.flushdb()
        client.close()


@pytest.fixture
def production(redis_url: str, postgres_url: URL) -> dict[str, Any]:
    """Settings overrides of the production shape: Redis broker, PostgreSQL database."""
    return {
        "broker_url": redis_url,
        "database_url": postgres_url.render_as_string(hide_password=False),
    }


@dataclass
class WorkerProcess:
    """A `celery worker` process, leader of its own process group."""

    process: subprocess.Popen[bytes]
    log: Path

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to the worker and its pool children."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)

    def stop(self, timeout: float = 5.0) -> None:
        """Warm shutdown, then SIGKILL to the whole group if it does not end in `timeout`."""
        self.kill(signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout)
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # pool children left behind, if any
        self.process.wait()


StartWorker = Callable[..., WorkerProcess]


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[StartWorker]:
    """Start `celery worker` processes for an app's settings (`start_worker(api)`, or with
    `prelude`: Python code run before the worker's command line, and `env` on top); all
    killed after the test."""
    workers: list[WorkerProcess] = []

    def start(
        api: Api, prelude: str | None = None, env: dict[str, str] | None = None
    ) -> WorkerProcess:
        log = tmp_path / f"worker-{len(workers)}.log"
        api.worker_logs.append(log)
        command = worker_command()
        if prelude is not None:  # python -c "<prelude>" <celery's arguments>
            launch = "import sys; from celery.__main__ import main; sys.argv[0] = 'celery'; main()"
            command = [command[0], "-c", f"{prelude}\n{launch}", *command[3:]]
        with log.open("wb") as out:
            process = subprocess.Popen(
                command,
                cwd=REPO_ROOT,
                env={**worker_environment(api.settings), **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        worker = WorkerProcess(process, log)
        workers.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in workers:
            worker.stop()
