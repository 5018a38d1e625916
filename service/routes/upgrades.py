"""Upgrade jobs: submit (validated, then enqueued by task name), read, cancel."""

from __future__ import annotations

from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Header, Query

from core import audit
from core.models import (
    AuditEntry,
    DatasetRecord,
    Deployment,
    JobStatus,
    Release,
    UpgradeJob,
    utc_now,
)
from core.tasks import enqueue_upgrade
from mpt import methods, models
from mpt.biases import BiasSweep
from mpt.errors import MPTError
from service.deps import AdminKey, DeploymentDep, JobDep, ReadKey, SessionDep, StateDep, scope_doc
from service.errors import (
    API_PROBLEMS,
    Conflict,
    ServiceUnavailable,
    Unprocessable,
    problem_responses,
)
from service.schemas import ListOf, UpgradeCreate, UpgradeRead

router = APIRouter(tags=["upgrades"], responses=problem_responses(*API_PROBLEMS))

ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)


def _field_error(field: str, message: str) -> Unprocessable:
    return Unprocessable(message, errors=[{"loc": ["body", field], "msg": message}])


def _sweep(body: UpgradeCreate) -> BiasSweep | None:
    """The biases the job trains (`mpt.biases` decides which apply), or a 422 naming the
    field at fault."""
    if body.method not in methods.names():
        raise _field_error("method", f"unknown method {body.method!r}; valid: {methods.names()}")
    try:
        return BiasSweep.parse(body.method, body.bias, body.relative_bias)
    except MPTError as exc:
        field = "relative_bias" if body.relative_bias is not None else "bias"
        raise _field_error(field, str(exc)) from exc


def _check_dataset(session: SessionDep, body: UpgradeCreate, active: Release) -> None:
    dataset = session.get(DatasetRecord, body.dataset_id)
    if dataset is None:
        raise _field_error("dataset_id", f"dataset {body.dataset_id!r} does not exist")
    missing = [label for label in active.labels if label not in set(dataset.classes)]
    if missing:
        raise _field_error(
            "dataset_id",
            f"the dataset lacks {len(missing)} class(es) of the "
            f"active release {active.version}: {missing}",
        )
    if len(dataset.classes) <= len(active.labels):
        raise _field_error("dataset_id", "the dataset adds no new classes")
    spec = active.input_spec
    expected = [spec["channels"], spec["height"], spec["width"]]
    if list(dataset.image_shape) != expected:
        raise _field_error(
            "dataset_id",
            f"dataset images are {dataset.image_shape} (C, H, W); "
            f"the active release expects {expected}",
        )


def _request(body: UpgradeCreate, sweep: BiasSweep | None) -> dict[str, Any]:
    if body.arch not in models.names():
        raise _field_error("arch", f"unknown architecture {body.arch!r}; valid: {models.names()}")
    request = body.model_dump(exclude={"gate", "dataset_id"})
    grid = None if sweep is None else list(sweep.grid)
    relative = sweep is not None and sweep.relative
    request["bias"], request["relative_bias"] = (None, grid) if relative else (grid, None)
    request["gate"] = (
        None if body.gate is None else body.gate.model_dump(exclude_unset=True, exclude_none=True)
    )
    return request


