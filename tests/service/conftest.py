"""Fixtures for service/: small model packages trained with `mpt`, and running apps.

Every app runs its real lifespan (migrations, bootstrap key, model registry, release poller)
on a SQLite file and an artifact directory of the test's own, and is called through
`httpx.AsyncClient` over `httpx.ASGITransport`. Async tests use anyio's pytest plugin; its
backend and the `problem` check come from tests/conftest.py.
"""

from __future__ import annotations

import io
import subprocess
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import sqlalchemy as sa
import torch
from fastapi import FastAPI
from PIL import Image

from bench import servers
from bench.servers import ADMIN as SERVER_ADMIN
from core.settings import Settings
from mpt.data import ImageDataset, load_dataset, split_classes
from mpt.io import load_package, preprocess, save_package
from mpt.train import TrainConfig
from mpt.upgrade import train_package
from service.app import create_app
from service.auth import create_key
from service.deps import AppState

ADMIN_TOKEN = "x" * 20
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


# --- model packages --------------------------------------------------------------------------


@dataclass(frozen=True)
class Packages:
    """Two packages trained for one epoch on `digits`: `old` on classes 0..4, `new` on 0..9."""

    old: Path
    new: Path
    digits: ImageDataset

    def model_inputs(self, package: Path, classes: range, count: int) -> torch.Tensor:
        """`count` test images of `classes`, preprocessed for `package`: (N, 1, 8, 8) floats."""
        test = self.digits.splits["test"]
        keep = torch.isin(test.y, torch.tensor(list(classes)))
        images = test.x[keep][:count]
        return preprocess(images, load_package(package).manifest.input)

    def test_images(self, classes: range, count: int) -> torch.Tensor:
        """`count` uint8 test images (N, 1, 8, 8) of `classes`."""
        test = self.digits.splits["test"]
        return test.x[torch.isin(test.y, torch.tensor(list(classes)))][:count]


@pytest.fixture(scope="session")
def packages(tmp_path_factory: pytest.TempPathFactory) -> Packages:
    folder = tmp_path_factory.mktemp("packages")
    digits = load_dataset("digits")
    config = TrainConfig(epochs=1, seed=0, device="cpu")
    paths = {}
    for name, classes in (("old", range(5)), ("new", range(10))):
        package, _ = train_package(split_classes(digits, list(classes)), arch="mlp", config=config)
        paths[name] = save_package(folder / f"{name}.zip", package.model, package.manifest)
    return Packages(paths["old"], paths["new"], digits)


# --- files built on the fly ------------------------------------------------------------------


class Make:
    """Builders for request bodies: PNG images, zip archives, image-tree datasets."""

    @staticmethod
    def png(size: tuple[int, int] = (8, 8), mode: str = "L", seed: int = 0) -> bytes:
        """A PNG of random pixels, `size` as (width, height)."""
        rng = np.random.default_rng(seed)
        shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(buffer, "PNG")
        return buffer.getvalue()

    @staticmethod
    def png_of(image: torch.Tensor) -> bytes:
        """A greyscale PNG of one uint8 (1, H, W) image."""
        buffer = io.BytesIO()
        Image.fromarray(image[0].numpy(), "L").save(buffer, "PNG")
        return buffer.getvalue()

    @staticmethod
    def zip(members: dict[str, bytes]) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, data in members.items():
                archive.writestr(zipfile.ZipInfo(name), data)
        return buffer.getvalue()

    @staticmethod
    def tree(
        classes: list[str], per_class: int = 2, size: tuple[int, int] = (8, 8)
    ) -> dict[str, bytes]:
        """`train/<class>/<i>.png` and `test/<class>/<i>.png` members of greyscale PNGs."""
        names = [
            f"{split}/{label}/{i}.png"
            for split in ("train", "test")
            for label in classes
            for i in range(per_class)
        ]
        return {name: Make.png(size, seed=seed) for seed, name in enumerate(names)}


@pytest.fixture
def make() -> type[Make]:
    return Make


# --- running apps ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """Everything under the artifact directory and the row count of every table."""

    paths: frozenset[str]
    rows: dict[str, int]


