"""The Open Inference Protocol (KServe v2) beside `/predict`: a model is a deployment, its
versions are the deployment's releases (service/serving/oip.py has the JSON)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Request, Response
from sqlalchemy.orm import Session

from core import releases
from core.models import Deployment, Release
from mpt.io import InputSpec
from service.auth import Principal
from service.deps import (
    AppState,
    DeploymentDep,
    PredictKey,
    SessionDep,
    StateDep,
    scope_doc,
)
from service.errors import (
    UPLOAD_PROBLEMS,
    ProblemError,
    ServiceUnavailable,
    Unprocessable,
    UnsupportedMediaType,
    problem_responses,
)
from service.inference import INLINE_BYTES, deadline, run_work, target
from service.jsonio import json_response
from service.schemas import InferResponse, Live, ModelMetadata, Ready, ServerMetadata
from service.serving.batcher import BatchResult
from service.serving.oip import Parsed, infer_response, model_metadata, parse_infer
from service.uploads import read_body

router = APIRouter(
    prefix="/v2", tags=["inference (v2)"], responses=problem_responses(*UPLOAD_PROBLEMS)
)

_HEADER_LENGTH = "inference-header-content-length"


class NotReady(ProblemError):
    """The protocol's 'not ready' is a 4xx answer."""

    status, title, slug = 400, "Not ready", "not-ready"


@router.get("", response_model=ServerMetadata)
def get_server_metadata(request: Request) -> ServerMetadata:
    """The server's name, version and protocol extensions. No key needed."""
    return ServerMetadata(
        name=request.app.title, version=request.app.version, extensions=["classification"]
    )


@router.get("/health/live", response_model=Live)
def get_live() -> Live:
    """Liveness: the process answers. No key needed."""
    return Live(live=True)


@router.get("/health/ready", response_model=Ready, responses={400: {}})
def get_server_ready(state: StateDep) -> Ready:
    """Readiness: every deployment with an active release has it loaded (400 if not).
    No key needed."""
    waiting = sorted(name for name, ready in state.registry.readiness().items() if not ready)
    if waiting:
        raise NotReady(f"still loading the active release of {', '.join(waiting)}")
    return Ready(ready=True)


def _release(session: Session, deployment: Deployment, version: int | None) -> Release:
    if version is not None:
        return releases.get_release(session, deployment, version)
    if deployment.active_release is None:
        raise ServiceUnavailable(f"deployment {deployment.name!r} has no active release")
    return deployment.active_release


def _metadata(session: Session, deployment: Deployment, version: int | None) -> ModelMetadata:
    release = _release(session, deployment, version)
    versions = session.scalars(
        sa.select(Release.version)
        .where(Release.deployment_id == deployment.id)
        .order_by(Release.version)
    ).all()
    spec = InputSpec.from_dict(release.input_spec)
    body = model_metadata(deployment.name, release.version, release.labels, spec, list(versions))
    return ModelMetadata.model_validate(body)


@router.get("/models/{name}", response_model=ModelMetadata, openapi_extra=scope_doc("predict"))
def get_model_metadata(session: SessionDep, key: PredictKey, deployment: DeploymentDep) -> Any:
    """A deployment's active release as a model: input and outputs with datatypes and
    shapes, its labels. Scope: predict."""
    return _metadata(session, deployment, None)


@router.get(
    "/models/{name}/versions/{version}",
    response_model=ModelMetadata,
    openapi_extra=scope_doc("predict"),
)
def get_version_metadata(
    version: int, session: SessionDep, key: PredictKey, deployment: DeploymentDep
) -> Any:
    """One release of a deployment as a model version. Scope: predict."""
    return _metadata(session, deployment, version)


def _ready(state: AppState, session: Session, deployment: Deployment, version: int | None) -> Ready:
    release = _release(session, deployment, version)
    loaded = state.registry.holder(deployment.name).loaded
    active = loaded is not None and loaded.release_id == release.id
    if not (active or state.registry.is_pinned(deployment.name, release.version)):
        raise NotReady(f"release {release.version} of {deployment.name!r} is not loaded")
    return Ready(name=deployment.name, ready=True)


@router.get(
    "/models/{name}/ready",
    response_model=Ready,
    responses={400: {}},
    openapi_extra=scope_doc("predict"),
)
def get_model_ready(
    state: StateDep, session: SessionDep, key: PredictKey, deployment: DeploymentDep
) -> Ready:
    """Whether the deployment's active release is loaded (400 if not). Scope: predict."""
    return _ready(state, session, deployment, None)


@router.get(
    "/models/{name}/versions/{version}/ready",
    response_model=Ready,
    responses={400: {}},
    openapi_extra=scope_doc("predict"),
)
def get_version_ready(
    version: int, state: StateDep, session: SessionDep, key: PredictKey, deployment: DeploymentDep
) -> Ready:
    """Whether this release is loaded, as the active one or addressed by version (400 if
    not). Scope: predict."""
    return _ready(state, session, deployment, version)


def _header_length(request: Request) -> int | None:
    raw = request.headers.get(_HEADER_LENGTH)
    if raw is None:
        return None
    if not raw.isdigit():
        raise Unprocessable(
            f"header Inference-Header-Content-Length must be a byte count, got {raw!r}",
            errors=[{"loc": ["header", "Inference-Header-Content-Length"], "msg": "integer"}],
        )
    return int(raw)


def _answer(name: str, parsed: Parsed, result: BatchResult) -> Response:
    """The protocol's answer."""
    return json_response(infer_response(name, parsed, result.logits, result.served))


async def _infer(request: Request, key: Principal, name: str, version: int | None) -> Response:
    state: AppState = request.app.state.mpt
    clock = deadline(request.headers, state.settings.request_deadline_ms)
    kind = request.headers.get("content-type", "application/json")
    if not kind.startswith(("application/json", "application/octet-stream")):
        raise UnsupportedMediaType(f"send the inference request as application/json, not {kind}")
    chosen = await target(state, key, name, version)
    served = chosen.served
    with chosen.batcher.arriving_request():
        body = await read_body(request, state.settings.max_predict_bytes)
        header_length = _header_length(request)
        inline = len(body) <= INLINE_BYTES
        parsed = await run_work(
            inline, parse_infer, body, header_length, served.spec, len(served.labels)
        )
    result = await chosen.run(state, parsed.inputs, clock)
    return await run_work(inline, _answer, name, parsed, result)


@router.post(
    "/models/{name}/infer", response_model=InferResponse, openapi_extra=scope_doc("predict")
)
async def infer(name: str, request: Request, key: PredictKey) -> Response:
    """Inference with a deployment's active release. Scope: predict."""
    return await _infer(request, key, name, None)


@router.post(
    "/models/{name}/versions/{version}/infer",
    response_model=InferResponse,
    openapi_extra=scope_doc("predict"),
)
async def infer_version(name: str, version: int, request: Request, key: PredictKey) -> Response:
    """Inference with one release; a release that is not active needs the admin scope (or
    MPT_PREDICT_ANY_RELEASE). Scope: predict."""
    return await _infer(request, key, name, version)
