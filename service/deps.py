"""Dependencies shared by the routes: settings, a database session, the caller's key, and the
deployment, release, job or dataset a path names (404 when there is none)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import anyio
from celery import Celery
from fastapi import Depends, Path, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from core import releases
from core.models import DatasetRecord, Deployment, Release, UpgradeJob
from core.settings import Settings
from core.storage import ArtifactStore
from service.auth import KeyCache, Principal
from service.background import EmbeddedWorker
from service.browser_auth import ANONYMOUS, COOKIE, SAFE_METHODS
from service.errors import Forbidden, NotFound, Unauthorized
from service.metrics import ServiceMetrics
from service.schemas import INT64_MAX
from service.serving.registry import ServingRegistry
from service.serving.shadow import ShadowSet
from service.thumbnails import SplitCache

__all__ = [
    "AdminKey",
    "AppState",
    "DatasetDep",
    "DeploymentDep",
    "JobDep",
    "PredictKey",
    "ReadKey",
    "RegistryDep",
    "ReleaseDep",
    "SessionDep",
    "SettingsDep",
    "StateDep",
    "presented_key",
    "require_scope",
    "scope_doc",
]

Row = TypeVar("Row")


@dataclass
class AppState:
    """What the lifespan builds once and every request reads."""

    engine: Engine
    settings: Settings
    sessions: sessionmaker[Session]
    store: ArtifactStore
    registry: ServingRegistry
    metrics: ServiceMetrics
    celery: Celery
    keys: KeyCache
    thumbnails: SplitCache
    shadows: ShadowSet
    worker: EmbeddedWorker | None = None  # the supervised worker of the embedded default


# Dependencies that only read attributes are `async def`: a plain `def` would cost each
# request a hop to the thread pool.


async def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.mpt
    return state


StateDep = Annotated[AppState, Depends(get_state)]


async def get_settings(state: StateDep) -> Settings:
    return state.settings


def get_session(state: StateDep) -> Iterator[Session]:
    with state.sessions() as session:
        yield session


async def get_registry(state: StateDep) -> ServingRegistry:
    return state.registry


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
RegistryDep = Annotated[ServingRegistry, Depends(get_registry)]


def require_scope(scope: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency: 401 without a valid key, 403 when the key lacks `scope`."""

    async def check(request: Request) -> Principal:
        state: AppState = request.app.state.mpt
        key = presented_key(request)
        if key is None:
            if scope == "read" and _public_read(request, state):
                return ANONYMOUS
            raise Unauthorized("send an API key as 'Authorization: Bearer <key>'")
        principal = state.keys.fresh(key) or await anyio.to_thread.run_sync(
            state.keys.principal, key
        )
        if principal is None:
            raise Unauthorized("the API key is unknown or revoked")
        if not principal.allows(scope):
            raise Forbidden(
                f"this endpoint needs the {scope!r} scope; the key has {sorted(principal.scopes)}"
            )
        return principal

    return check


def presented_key(request: Request) -> str | None:
    """The bearer key, else, for a read (GET or HEAD), the dashboard's cookie: a cookie never
    authorises a change, so another site cannot make a logged-in browser change anything."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and key:
        return key
    if request.method in SAFE_METHODS:
        return request.cookies.get(COOKIE) or None
    return None


def _public_read(request: Request, state: AppState) -> bool:
    return state.settings.dashboard_public and request.method in SAFE_METHODS


def scope_doc(scope: str) -> dict[str, Any]:
    """OpenAPI extras naming the scope a route needs."""
    return {"x-required-scope": scope}


AdminKey = Annotated[Principal, Depends(require_scope("admin"))]
ReadKey = Annotated[Principal, Depends(require_scope("read"))]
PredictKey = Annotated[Principal, Depends(require_scope("predict"))]


# Routes list these after their key, so a caller without a valid key learns nothing of what
# exists: FastAPI resolves dependencies in the order of the parameters.


def get_deployment(name: str, session: SessionDep) -> Deployment:
    return releases.get_deployment(session, name)


DeploymentDep = Annotated[Deployment, Depends(get_deployment)]


def get_release(
    version: Annotated[int, Path(ge=1, le=INT64_MAX)],
    deployment: DeploymentDep,
    session: SessionDep,
) -> Release:
    return releases.get_release(session, deployment, version)


ReleaseDep = Annotated[Release, Depends(get_release)]


def _row(session: Session, model: type[Row], key: str, what: str) -> Row:
    row = session.get(model, key)
    if row is None:
        raise NotFound(f"{what} {key!r} does not exist")
    return row


def get_job(job_id: str, session: SessionDep) -> UpgradeJob:
    return _row(session, UpgradeJob, job_id, "upgrade job")


JobDep = Annotated[UpgradeJob, Depends(get_job)]


def get_dataset(dataset_id: str, session: SessionDep) -> DatasetRecord:
    return _row(session, DatasetRecord, dataset_id, "dataset")


DatasetDep = Annotated[DatasetRecord, Depends(get_dataset)]
