"""A deployment's lineage and must-not-flip set: which releases are baselines that every
later candidate is measured against, and which dataset holds the golden images."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from core.audit import record as audit
from core.models import DatasetRecord, Deployment, Release
from core.releases import ConflictError

__all__ = ["baselines", "set_baseline", "set_golden"]


def baselines(session: Session, deployment: Deployment) -> list[Release]:
    """The deployment's baseline releases, oldest first."""
    return list(
        session.scalars(
            sa.select(Release)
            .where(Release.deployment_id == deployment.id, Release.baseline.is_(True))
            .order_by(Release.version)
        )
    )


def set_baseline(session: Session, release: Release, baseline: bool, actor: str) -> Release:
    """Mark or unmark `release` as a baseline (an idempotent change, audited when made)."""
    if release.baseline != baseline:
        release.baseline = baseline
        action = "mark_baseline" if baseline else "unmark_baseline"
        audit(session, actor, action, deployment=release.deployment, release=release,
              detail={"version": release.version})  # fmt: skip
    return release


def set_golden(
    session: Session, deployment: Deployment, dataset: DatasetRecord | None, actor: str
) -> None:
    """Make `dataset` the deployment's must-not-flip set, or remove it (None).

    Its classes must be labels of the active release and its images of that release's input
    size: they are what the active release must keep answering."""
    if dataset is not None:
        _check_golden(deployment, dataset)
    deployment.golden_dataset_id = None if dataset is None else dataset.id
    audit(session, actor, "set_golden" if dataset else "clear_golden", deployment=deployment,
          detail={"dataset": None if dataset is None else dataset.id})  # fmt: skip


def _check_golden(deployment: Deployment, dataset: DatasetRecord) -> None:
    active = deployment.active_release
    if active is None:
        raise ConflictError(f"deployment {deployment.name!r} has no active release to protect")
    unknown = sorted(set(dataset.classes) - set(active.labels))
    if unknown:
        raise ConflictError(
            f"the golden set has classes release {active.version} does not know: {unknown}"
        )
    spec = active.input_spec
    if list(dataset.image_shape) != [spec["channels"], spec["height"], spec["width"]]:
        raise ConflictError(
            f"golden images are {dataset.image_shape} (C, H, W); release {active.version} "
            f"takes {[spec['channels'], spec['height'], spec['width']]}"
        )
    if not dataset.counts.get("test"):
        raise ConflictError("the golden set has no test images (its test split is what counts)")
