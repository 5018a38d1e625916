"""Uploaded extended datasets, validated and stored decoded once."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base, JSONType, check_in, new_id, utc_now

__all__ = ["DatasetFormat", "DatasetRecord"]


class DatasetFormat(StrEnum):
    """The archive format the dataset was uploaded in."""

    ZIP = "zip"
    TAR_GZ = "tar.gz"
    NPZ = "npz"


class DatasetRecord(Base):
    """A dataset upload: the archive's checksum and the decoded `.npz` artifact built from it."""

    __tablename__ = "datasets"
    __table_args__ = (
        check_in("format", DatasetFormat),
        sa.CheckConstraint("size_bytes >= 0", name="size_bytes"),
    )

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(sa.String(255))
    sha256: Mapped[str] = mapped_column(sa.String(64), index=True)  # of the uploaded archive
    artifact_sha256: Mapped[str] = mapped_column(sa.String(64))  # of the decoded .npz
    classes: Mapped[list[str]] = mapped_column(JSONType)
    counts: Mapped[dict[str, dict[str, int]]] = mapped_column(JSONType)  # split -> class -> n
    image_shape: Mapped[list[int]] = mapped_column(JSONType)  # [C, H, W]
    format: Mapped[str] = mapped_column(sa.String(8))
    size_bytes: Mapped[int] = mapped_column(sa.BigInteger)
    created_at: Mapped[datetime] = mapped_column(
        default=utc_now, server_default=sa.text("CURRENT_TIMESTAMP")
    )
