"""Upgrade jobs: the database row is the source of truth for a job's state."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base, JSONType, check_in, new_id, utc_now

__all__ = ["JobPhase", "JobStatus", "UpgradeJob"]


class JobStatus(StrEnum):
    """A job's lifecycle status: see docs/architecture.md for the transitions."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class JobPhase(StrEnum):
    """What a running job is doing, in pipeline order."""

    REFERENCE = "reference"
    CANDIDATES = "candidates"
    SELECTING = "selecting"
    EVALUATING = "evaluating"
    GATING = "gating"
    PROMOTING = "promoting"


class UpgradeJob(Base):
    """One upgrade: train candidates on a dataset, measure flips against a base release, gate."""

    __tablename__ = "upgrade_jobs"
    __table_args__ = (
        # The same Idempotency-Key on the same deployment names the same job. NULLs are
        # distinct on both backends, so jobs submitted without a key never collide.
        sa.UniqueConstraint("deployment_id", "idempotency_key"),
        sa.Index("ix_upgrade_jobs_deployment_id_status", "deployment_id", "status"),
        check_in("status", JobStatus),
        check_in("phase", JobPhase, nullable=True),
        sa.CheckConstraint("attempts >= 0", name="attempts"),
    )

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True, default=new_id)
    deployment_id: Mapped[int] = mapped_column(sa.ForeignKey("deployments.id", ondelete="CASCADE"))
    dataset_id: Mapped[str] = mapped_column(sa.ForeignKey("datasets.id"))
    base_release_id: Mapped[int] = mapped_column(sa.ForeignKey("releases.id"))
    status: Mapped[str] = mapped_column(sa.String(16), default=JobStatus.QUEUED)
    phase: Mapped[str | None] = mapped_column(sa.String(16))
    # method, arch, epochs, batch_size, lr, bias (list), seed, gate, auto_promote
    request: Mapped[dict[str, Any]] = mapped_column(JSONType)
    progress: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    candidates: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    result_release_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("releases.id", ondelete="SET NULL")
    )
    gate: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    error: Mapped[str | None] = mapped_column(sa.Text)
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(255))
    cancel_requested: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    worker_id: Mapped[str | None] = mapped_column(sa.String(255))
    heartbeat_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(
        default=utc_now, server_default=sa.text("CURRENT_TIMESTAMP")
    )
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