@dataclass
class Api:
    """A running app; `client` sends the admin key unless a request overrides it."""

    app: FastAPI
    client: httpx.AsyncClient
    settings: Settings

    @property
    def state(self) -> AppState:
        state: AppState = self.app.state.mpt
        return state

    def key(self, *scopes: str, name: str | None = None) -> dict[str, str]:
        """The headers of a new API key with `scopes`."""
        with self.state.sessions() as session:
            key = create_key(session, name or "-".join(scopes), scopes)
            session.commit()
        return {"Authorization": f"Bearer {key}"}

    async def create_deployment(self, name: str = "default") -> dict[str, Any]:
        response = await self.client.post("/v1/deployments", json={"name": name})
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def register(
        self, package: Path | bytes, name: str = "default", *, activate: bool = False
    ) -> httpx.Response:
        data = package.read_bytes() if isinstance(package, Path) else package
        form = {"activate": "true"} if activate else {}
        return await self.client.post(
            f"/v1/deployments/{name}/releases",
            files={"file": ("package.zip", data, "application/zip")},
            data=form,
        )

    async def promote(
        self, version: int, name: str = "default", *, reason: str = "ship it"
    ) -> httpx.Response:
        return await self.client.post(
            f"/v1/deployments/{name}/releases/{version}/promote",
            json={"force": True, "reason": reason},
        )

    async def predict(
        self, inputs: torch.Tensor, path: str = "/predict", *, top_k: int = 5, **params: Any
    ) -> httpx.Response:
        body = {"inputs": inputs.tolist(), "top_k": top_k}
        return await self.client.post(path, json=body, params=params)

    def snapshot(self) -> Snapshot:
        root = self.settings.artifact_dir
        paths = frozenset(str(p.relative_to(root)) for p in root.rglob("*"))
        with self.state.sessions() as session:
            tables = sa.inspect(session.get_bind()).get_table_names()
            rows = {
                table: session.execute(sa.text(f'SELECT COUNT(*) FROM "{table}"')).scalar_one()
                for table in tables
            }
        return Snapshot(paths, rows)


def make_settings(var_dir: Path, **overrides: Any) -> Settings:
    """Settings of a test: everything under `var_dir`, the environment's `.env` ignored, no
    Celery worker started beside the API (these tests never run jobs)."""
    values: dict[str, Any] = {
        "var_dir": var_dir,
        "admin_token": ADMIN_TOKEN,
        "embedded_worker": False,
        **overrides,
    }
    return Settings(_env_file=None, **values)


StartApi = Callable[..., Awaitable[Api]]


@pytest.fixture
async def start_api(tmp_path: Path) -> AsyncIterator[StartApi]:
    """Start apps: `await start_api(**settings_overrides)` or `await start_api(settings)`;
    all of them are shut down after the test."""
    async with AsyncExitStack() as stack:

        async def start(settings: Settings | None = None, **overrides: Any) -> Api:
            settings = settings or make_settings(tmp_path / "var", **overrides)
            app = create_app(settings)
            await stack.enter_async_context(app.router.lifespan_context(app))
            client = await stack.enter_async_context(
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app),
                    base_url="http://test",
                    headers=ADMIN,
                    timeout=30,
                )
            )
            return Api(app, client, settings)

        yield start


@pytest.fixture
async def api(start_api: StartApi) -> Api:
    """A fresh app with no deployment."""
    return await start_api()


@pytest.fixture
async def live(api: Api, packages: Packages) -> Api:
    """An app whose deployment `default` serves release 1 (the 5-class package)."""
    await api.create_deployment("default")
    response = await api.register(packages.old, activate=True)
    assert response.status_code == 201, response.text
    return api


# --- real uvicorn processes ------------------------------------------------------------------


@dataclass
class Server:
    """A `uvicorn --factory service.app:create_app` process on a loopback port."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def client(self, **kwargs: Any) -> httpx.Client:
        """A client of this server sending the admin key."""
        return httpx.Client(base_url=self.url, headers=SERVER_ADMIN, timeout=60, **kwargs)

    def serve(self, package: Path, name: str = "default") -> None:
        """Create deployment `name` and activate `package` as its release 1."""
        servers.deploy(self.url, [package], name)


StartServer = Callable[..., Server]


@pytest.fixture
def start_process(tmp_path: Path) -> Iterator[StartServer]:
    """Start API processes configured only through MPT_* variables (`bench.servers`):
    `start_process(port, var_dir=..., MPT_X="...")`; stopped after the test."""
    started: list[servers.ApiProcess] = []

    def start(port: int, var_dir: Path | None = None, **variables: str) -> Server:
        try:
            api = servers.start_api(var_dir or tmp_path / "var", port, **variables)
        except RuntimeError as exc:
            pytest.fail(str(exc), pytrace=False)
        started.append(api)
        return Server(api.url, api.process, api.log)

    try:
        yield start
    finally:
        servers.stop(started)
