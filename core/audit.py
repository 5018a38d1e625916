"""The audit log: who changed what, and when. Every state change appends one entry here.

Functions take a `Session` and never commit: the entry lands in the same transaction as the
change it records, so a change is never made without its entry nor recorded without being made.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from core.models import AuditEntry, Deployment, Release

__all__ = ["record"]


def record(
    session: Session,
    actor: str,
    action: str,
    *,
    deployment: Deployment | None = None,
    release: Release | None = None,
    job_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one entry to the audit log (in the caller's transaction)."""
    entry = AuditEntry(
        actor=actor,
        action=action,
        deployment_id=deployment.id if deployment else None,
        release_id=release.id if release else None,
        job_id=job_id,
        detail=detail or {},
    )
    session.add(entry)
    return entry
