"""Releases of a deployment: register from a package, list, report, promote, roll back."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Body, Request

from core import releases
from core.models import ArtifactKind, FlipReportRecord, Release
from core.storage import StagedUpload
from mpt.errors import MPTError
from mpt.exported import EXPORTED_ARCH
from mpt.io import ModelPackage, load_package
from service.deps import AdminKey, ReadKey, SessionDep, StateDep, scope_doc
from service.errors import Conflict, NotFound, Unprocessable
from service.routes.deployments import find_deployment
from service.schemas import ListOf, PromoteRequest, ReleaseRead, RollbackRequest
from service.serving.holder import ServedModel
from service.uploads import form_text, multipart_doc, read_form, stage_upload

router = APIRouter(prefix="/v1/deployments/{name}", tags=["releases"])


def _validate_package(staged: StagedUpload) -> ModelPackage:
    """Load the package and run one forward pass on a dummy input of its shape."""
    staged.close()
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


@router.post("/releases", response_model=ReleaseRead, status_code=201, openapi_extra=_UPLOAD_DOC)
async def register_release(
    name: str, request: Request, state: StateDep, session: SessionDep, key: AdminKey
) -> ReleaseRead:
    """Register a release from a model package (multipart field `file`); `activate=true`
    makes it active when the deployment has no active release yet. Scope: admin."""
    deployment = find_deployment(session, name)
    form = await read_form(request, state.settings.max_upload_bytes)
    try:
        activate = _flag(form_text(form, "activate"), "activate")
        if activate and deployment.active_release_id is not None:
            raise Conflict(
                f"deployment {name!r} already has an active release; later "
                "releases become active only through promotion"
            )
        staged = await stage_upload(form.get("file"), state.store, state.settings.max_upload_bytes)
    finally:
        await form.close()
    with staged:
        package = await asyncio.to_thread(_validate_package, staged)
        sha256 = staged.commit()
    release = releases.add_release(
        session,
        deployment,
        artifact_sha256=sha256,
        artifact_kind=_kind(package),
        manifest=package.manifest.to_dict(),
        actor=key.name,
    )
    if activate:
        releases.promote(session, deployment, release, actor=key.name, first=True)
    session.commit()
    if activate:
        await state.registry.sync()
    return ReleaseRead.model_validate(release)


@router.get("/releases", response_model=ListOf[ReleaseRead], openapi_extra=scope_doc("read"))
def list_releases(name: str, session: SessionDep, key: ReadKey) -> ListOf[ReleaseRead]:
    """Every release of the deployment, newest first. Scope: read."""
    deployment = find_deployment(session, name)
    rows = session.scalars(
        sa.select(Release)
        .where(Release.deployment_id == deployment.id)
        .order_by(Release.version.desc())
    ).all()
    return ListOf[ReleaseRead](data=[ReleaseRead.model_validate(r) for r in rows], count=len(rows))


def _find_release(session: SessionDep, name: str, version: int) -> Release:
    try:
        return releases.get_release(session, find_deployment(session, name), version)
    except releases.NotFoundError as exc:
        raise NotFound(str(exc)) from exc


@router.get("/releases/{version}", response_model=ReleaseRead, openapi_extra=scope_doc("read"))
def get_release(name: str, version: int, session: SessionDep, key: ReadKey) -> ReleaseRead:
    """One release. Scope: read."""
    return ReleaseRead.model_validate(_find_release(session, name, version))


@router.get("/releases/{version}/report", openapi_extra=scope_doc("read"))
def get_report(name: str, version: int, session: SessionDep, key: ReadKey) -> dict[str, Any]:
    """The flip reports of a release against the release it was measured on. Scope: read."""
    release = _find_release(session, name, version)
    rows = session.scalars(
        sa.select(FlipReportRecord).where(FlipReportRecord.release_id == release.id)
    ).all()
    if not rows:
        raise NotFound(f"release {version} has no flip report (it was not made by an upgrade)")
    gate = releases.latest_gate(session, release)
    return {
        "version": version,
        "reports": {r.kind: {"split": r.split, "report": r.report} for r in rows},
        "gate": None
        if gate is None
        else {"passed": gate.passed, "rules": gate.rules, "policy": gate.policy},
    }


@router.post(
    "/releases/{version}/promote", response_model=ReleaseRead, openapi_extra=scope_doc("admin")
)
async def promote_release(
    name: str,
    version: int,
    state: StateDep,
    session: SessionDep,
    key: AdminKey,
    body: Annotated[PromoteRequest | None, Body()] = None,
) -> ReleaseRead:
    """Make a release active; `{"force": true, "reason": ...}` overrides a failed gate.
    Scope: admin."""
    body = body or PromoteRequest()
    if body.force and not (body.reason or "").strip():
        raise Unprocessable(
            "a forced promotion needs a written reason",
            errors=[{"loc": ["body", "reason"], "msg": "required with force"}],
        )
    release = _find_release(session, name, version)
    try:
        releases.promote(
            session,
            release.deployment,
            release,
            actor=key.name,
            force=body.force,
            reason=body.reason,
        )
    except (releases.ConflictError, releases.GateRefusedError) as exc:
        raise Conflict(str(exc)) from exc
    session.commit()
    await state.registry.sync()
    return ReleaseRead.model_validate(release)


@router.post("/rollback", response_model=ReleaseRead, openapi_extra=scope_doc("admin"))
async def rollback_release(
    name: str,
    state: StateDep,
    session: SessionDep,
    key: AdminKey,
    body: Annotated[RollbackRequest | None, Body()] = None,
) -> ReleaseRead:
    """Back to the previously active release, or `{"to_version": n}`. Scope: admin."""
    body = body or RollbackRequest()
    deployment = find_deployment(session, name)
    try:
        release = releases.rollback(session, deployment, actor=key.name, to_version=body.to_version)
    except releases.NotFoundError as exc:
        raise NotFound(str(exc)) from exc
    except releases.ConflictError as exc:
        raise Conflict(str(exc)) from exc
    session.commit()
    await state.registry.sync()
    return ReleaseRead.model_validate(release)
