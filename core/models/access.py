"""Who may do what, and what they did: API keys and the audit log."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base, JSONType, utc_now

__all__ = ["ApiKey", "AuditEntry", "Scope"]


class Scope(StrEnum):
    """API key scopes: `admin` allows everything, `predict` inference, `read` the GETs."""

    ADMIN = "admin"
    PREDICT = "predict"
    READ = "read"


class ApiKey(Base):
    """A bearer key, stored only as a hash; `prefix` finds the row, `key_hash` proves it."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100), unique=True)
    prefix: Mapped[str] = mapped_column(sa.String(8), index=True)  # the key's first 8 chars
    # sha256 hex of the full key. Keys are 32 random bytes, so they cannot be guessed from
    # a dictionary and a fast hash is adequate; a slow password hash (bcrypt, argon2) would
    # only add latency to every request.
    key_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(
        default=utc_now, server_default=sa.text("CURRENT_TIMESTAMP")
    )
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]


class AuditEntry(Base):
    """One recorded state change (promotion, forced promotion, rollback, a key created or
    revoked, a job submitted, ended or recovered, ...): who, when, on what."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(
        default=utc_now, server_default=sa.text("CURRENT_TIMESTAMP"), index=True
    )
    actor: Mapped[str] = mapped_column(sa.String(100))  # a key's name, a worker, `cli:<user>`
    action: Mapped[str] = mapped_column(sa.String(64), index=True)
    deployment_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("deployments.id", ondelete="SET NULL"), index=True
    )
    release_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("releases.id", ondelete="SET NULL")
    )
    job_id: Mapped[str | None] = mapped_column(
        sa.String(32), sa.ForeignKey("upgrade_jobs.id", ondelete="SET NULL"), index=True
    )
    detail: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
