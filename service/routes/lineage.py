"""A deployment's lineage and must-not-flip set: mark baseline releases, set the golden set."""

from __future__ import annotations

from fastapi import APIRouter

from core import lineage
from core.models import DatasetRecord
from service import actions
from service.deps import (
    AdminKey,
    DeploymentDep,
    ReadKey,
    ReleaseDep,
    SessionDep,
    StateDep,
    scope_doc,
)
from service.errors import API_PROBLEMS, NotFound, Unprocessable, problem_responses
from service.schemas import GoldenImages, GoldenRead, GoldenSet, ReleaseRead

router = APIRouter(
    prefix="/v1/deployments/{name}", tags=["lineage"], responses=problem_responses(*API_PROBLEMS)
)


def _baseline(session: SessionDep, release: ReleaseDep, actor: str, value: bool) -> ReleaseRead:
    lineage.set_baseline(session, release, value, actor)
    session.commit()
    return ReleaseRead.model_validate(release)


@router.post(
    "/releases/{version}/baseline", response_model=ReleaseRead, openapi_extra=scope_doc("admin")
)
def mark_baseline(session: SessionDep, key: AdminKey, release: ReleaseDep) -> ReleaseRead:
    """Make the release a baseline: every later candidate is also measured against it, on
    the classes it knew (the cumulative NFR, gated by `max_cumulative_nfr`). Scope: admin."""
    return _baseline(session, release, key.name, True)


@router.delete(
    "/releases/{version}/baseline", response_model=ReleaseRead, openapi_extra=scope_doc("admin")
)
def unmark_baseline(session: SessionDep, key: AdminKey, release: ReleaseDep) -> ReleaseRead:
    """Stop measuring candidates against this release. Scope: admin."""
    return _baseline(session, release, key.name, False)


def _golden_read(record: DatasetRecord) -> GoldenRead:
    images = sum(record.counts.get("test", {}).values())
    return GoldenRead(dataset_id=record.id, classes=list(record.classes), images=images)


@router.put("/golden", response_model=GoldenRead, openapi_extra=scope_doc("admin"))
def set_golden(
    body: GoldenSet, session: SessionDep, key: AdminKey, deployment: DeploymentDep
) -> GoldenRead:
    """Make a dataset's test images the deployment's must-not-flip set: every candidate is
    judged on them, and `max_golden_flips` (0 unless the policy says otherwise) gates on the
    ones it flips. Its classes must be labels of the active release. Scope: admin."""
    record = session.get(DatasetRecord, body.dataset_id)
    if record is None:
        raise Unprocessable(
            f"dataset {body.dataset_id!r} does not exist",
            errors=[{"loc": ["body", "dataset_id"], "msg": "no such dataset"}],
        )
    lineage.set_golden(session, deployment, record, key.name)
    session.commit()
    return _golden_read(record)


@router.post("/golden/images", response_model=GoldenRead, openapi_extra=scope_doc("admin"))
def add_golden_images(
    body: GoldenImages, state: StateDep, session: SessionDep, key: AdminKey,
    deployment: DeploymentDep,
) -> GoldenRead:  # fmt: skip
    """Add test images of a dataset, by position (as a flip report lists its flipped images),
    to the deployment's must-not-flip set, making one if there is none. Scope: admin."""
    return _golden_read(actions.add_golden_images(state, session, deployment, body, key.name))


@router.get("/golden", response_model=GoldenRead, openapi_extra=scope_doc("read"))
def get_golden(session: SessionDep, key: ReadKey, deployment: DeploymentDep) -> GoldenRead:
    """The deployment's must-not-flip set. Scope: read."""
    if deployment.golden_dataset_id is None:
        raise NotFound(f"deployment {deployment.name!r} has no golden set")
    return _golden_read(session.get_one(DatasetRecord, deployment.golden_dataset_id))


@router.delete("/golden", status_code=204, openapi_extra=scope_doc("admin"))
def clear_golden(session: SessionDep, key: AdminKey, deployment: DeploymentDep) -> None:
    """Remove the deployment's must-not-flip set. Scope: admin."""
    lineage.set_golden(session, deployment, None, key.name)
    session.commit()
