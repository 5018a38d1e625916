"""Deployments: create, list, read."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter

from core import releases
from core.models import Deployment
from service.deps import AdminKey, ReadKey, SessionDep, scope_doc
from service.errors import Conflict, NotFound
from service.schemas import DeploymentCreate, DeploymentRead, ListOf, ReleaseRead

router = APIRouter(prefix="/v1/deployments", tags=["deployments"])


def deployment_read(deployment: Deployment) -> DeploymentRead:
    active = deployment.active_release
    return DeploymentRead(
        name=deployment.name,
        gate=deployment.gate_policy,
        created_at=deployment.created_at,
        active_release=ReleaseRead.model_validate(active) if active else None,
    )


def find_deployment(session: SessionDep, name: str) -> Deployment:
    try:
        return releases.get_deployment(session, name)
    except releases.NotFoundError as exc:
        raise NotFound(str(exc)) from exc


@router.post("", response_model=DeploymentRead, status_code=201, openapi_extra=scope_doc("admin"))
def create_deployment(body: DeploymentCreate, session: SessionDep, key: AdminKey) -> DeploymentRead:
    """Create a named deployment with its gate policy. Scope: admin."""
    try:
        deployment = releases.create_deployment(
            session, body.name, body.gate.model_dump(exclude_none=True), key.name
        )
    except releases.ConflictError as exc:
        raise Conflict(str(exc)) from exc
    session.commit()
    return deployment_read(deployment)


@router.get("", response_model=ListOf[DeploymentRead], openapi_extra=scope_doc("read"))
def list_deployments(session: SessionDep, key: ReadKey) -> ListOf[DeploymentRead]:
    """Every deployment with its active release. Scope: read."""
    rows = session.scalars(sa.select(Deployment).order_by(Deployment.name)).all()
    return ListOf[DeploymentRead](data=[deployment_read(d) for d in rows], count=len(rows))


@router.get("/{name}", response_model=DeploymentRead, openapi_extra=scope_doc("read"))
def get_deployment(name: str, session: SessionDep, key: ReadKey) -> DeploymentRead:
    """One deployment with its gate policy and active release. Scope: read."""
    return deployment_read(find_deployment(session, name))
