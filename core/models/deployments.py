"""Deployments (named served classifiers) and their numbered releases."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from core.models.base import Base, JSONType, check_in, utc_now
from core.settings import DEPLOYMENT_NAME_PATTERN

__all__ = ["ArtifactKind", "Deployment", "Release", "ReleaseSource", "ReleaseStatus"]


class ReleaseStatus(StrEnum):
    """Where a release stands: see docs/architecture.md for the transitions."""

    CANDIDATE = "candidate"
    ACTIVE = "active"
    REJECTED = "rejected"
    RETIRED = "retired"


class ArtifactKind(StrEnum):
    """What the release's artifact is: a model package zip or a `torch.export` program."""

    PACKAGE = "package"
    EXPORTED = "exported"


class ReleaseSource(StrEnum):
    """How the release came to be: uploaded by a user, or trained by an upgrade job."""

    UPLOAD = "upload"
    UPGRADE = "upgrade"


class Deployment(Base):
    """A named served classifier with its gate policy and a pointer to its active release."""

    __tablename__ = "deployments"
    __table_args__ = (sa.CheckConstraint("release_counter >= 0", name="release_counter"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(63), unique=True)
    gate_policy: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # deployments -> releases -> deployments is a cycle: this key is added after both tables.
    active_release_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("releases.id", ondelete="SET NULL", use_alter=True)
    )
    # The last version number handed out, so versions are never reused (even if a release
    # row were deleted): the next release takes release_counter + 1.
    release_counter: Mapped[int] = mapped_column(default=0, server_default="0")
    # The must-not-flip set: a dataset whose test images every candidate is judged on.
    golden_dataset_id: Mapped[str | None] = mapped_column(
        sa.ForeignKey("datasets.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(
        default=utc_now, server_default=sa.text("CURRENT_TIMESTAMP")
    )
    updated_at: Mapped[datetime] = mapped_column(
        default=utc_now, onupdate=utc_now, server_default=sa.text("CURRENT_TIMESTAMP")
    )

    active_release: Mapped[Release | None] = relationship(
        foreign_keys=[active_release_id], post_update=True
    )

    @validates("name")
    def _validate_name(self, key: str, value: str) -> str:
        if not isinstance(value, str) or not re.fullmatch(DEPLOYMENT_NAME_PATTERN, value):
            raise ValueError(
                f"deployment name {value!r} is not a slug: 1-63 lowercase letters, digits and "
                "inner hyphens"
            )
        return value


class Release(Base):
    """One version of a deployment's model: its artifact, label space and lifecycle status."""

    __tablename__ = "releases"
    __table_args__ = (
        sa.UniqueConstraint("deployment_id", "version"),
        check_in("status", ReleaseStatus),
        check_in("artifact_kind", ArtifactKind),
        check_in("source", ReleaseSource),
        sa.CheckConstraint("version >= 1", name="version"),
        sa.CheckConstraint("num_classes >= 1", name="num_classes"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    deployment_id: Mapped[int] = mapped_column(sa.ForeignKey("deployments.id", ondelete="CASCADE"))
    version: Mapped[int]
    status: Mapped[str] = mapped_column(sa.String(16), default=ReleaseStatus.CANDIDATE)
    artifact_sha256: Mapped[str] = mapped_column(sa.String(64))
    artifact_kind: Mapped[str] = mapped_column(sa.String(16))
    arch: Mapped[str] = mapped_column(sa.String(64))
    num_classes: Mapped[int]
    labels: Mapped[list[str]] = mapped_column(JSONType)
    input_spec: Mapped[dict[str, Any]] = mapped_column(JSONType)
    manifest: Mapped[dict[str, Any]] = mapped_column(JSONType)
    source: Mapped[str] = mapped_column(sa.String(16), default=ReleaseSource.UPLOAD)
    # releases -> upgrade_jobs -> releases is a cycle: this key is added after both tables.
    upgrade_job_id: Mapped[str | None] = mapped_column(
        sa.ForeignKey("upgrade_jobs.id", ondelete="SET NULL", use_alter=True)
    )
    # The release that was active when this one was promoted: what a rollback returns to.
    previous_release_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("releases.id", ondelete="SET NULL")
    )
    # A baseline: every later candidate is also measured against it (cumulative NFR).
    baseline: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    created_at: Mapped[datetime] = mapped_column(
        default=utc_now, server_default=sa.text("CURRENT_TIMESTAMP")
    )
    activated_at: Mapped[datetime | None]
    retired_at: Mapped[datetime | None]

    deployment: Mapped[Deployment] = relationship(foreign_keys=[deployment_id])
