"""Shadow traffic: put a candidate beside the active release on live inputs, read its churn."""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy.orm import Session

from core import shadows
from core.models import Release, Shadow
from mpt.metrics import Proportion
from service.deps import AdminKey, ReadKey, ReleaseDep, SessionDep, StateDep, scope_doc
from service.errors import NotFound
from service.report_schemas import (
    ProportionOut,
    ShadowClass,
    ShadowRead,
    ShadowSample,
    ShadowStart,
)

router = APIRouter(prefix="/v1/deployments/{name}/releases/{version}", tags=["shadow"])
ACTIVE_SHADOW_FIRST = (Shadow.stopped_at.is_(None).desc(), Shadow.started_at.desc())


def _latest(session: Session, release: Release) -> Shadow:
    shadow = (
        session.query(Shadow)
        .filter_by(release_id=release.id)
        .order_by(*ACTIVE_SHADOW_FIRST)
        .first()
    )
    if shadow is None:
        raise NotFound(f"release {release.version} was never shadowed")
    return shadow


def _proportion(p: Proportion) -> ProportionOut:
    return ProportionOut.model_validate(p.to_dict())


def shadow_read(session: Session, shadow: Shadow) -> ShadowRead:
    evidence = shadows.evidence(session, shadow)
    tally, release = evidence.tally, shadow.release
    base = f"/v1/deployments/{release.deployment.name}/releases/{release.version}/shadow"
    return ShadowRead(
        deployment=release.deployment.name, version=release.version,
        sample_rate=shadow.sample_rate, threshold=shadow.threshold,
        auto_promote=shadow.auto_promote, policy=shadow.policy, started_at=shadow.started_at,
        stopped_at=shadow.stopped_at, outcome=shadow.outcome, seen=tally.seen,
        dropped=evidence.dropped, churn=_proportion(tally.churn()),
        confident_churn=_proportion(tally.confident_churn()),
        per_class=[
            ShadowClass(index=i, label=release.labels[i], seen=seen, disagree=disagree)
            for i, (seen, disagree) in sorted(tally.per_class.items())
        ],
        samples=[
            ShadowSample(
                url=f"{base}/samples/{i}", active_label=s["active_label"],
                active_score=s["active_score"], candidate_label=s["candidate_label"],
            )
            for i, s in enumerate(evidence.samples)
        ],
    )  # fmt: skip


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


@router.delete("/shadow", response_model=ShadowRead, openapi_extra=scope_doc("admin"))
def stop_shadow(session: SessionDep, key: AdminKey, release: ReleaseDep) -> ShadowRead:
    """Stop shadowing the release; its tally stays readable. Scope: admin."""
    shadow = _latest(session, release)
    shadows.stop(session, shadow, "stopped", key.name)
    session.commit()
    return shadow_read(session, shadow)


@router.get("/shadow", response_model=ShadowRead, openapi_extra=scope_doc("read"))
def get_shadow(session: SessionDep, key: ReadKey, release: ReleaseDep) -> ShadowRead:
    """The release's latest shadow with its churn so far (overall, where the active release
    was confident, per class, with 95% intervals) and a few disagreeing inputs. Scope: read."""
    return shadow_read(session, _latest(session, release))


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
    samples = shadows.evidence(session, _latest(session, release)).samples
    if not 0 <= index < len(samples):
        raise NotFound(f"the shadow kept {len(samples)} inputs; there is no input {index}")
    data = state.store.path(samples[index]["image"]).read_bytes()
    return Response(
        data, media_type="image/png", headers={"cache-control": "private, max-age=3600"}
    )
