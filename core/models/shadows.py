"""Shadow traffic: a candidate release run beside the active one on a share of live inputs,
and the churn tallies that API processes write while it runs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.models.base import Base, JSONType, utc_now
from core.models.deployments import Release

__all__ = ["Shadow", "ShadowTally"]


class Shadow(Base):
    """One candidate in shadow on its deployment, from `started_at` until `stopped_at`."""

    __tablename__ = "shadows"
    __table_args__ = (
        sa.CheckConstraint("sample_rate > 0 AND sample_rate <= 1", name="sample_rate"),
        sa.CheckConstraint("threshold >= 0 AND threshold <= 1", name="threshold"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    deployment_id: Mapped[int] = mapped_column(
        sa.ForeignKey("deployments.id", ondelete="CASCADE"), index=True
    )
    release_id: Mapped[int] = mapped_column(sa.ForeignKey("releases.id", ondelete="CASCADE"))
    sample_rate: Mapped[float]
    # A shadowed input counts as confident when the active release's top-1 probability is
    # at least this: the churn on those inputs stands in for the NFR.
    threshold: Mapped[float]
    # Promote the candidate once `policy` (the shadow rules of its gate) holds.
    auto_promote: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    policy: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    started_at: Mapped[datetime] = mapped_column(
        default=utc_now, server_default=sa.text("CURRENT_TIMESTAMP")
    )
    stopped_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(sa.String(32))  # why it stopped

    release: Mapped[Release] = relationship()


class ShadowTally(Base):
    """What one API process has counted for a shadow; the shadow's tally is their sum. Each
    process rewrites only its own row, so several feed one tally without contention, and a
    restarted process starts a new row while the old one still counts."""

    __tablename__ = "shadow_tallies"
    __table_args__ = (sa.UniqueConstraint("shadow_id", "process"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    shadow_id: Mapped[int] = mapped_column(sa.ForeignKey("shadows.id", ondelete="CASCADE"))
    process: Mapped[str] = mapped_column(sa.String(64))
    counts: Mapped[dict[str, Any]] = mapped_column(JSONType)  # a ChurnTally.to_dict()
    dropped: Mapped[int] = mapped_column(default=0, server_default="0")  # queue full
    # Up to a few disagreeing inputs: {"image": sha256 of a PNG, "active", "candidate", ...}
    samples: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    updated_at: Mapped[datetime] = mapped_column(
        default=utc_now, onupdate=utc_now, server_default=sa.text("CURRENT_TIMESTAMP")
    )
