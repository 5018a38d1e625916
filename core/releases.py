"""Deployments and releases: registering, promoting and rolling back, with the audit trail.

The service's endpoints and the worker's gate both promote through `promote`, so a release
becomes active the same way whoever asks. Functions take a `Session` and never commit.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from core.audit import record as audit
from core.models import (
    Deployment,
    GateDecision,
    Release,
    ReleaseSource,
    ReleaseStatus,
    utc_now,
)

__all__ = [
    "ConflictError",
    "GateRefusedError",
    "NotFoundError",
    "add_release",
    "create_deployment",
    "get_deployment",
    "get_release",
    "latest_gate",
    "promote",
    "rollback",
]


class NotFoundError(LookupError):
    """No such deployment or release."""


class ConflictError(ValueError):
    """The request contradicts the current state (a name taken, a release already active)."""


class GateRefusedError(ValueError):
    """Promotion refused: the release failed its gate (or was never gated) and was not forced."""


def get_deployment(session: Session, name: str, *, lock: bool = False) -> Deployment:
    query = sa.select(Deployment).where(Deployment.name == name)
    if lock:
        query = query.with_for_update()
    deployment = session.scalars(query).one_or_none()
    if deployment is None:
        raise NotFoundError(f"deployment {name!r} does not exist")
    return deployment


def create_deployment(
    session: Session, name: str, gate_policy: dict[str, Any], actor: str
) -> Deployment:
    taken = session.scalars(sa.select(Deployment.id).where(Deployment.name == name)).first()
    if taken is not None:
        raise ConflictError(f"deployment {name!r} already exists")
    deployment = Deployment(name=name, gate_policy=gate_policy)
    session.add(deployment)
    session.flush()
    audit(session, actor, "create_deployment", deployment=deployment, detail={"gate": gate_policy})
    return deployment


def get_release(session: Session, deployment: Deployment, version: int) -> Release:
    release = session.scalars(
        sa.select(Release).where(Release.deployment_id == deployment.id, Release.version == version)
    ).one_or_none()
    if release is None:
        raise NotFoundError(f"deployment {deployment.name!r} has no release {version}")
    return release


def add_release(
    session: Session,
    deployment: Deployment,
    *,
    artifact_sha256: str,
    artifact_kind: str,
    manifest: dict[str, Any],
    actor: str,
    source: str = ReleaseSource.UPLOAD,
    upgrade_job_id: str | None = None,
    status: str = ReleaseStatus.CANDIDATE,
) -> Release:
    """A new release numbered after every earlier one (numbers are never reused)."""
    session.refresh(deployment, with_for_update=True)
    deployment.release_counter += 1
    release = Release(
        deployment_id=deployment.id,
        version=deployment.release_counter,
        status=status,
        artifact_sha256=artifact_sha256,
        artifact_kind=artifact_kind,
        arch=manifest["arch"],
        num_classes=manifest["num_classes"],
        labels=list(manifest["labels"]),
        input_spec=dict(manifest["input"]),
        manifest=manifest,
        source=source,
        upgrade_job_id=upgrade_job_id,
        baseline=deployment.release_counter == 1,  # later releases are measured against v1
    )
    session.add(release)
    session.flush()
    audit(
        session,
        actor,
        "register_release",
        deployment=deployment,
        release=release,
        job_id=upgrade_job_id,
        detail={"version": release.version, "status": status, "source": source},
    )
    return release


def latest_gate(session: Session, release: Release) -> GateDecision | None:
    return session.scalars(
        sa.select(GateDecision)
        .where(GateDecision.release_id == release.id)
        .order_by(GateDecision.decided_at.desc(), GateDecision.id.desc())
    ).first()


def _check_gate(session: Session, release: Release, force: bool, reason: str | None) -> None:
    if force:
        if not reason or not reason.strip():
            raise ConflictError("a forced promotion needs a written reason")
        return
    gate = latest_gate(session, release)
    if gate is None:
        raise GateRefusedError(
            f"release {release.version} was never gated; promote it with "
            "force and a reason, or upgrade through a job"
        )
    if not gate.passed:
        failed = [r["rule"] for r in gate.rules if not r.get("passed")]
        raise GateRefusedError(
            f"release {release.version} failed its gate ({', '.join(failed)}); "
            "promote it with force and a reason to override"
        )


def _record_override(session: Session, release: Release, reason: str | None) -> None:
    """A forced promotion is a gate decision too: the gate's verdict as it stood, marked as
    overridden, with the reason (the audit log names who)."""
    gate = latest_gate(session, release)
    session.add(
        GateDecision(
            release_id=release.id,
            passed=gate.passed if gate else False,
            policy=gate.policy if gate else {},
            rules=gate.rules if gate else [],
            forced=True,
            reason=reason,
        )
    )


def _activate(deployment: Deployment, release: Release) -> Release | None:
    previous = deployment.active_release
    now = utc_now()
    if previous is not None and previous.id != release.id:
        previous.status, previous.retired_at = ReleaseStatus.RETIRED, now
        release.previous_release_id = previous.id
    release.status, release.activated_at, release.retired_at = ReleaseStatus.ACTIVE, now, None
    deployment.active_release_id = release.id
    deployment.active_release = release
    return previous


def promote(
    session: Session,
    deployment: Deployment,
    release: Release,
    *,
    actor: str,
    force: bool = False,
    reason: str | None = None,
    first: bool = False,
) -> Release:
    """Make `release` the active one. `first=True` activates a deployment's first release
    without a gate (there is nothing to compare it with)."""
    session.refresh(deployment, with_for_update=True)
    if release.status == ReleaseStatus.ACTIVE:
        raise ConflictError(f"release {release.version} is already active")
    if first:
        if deployment.active_release_id is not None:
            raise ConflictError(
                f"deployment {deployment.name!r} already has an active release; "
                "later releases become active only through promotion"
            )
    else:
        _check_gate(session, release, force, reason)
    if force:
        _record_override(session, release, reason)
    previous = _activate(deployment, release)
    action = "activate" if first else ("force_promote" if force else "promote")
    audit(
        session,
        actor,
        action,
        deployment=deployment,
        release=release,
        job_id=release.upgrade_job_id,
        detail={
            "version": release.version,
            "previous": previous.version if previous else None,
            "reason": reason,
        },
    )
    return release


def rollback(
    session: Session, deployment: Deployment, *, actor: str, to_version: int | None = None
) -> Release:
    """Back to the release active before the current one, or to `to_version`."""
    session.refresh(deployment, with_for_update=True)
    current = deployment.active_release
    if current is None:
        raise ConflictError(f"deployment {deployment.name!r} has no active release")
    if to_version is not None:
        target = get_release(session, deployment, to_version)
    elif current.previous_release_id is not None:
        target = session.get_one(Release, current.previous_release_id)
    else:
        raise ConflictError(f"release {current.version} has no previous release to go back to")
    if target.id == current.id:
        raise ConflictError(f"release {target.version} is already active")
    if target.status != ReleaseStatus.RETIRED:
        raise ConflictError(
            f"release {target.version} is {target.status}, not a release that was active "
            "before; only retired releases can be rolled back to (promote it instead)"
        )
    _activate(deployment, target)
    target.previous_release_id = current.id
    audit(
        session,
        actor,
        "rollback",
        deployment=deployment,
        release=target,
        detail={"from": current.version, "to": target.version},
    )
    return target
