"""Shadow traffic: put a candidate beside the active release on live inputs, read its churn."""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy.orm import Session

from core import shadows
from core.models import Release
from service.deps import AdminKey, ReadKey, ReleaseDep, SessionDep, StateDep, scope_doc
from service.errors import API_PROBLEMS, NotFound, problem_responses
from service.report_schemas import ShadowRead, ShadowStart
from service.shadow_summary import latest_shadow, shadow_read

router = APIRouter(
    prefix="/v1/deployments/{name}/releases/{version}",
    tags=["shadow"],
    responses=problem_responses(*API_PROBLEMS),
)


@router.post("/shadow", response_model=ShadowRead, status_code=201,
             openapi_extra=scope_doc("admin"))  # fmt: skip
def start_shadow(
    body: ShadowStart, session: SessionDep, key: AdminKey, release: ReleaseDep
) -> ShadowRead:
    """Shadow the release: a share of live `/predict` inputs also runs through it, off the
    request path, and its top-1 disagreements with the active release are tallied. Replaces
    a running shadow of the deployment. Scope: admin."""
    shadow = shadows.start(
        session, release, sample_rate=body.sample_rate, threshold=body.threshold,
        auto_promote=body.auto_promote, actor=key.name, policy=release.deployment.gate_policy,
    )  # fmt: skip
    session.commit()
    return shadow_read(session, shadow)


def _required(session: Session, release: Release) -> ShadowRead:
    found = latest_shadow(session, release)
    if found is None:
        raise NotFound(f"release {release.version} was never shadowed")
    return shadow_read(session, found)


@router.delete("/shadow", response_model=ShadowRead, openapi_extra=scope_doc("admin"))
def stop_shadow(session: SessionDep, key: AdminKey, release: ReleaseDep) -> ShadowRead:
    """Stop shadowing the release; its tally stays readable. Scope: admin."""
    shadow = latest_shadow(session, release)
    if shadow is None:
        raise NotFound(f"release {release.version} was never shadowed")
    shadows.stop(session, shadow, "stopped", key.name)
    session.commit()
    return shadow_read(session, shadow)


@router.get("/shadow", response_model=ShadowRead, openapi_extra=scope_doc("read"))
def get_shadow(session: SessionDep, key: ReadKey, release: ReleaseDep) -> ShadowRead:
    """The release's latest shadow with its churn so far (overall, where the active release
    was confident, per class, with 95% intervals) and a few disagreeing inputs. Scope: read."""
    return _required(session, release)


@router.get(
    "/shadow/samples/{index}",
    response_class=Response,
    openapi_extra={
        **scope_doc("read"),
        "responses": {"200": {"content": {"image/png": {"schema": {"type": "string"}}}}},
    },
)
def get_shadow_sample(
    index: int, state: StateDep, session: SessionDep, key: ReadKey, release: ReleaseDep
) -> Response:
    """One disagreeing input of the release's shadow, as PNG. Scope: read."""
    shadow = latest_shadow(session, release)
    samples = [] if shadow is None else shadows.evidence(session, shadow).samples
    if not 0 <= index < len(samples):
        raise NotFound(f"the shadow kept {len(samples)} inputs; there is no input {index}")
    data = state.store.path(samples[index]["image"]).read_bytes()
    return Response(
        data, media_type="image/png", headers={"cache-control": "private, max-age=3600"}
    )
