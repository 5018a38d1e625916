"""Dependencies shared by the routes: settings, a database session, the caller's key."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from celery import Celery
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.settings import Settings
from core.storage import LocalArtifactStore
from service.auth import KeyCache, Principal
from service.errors import Forbidden, Unauthorized
from service.metrics import ServiceMetrics
from service.serving.registry import ServingRegistry

__all__ = [
    "AppState",
    "RegistryDep",
    "SessionDep",
    "SettingsDep",
    "StateDep",
    "require_scope",
    "scope_doc",
]

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
