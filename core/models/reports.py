"""What a release was measured and judged on: flip reports and gate decisions."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base, JSONType, check_in, utc_now

__all__ = ["FlipReportKind", "FlipReportRecord", "GateDecision"]


class FlipReportKind(StrEnum):
    """What a report measures: the chosen candidate or the plain retrain beside it against the
    release they replace, the candidate against a baseline, or on the golden set."""

    CANDIDATE = "candidate"
    NO_TREATMENT = "no_treatment"
    CUMULATIVE = "cumulative"  # the candidate against an earlier baseline release
    GOLDEN = "golden"  # the candidate against the active release on the golden set


class FlipReportRecord(Base):
    """A stored `mpt.metrics.FlipReport.to_dict()` of a release against a baseline release."""

    __tablename__ = "flip_reports"
    __table_args__ = (
        sa.UniqueConstraint("release_id", "baseline_release_id", "kind", "split"),
        check_in("kind", FlipReportKind),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    release_id: Mapped[int] = mapped_column(sa.ForeignKey("releases.id", ondelete="CASCADE"))
    baseline_release_id: Mapped[int] = mapped_column(
        sa.ForeignKey("releases.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(sa.String(16))
    split: Mapped[str] = mapped_column(sa.String(16))
    report: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(
        default=utc_now, server_default=sa.text("CURRENT_TIMESTAMP")
    )


class GateDecision(Base):
    """The gate's verdict on a release: every rule with its measured value and limit."""

    __tablename__ = "gate_decisions"

    id: Mapped[int] = mapped_column(primary_key=True)
    release_id: Mapped[int] = mapped_column(
        sa.ForeignKey("releases.id", ondelete="CASCADE"), index=True
    )
    job_id: Mapped[str | None] = mapped_column(
        sa.ForeignKey("upgrade_jobs.id", ondelete="SET NULL")
    )
    passed: Mapped[bool]
    policy: Mapped[dict[str, Any]] = mapped_column(JSONType)
    # [{"rule": ..., "value": ..., "limit": ..., "passed": ...}, ...]
    rules: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    # A forced decision records an admin's override of a failed gate, with the reason.
    forced: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    reason: Mapped[str | None] = mapped_column(sa.Text)
    decided_at: Mapped[datetime] = mapped_column(
        default=utc_now, server_default=sa.text("CURRENT_TIMESTAMP")
    )
