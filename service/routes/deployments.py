"""Deployments: create, list, read."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter

from core import releases
from core.models import Deployment
from service.deps import AdminKey, DeploymentDep, ReadKey, SessionDep, scope_doc
from service.errors import API_PROBLEMS, problem_responses
from service.report_schemas import DeploymentOverview
from service.schemas import DeploymentCreate, DeploymentRead, ListOf, ReleaseRead
from service.summaries import deployment_overview

router = APIRouter(
    prefix="/v1/deployments", tags=["deployments"], responses=problem_responses(*API_PROBLEMS)
)
overview_router = APIRouter(tags=["deployments"], responses=problem_responses(*API_PROBLEMS))


def deployment_read(deployment: Deployment) -> DeploymentRead:
    active = deployment.active_release
    return DeploymentRead(
        name=deployment.name,
        gate=deployment.gate_policy,
        created_at=deployment.created_at,
        active_release=ReleaseRead.model_validate(active) if active else None,
    )


@router.post("", response_model=DeploymentRead, status_code=201, openapi_extra=scope_doc("admin"))
def create_deployment(body: DeploymentCreate, session: SessionDep, key: AdminKey) -> DeploymentRead:
    """Create a named deployment with its gate policy. Scope: admin."""
    deployment = releases.create_deployment(
        session, body.name, body.gate.model_dump(exclude_none=True), key.name
    )
    session.commit()
    return deployment_read(deployment)


@router.get("", response_model=ListOf[DeploymentRead], openapi_extra=scope_doc("read"))
def list_deployments(session: SessionDep, key: ReadKey) -> ListOf[DeploymentRead]:
    """Every deployment with its active release. Scope: read."""
    rows = session.scalars(sa.select(Deployment).order_by(Deployment.name)).all()
    return ListOf[DeploymentRead](data=[deployment_read(d) for d in rows], count=len(rows))


@router.get("/{name}", response_model=DeploymentRead, openapi_extra=scope_doc("read"))
def get_deployment(key: ReadKey, deployment: DeploymentDep) -> DeploymentRead:
    """One deployment with its gate policy and active release. Scope: read."""
    return deployment_read(deployment)


@overview_router.get(
    "/v1/overview", response_model=ListOf[DeploymentOverview], openapi_extra=scope_doc("read")
)
def get_overview(session: SessionDep, key: ReadKey) -> ListOf[DeploymentOverview]:
    """Every deployment at a glance: active release, labels, latest job and its verdict, and
    the NFR of each release in order. Scope: read."""
    rows = deployment_overview(session)
    return ListOf[DeploymentOverview](data=rows, count=len(rows))
