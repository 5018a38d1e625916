"""Dependencies shared by the routes: settings, a database session, the caller's key, and the
deployment, release, job or dataset a path names (404 when there is none)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from celery import Celery
from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from core import releases
from core.models import DatasetRecord, Deployment, Release, UpgradeJob
from core.settings import Settings
from core.storage import LocalArtifactStore
from service.auth import KeyCache, Principal
from service.background import EmbeddedWorker
from service.errors import Forbidden, NotFound, Unauthorized
from service.metrics import ServiceMetrics
from service.schemas import INT64_MAX
from service.serving.registry import ServingRegistry

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
    "require_scope",
    "scope_doc",
]

Row = TypeVar("Row")
_bearer = HTTPBearer(auto_error=False, description="an API key: `Authorization: Bearer <key>`")


@dataclass
class AppState:
    """What the lifespan builds once and every request reads."""

    engine: Engine
    settings: Settings
    sessions: sessionmaker[Session]
    store: LocalArtifactStore
    registry: ServingRegistry
    metrics: ServiceMetrics
    celery: Celery
    keys: KeyCache
    worker: EmbeddedWorker | None = None  # the supervised worker of the embedded default


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.mpt
    return state


StateDep = Annotated[AppState, Depends(get_state)]


def get_settings(state: StateDep) -> Settings:
    return state.settings


def get_session(state: StateDep) -> Iterator[Session]:
    with state.sessions() as session:
        yield session


def get_registry(state: StateDep) -> ServingRegistry:
    return state.registry


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
RegistryDep = Annotated[ServingRegistry, Depends(get_registry)]


def require_scope(scope: str) -> Callable[..., Principal]:
    """A dependency: 401 without a valid key, 403 when the key lacks `scope`."""

    def check(
        state: StateDep,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise Unauthorized("send an API key as 'Authorization: Bearer <key>'")
        principal = state.keys.principal(credentials.credentials)
        if principal is None:
            raise Unauthorized("the API key is unknown or revoked")
        if not principal.allows(scope):
            raise Forbidden(
                f"this endpoint needs the {scope!r} scope; the key has {sorted(principal.scopes)}"
            )
        return principal

    return check


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
