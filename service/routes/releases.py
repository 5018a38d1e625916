"""Releases of a deployment: register from a package, list, report, promote, roll back."""

from __future__ import annotations

from typing import Annotated

import anyio
import sqlalchemy as sa
from fastapi import APIRouter, Body, Request, Response
from sqlalchemy.orm import Session

from core import releases
from core.models import ArtifactKind, Deployment, FlipReportKind, Release
from core.storage import StagedUpload
from mpt.errors import MPTError
from mpt.exported import EXPORTED_ARCH
from mpt.io import ModelPackage, load_package
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
from service.errors import UPLOAD_PROBLEMS, Conflict, NotFound, Unprocessable, problem_responses
from service.report_schemas import DeploymentTimeline, ReleaseReport
from service.schemas import ListOf, PromoteRequest, ReleaseRead, RollbackRequest
from service.serving.holder import ServedModel
from service.summaries import deployment_timeline, per_class_csv, release_report
from service.uploads import form_text, multipart_doc, read_form, stage_upload

router = APIRouter(
    prefix="/v1/deployments/{name}",
    tags=["releases"],
    responses=problem_responses(*UPLOAD_PROBLEMS),
)


def _validate_package(staged: StagedUpload) -> ModelPackage:
    """Load the package and run one forward pass on a dummy input of its shape."""
    try:
        package = load_package(staged.temp_path)
        manifest = package.manifest
        ServedModel(0, 0, tuple(manifest.labels), manifest.input, package.model).warm_up()
    except (MPTError, ValueError, RuntimeError) as exc:
        raise Unprocessable(f"the model package is not usable: {exc}") from exc
    return package


def _kind(package: ModelPackage) -> str:
    exported = package.manifest.arch == EXPORTED_ARCH
    return ArtifactKind.EXPORTED if exported else ArtifactKind.PACKAGE


_UPLOAD_DOC = multipart_doc(
    {
        "file": {"type": "string", "format": "binary", "description": "model package"},
        "activate": {"type": "boolean", "default": False},
    },
    "admin",
)


def _flag(value: str | None, field: str) -> bool:
    if value is None or value.lower() in ("false", "0", "no", ""):
        return False
    if value.lower() in ("true", "1", "yes"):
        return True
    raise Unprocessable(
        f"form field {field!r} must be true or false, got {value!r}",
        errors=[{"loc": ["body", field], "msg": "expected a boolean"}],
    )


def _register(
    session: Session, deployment: Deployment, staged: StagedUpload, actor: str, activate: bool
) -> ReleaseRead:
    """Validate the staged package, store it and record the release (in a worker thread)."""
    with staged:
        staged.close()
        package = _validate_package(staged)
        sha256 = staged.commit()
    release = releases.add_release(
        session,
        deployment,
        artifact_sha256=sha256,
        artifact_kind=_kind(package),
        manifest=package.manifest.to_dict(),
        actor=actor,
    )
    if activate:
        releases.promote(session, deployment, release, actor=actor, first=True)
    session.commit()
    return ReleaseRead.model_validate(release)


@router.post("/releases", response_model=ReleaseRead, status_code=201, openapi_extra=_UPLOAD_DOC)
async def register_release(
    request: Request, state: StateDep, session: SessionDep, key: AdminKey, deployment: DeploymentDep
) -> ReleaseRead:
    """Register a release from a model package (multipart field `file`); `activate=true`
    makes it active when the deployment has no active release yet. Scope: admin."""
    form = await read_form(request, state.settings.max_upload_bytes)
    try:
        activate = _flag(form_text(form, "activate"), "activate")
        if activate and deployment.active_release_id is not None:
            raise Conflict(
                f"deployment {deployment.name!r} already has an active release; later "
                "releases become active only through promotion"
            )
        staged = await stage_upload(form.get("file"), state.store, state.settings.max_upload_bytes)
    finally:
        await form.close()
    release = await anyio.to_thread.run_sync(
        _register, session, deployment, staged, key.name, activate
    )
    if activate:
        await state.registry.sync()
    return release


@router.get("/releases", response_model=ListOf[ReleaseRead], openapi_extra=scope_doc("read"))
def list_releases(
    session: SessionDep, key: ReadKey, deployment: DeploymentDep
) -> ListOf[ReleaseRead]:
    """Every release of the deployment, newest first. Scope: read."""
    rows = session.scalars(
        sa.select(Release)
        .where(Release.deployment_id == deployment.id)
        .order_by(Release.version.desc())
    ).all()
    return ListOf[ReleaseRead](data=[ReleaseRead.model_validate(r) for r in rows], count=len(rows))


@router.get("/releases/{version}", response_model=ReleaseRead, openapi_extra=scope_doc("read"))
def get_release(key: ReadKey, release: ReleaseDep) -> ReleaseRead:
    """One release. Scope: read."""
    return ReleaseRead.model_validate(release)


def _report(session: Session, release: Release) -> ReleaseReport:
    report = release_report(session, release)
    if report is None:
        raise NotFound(
            f"release {release.version} has no flip report (it was not made by an upgrade)"
        )
    return report


@router.get(
    "/releases/{version}/report", response_model=ReleaseReport, openapi_extra=scope_doc("read")
)
def get_report(session: SessionDep, key: ReadKey, release: ReleaseDep) -> ReleaseReport:
    """The release's flip reports against the release it was trained to replace (the chosen
    candidate and the job's plain retrain), the gate's decision, and the job's candidates.
    Scope: read."""
    return _report(session, release)


@router.get(
    "/releases/{version}/report/classes.csv",
    response_class=Response,
    openapi_extra={
        **scope_doc("read"),
        "responses": {"200": {"content": {"text/csv": {"schema": {"type": "string"}}}}},
    },
)
def get_report_classes(session: SessionDep, key: ReadKey, release: ReleaseDep) -> Response:
    """The per-old-class table of the release's report as CSV. Scope: read."""
    report = _report(session, release)
    filename = f"{report.deployment}-v{report.version}-classes.csv"
    return Response(
        per_class_csv(report.reports[FlipReportKind.CANDIDATE].report),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/timeline", response_model=DeploymentTimeline, openapi_extra=scope_doc("read"))
def get_timeline(
    session: SessionDep, key: ReadKey, deployment: DeploymentDep
) -> DeploymentTimeline:
    """Every release, oldest first, with its NFR, errors and gate verdict, and the recent
    upgrade jobs. Scope: read."""
    return deployment_timeline(session, deployment)


@router.post(
    "/releases/{version}/promote", response_model=ReleaseRead, openapi_extra=scope_doc("admin")
)
def promote_release(
    state: StateDep,
    session: SessionDep,
    key: AdminKey,
    release: ReleaseDep,
    body: Annotated[PromoteRequest | None, Body()] = None,
) -> ReleaseRead:
    """Make a release active; `{"force": true, "reason": ...}` overrides a failed gate.
    Scope: admin."""
    body = body or PromoteRequest()
    actions.promote(state, session, release, key.name, force=body.force, reason=body.reason)
    return ReleaseRead.model_validate(release)


@router.post("/rollback", response_model=ReleaseRead, openapi_extra=scope_doc("admin"))
def rollback_release(
    state: StateDep,
    session: SessionDep,
    key: AdminKey,
    deployment: DeploymentDep,
    body: Annotated[RollbackRequest | None, Body()] = None,
) -> ReleaseRead:
    """Back to the previously active release, or `{"to_version": n}`. Scope: admin."""
    body = body or RollbackRequest()
    release = actions.rollback(state, session, deployment, key.name, body.to_version)
    return ReleaseRead.model_validate(release)
