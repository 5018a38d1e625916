"""The audit log, newest first, filtered and paged by id."""

from __future__ import annotations

from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Query
from sqlalchemy.orm import aliased

from core.models import AuditEntry, Deployment, Release
from service.deps import AdminKey, SessionDep, scope_doc
from service.errors import API_PROBLEMS, problem_responses
from service.schemas import INT64_MAX, AuditRead, ListOf

router = APIRouter(prefix="/v1/audit", tags=["audit"], responses=problem_responses(*API_PROBLEMS))

Text = Annotated[str | None, Query(max_length=255)]


@router.get("", response_model=ListOf[AuditRead], openapi_extra=scope_doc("admin"))
def list_audit(
    session: SessionDep,
    key: AdminKey,
    deployment: Text = None,
    action: Text = None,
    actor: Text = None,
    job_id: Text = None,
    before: Annotated[int | None, Query(ge=1, le=INT64_MAX, description="ids below this")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ListOf[AuditRead]:
    """Who changed what and when: promotions (forced ones with their reason), rollbacks,
    releases, datasets, jobs, keys. Page with `before=<the last id seen>`. Scope: admin."""
    release = aliased(Release)
    query = (
        sa.select(AuditEntry, Deployment.name, release.version)
        .outerjoin(Deployment, Deployment.id == AuditEntry.deployment_id)
        .outerjoin(release, release.id == AuditEntry.release_id)
        .order_by(AuditEntry.id.desc())
        .limit(limit)
    )
    filters = {
        Deployment.name: deployment,
        AuditEntry.action: action,
        AuditEntry.actor: actor,
        AuditEntry.job_id: job_id,
    }
    for column, value in filters.items():
        if value is not None:
            query = query.where(column == value)
    if before is not None:
        query = query.where(AuditEntry.id < before)
    rows = [_read(entry, name, version) for entry, name, version in session.execute(query)]
    return ListOf[AuditRead](data=rows, count=len(rows))


def _read(entry: AuditEntry, deployment: str | None, version: int | None) -> AuditRead:
    return AuditRead(
        id=entry.id,
        at=entry.at,
        actor=entry.actor,
        action=entry.action,
        deployment=deployment,
        release_version=version,
        job_id=entry.job_id,
        detail=entry.detail,
    )