def upgrade_read(job: UpgradeJob, deployment: str, release: Release | None) -> UpgradeRead:
    return UpgradeRead(
        id=job.id,
        deployment=deployment,
        status=job.status,
        phase=job.phase,
        progress=job.progress,
        candidates=job.candidates,
        release_version=release.version if release else None,
        gate=job.gate,
        error=job.error,
        request=job.request,
        attempts=job.attempts,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


def _existing(session: SessionDep, deployment: Deployment, key: str | None) -> UpgradeJob | None:
    if key is None:
        return None
    return session.scalars(
        sa.select(UpgradeJob).where(
            UpgradeJob.deployment_id == deployment.id, UpgradeJob.idempotency_key == key
        )
    ).first()


@router.post(
    "/v1/deployments/{name}/upgrades",
    response_model=UpgradeRead,
    status_code=202,
    openapi_extra=scope_doc("admin"),
)
def submit_upgrade(
    body: UpgradeCreate,
    state: StateDep,
    session: SessionDep,
    key: AdminKey,
    deployment: DeploymentDep,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> UpgradeRead:
    """Queue an upgrade of the deployment's active release; the same `Idempotency-Key`
    returns the same job. Scope: admin."""
    name = deployment.name
    if (job := _existing(session, deployment, idempotency_key)) is not None:
        return _read(session, job)
    active = deployment.active_release
    if active is None:
        raise Conflict(f"deployment {name!r} has no active release to upgrade")
    request = _request(body, _sweep(body))
    _check_dataset(session, body, active)
    running = session.scalars(
        sa.select(UpgradeJob.id).where(
            UpgradeJob.deployment_id == deployment.id, UpgradeJob.status.in_(ACTIVE)
        )
    ).first()
    if running is not None:
        raise Conflict(
            f"job {running} is still queued or running for {name!r}; cancel it or "
            "wait for it to finish"
        )
    job = UpgradeJob(
        deployment_id=deployment.id,
        dataset_id=body.dataset_id,
        base_release_id=active.id,
        request=request,
        progress={"fraction": 0.0},
        candidates=[],
        idempotency_key=idempotency_key,
    )
    session.add(job)
    session.flush()
    audit.record(
        session,
        key.name,
        "submit_upgrade",
        deployment=deployment,
        release=active,
        job_id=job.id,
    )
    session.commit()
    _enqueue(state, session, job)
    return upgrade_read(job, name, None)


def _enqueue(state: StateDep, session: SessionDep, job: UpgradeJob) -> None:
    """Send the job to the broker; if it is unreachable, take the submission back whole (the
    job and its audit entry), so a retry with the same `Idempotency-Key` submits afresh."""
    try:
        enqueue_upgrade(state.celery, job.id)
    except Exception as exc:
        session.execute(sa.delete(AuditEntry).where(AuditEntry.job_id == job.id))
        session.delete(job)
        session.commit()
        raise ServiceUnavailable(
            f"the job queue is unreachable ({type(exc).__name__}); nothing was submitted, "
            "retry shortly"
        ) from exc


def _read(session: SessionDep, job: UpgradeJob) -> UpgradeRead:
    deployment = session.get_one(Deployment, job.deployment_id)
    release = session.get(Release, job.result_release_id) if job.result_release_id else None
    return upgrade_read(job, deployment.name, release)


@router.get(
    "/v1/deployments/{name}/upgrades",
    response_model=ListOf[UpgradeRead],
    openapi_extra=scope_doc("read"),
)
def list_upgrades(
    session: SessionDep,
    key: ReadKey,
    deployment: DeploymentDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> ListOf[UpgradeRead]:
    """The deployment's upgrade jobs, newest first. Scope: read."""
    rows = session.scalars(
        sa.select(UpgradeJob)
        .where(UpgradeJob.deployment_id == deployment.id)
        .order_by(UpgradeJob.created_at.desc(), UpgradeJob.id.desc())
        .limit(limit)
    ).all()
    jobs = [_read(session, job) for job in rows]
    return ListOf[UpgradeRead](data=jobs, count=len(jobs))


@router.get("/v1/upgrades/{job_id}", response_model=UpgradeRead, openapi_extra=scope_doc("read"))
def get_upgrade(session: SessionDep, key: ReadKey, job: JobDep) -> UpgradeRead:
    """Status, phase, progress, candidates, gate and result of a job. Scope: read."""
    return _read(session, job)


@router.post(
    "/v1/upgrades/{job_id}/cancel", response_model=UpgradeRead, openapi_extra=scope_doc("admin")
)
def cancel_upgrade(session: SessionDep, key: AdminKey, job: JobDep) -> UpgradeRead:
    """Ask a job to stop: a queued job is cancelled now, a running one between two training
    steps (within a few seconds). Scope: admin."""
    job_id = job.id
    if job.status not in ACTIVE:
        raise Conflict(f"job {job_id} is already {job.status}")
    job.cancel_requested = True
    if job.status == JobStatus.QUEUED:
        job.status, job.finished_at = JobStatus.CANCELLED, utc_now()
    audit.record(session, key.name, "cancel_upgrade", job_id=job_id)
    session.commit()
    return _read(session, job)
