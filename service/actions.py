"""State changes that both the API and the dashboard's forms make, in one place each."""

from __future__ import annotations

import anyio.from_thread
from sqlalchemy.orm import Session

from core import lineage, releases
from core.models import DatasetRecord, Deployment, Release
from service.deps import AppState
from service.errors import Unprocessable
from service.schemas import GoldenImages

__all__ = ["add_golden_images", "promote", "rollback"]


def promote(
    state: AppState,
    session: Session,
    release: Release,
    actor: str,
    *,
    force: bool = False,
    reason: str | None = None,
) -> Release:
    """Make `release` active in every API process; `force` (with a reason) overrides a failed
    gate. Runs in a worker thread."""
    if force and not (reason or "").strip():
        raise Unprocessable(
            "a forced promotion needs a written reason",
            errors=[{"loc": ["body", "reason"], "msg": "required with force"}],
        )
    releases.promote(session, release.deployment, release, actor=actor, force=force, reason=reason)
    session.commit()
    anyio.from_thread.run(state.registry.sync)
    return release


def rollback(
    state: AppState,
    session: Session,
    deployment: Deployment,
    actor: str,
    to_version: int | None = None,
) -> Release:
    """Back to the previously active release (or `to_version`). Runs in a worker thread."""
    release = releases.rollback(session, deployment, actor=actor, to_version=to_version)
    session.commit()
    anyio.from_thread.run(state.registry.sync)
    return release


def add_golden_images(
    state: AppState, session: Session, deployment: Deployment, body: GoldenImages, actor: str
) -> DatasetRecord:
    """The deployment's golden set with `body`'s test images added (committed)."""
    source = session.get(DatasetRecord, body.dataset_id)
    if source is None:
        raise Unprocessable(
            f"dataset {body.dataset_id!r} does not exist",
            errors=[{"loc": ["body", "dataset_id"], "msg": "no such dataset"}],
        )
    record = lineage.golden_from_images(
        session, state.store, deployment, source, body.indices, actor
    )
    session.commit()
    return record
