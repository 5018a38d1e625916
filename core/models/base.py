"""The declarative base, its constraint naming convention and the shared column types."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase

__all__ = [
    "NAMING_CONVENTION",
    "Base",
    "JSONType",
    "UTCDateTime",
    "check_in",
    "new_id",
    "utc_now",
]

# Every constraint gets a predictable name, so migrations can drop or alter it on both
# backends (SQLite's batch mode needs names to find constraints again).
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# JSON on SQLite, JSONB (indexable, compact) on PostgreSQL. The ORM does not see in-place
# mutation of these values: assign a new dict or list to change one.
JSONType = sa.JSON().with_variant(JSONB(), "postgresql")


def utc_now() -> datetime:
    """The current time as a timezone-aware UTC datetime."""
    return datetime.now(UTC)


def new_id() -> str:
    """A fresh random id for rows whose ids are handed to clients (uuid4, 32 hex digits)."""
    return uuid.uuid4().hex


def check_in(column: str, values: type[StrEnum], *, nullable: bool = False) -> sa.CheckConstraint:
    """A CHECK constraint named after `column` that limits it to the members of `values`."""
    allowed = ", ".join(f"'{member.value}'" for member in values)
    condition = f"{column} IN ({allowed})"
    if nullable:
        condition = f"{column} IS NULL OR {condition}"
    return sa.CheckConstraint(condition, name=column)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timestamp that is stored in UTC and always read back timezone-aware (UTC).

    Naive datetimes are refused on the way in: their meaning depends on the machine.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Convert an aware datetime to UTC; refuse a naive one."""
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} refused: attach a timezone")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """SQLite hands back naive values (stored as UTC); PostgreSQL, aware ones."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """The declarative base of every table; `Base.metadata` is what migrations compare with."""

    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}
