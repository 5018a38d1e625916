"""A shadow as the API and the dashboard show it: its churn summed over every API process."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from core import shadows
from core.models import Release, Shadow
from mpt.metrics import Proportion
from service.report_schemas import (
    ProportionOut,
    ShadowClass,
    ShadowRead,
    ShadowSample,
)

__all__ = ["latest_shadow", "shadow_read"]


def latest_shadow(session: Session, release: Release) -> Shadow | None:
    """The release's running shadow, else its latest one."""
    return session.scalars(
        sa.select(Shadow)
        .where(Shadow.release_id == release.id)
        .order_by(Shadow.stopped_at.is_(None).desc(), Shadow.started_at.desc(), Shadow.id.desc())
    ).first()


def _rate(p: Proportion) -> ProportionOut:
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
        dropped=evidence.dropped, churn=_rate(tally.churn()),
        confident_churn=_rate(tally.confident_churn()),
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
