"""Engines, sessions and migrations for SQLite (the embedded default) and PostgreSQL.

Nothing connects at import. `make_engine` builds an engine for a URL, `make_session_factory`
the sessions on it; callers own their transactions (`with factory.begin() as session:`).
`migrate` and `downgrade` run the Alembic migrations in the `migrations` package
programmatically, from any working directory, in a checkout or a plain `pip install .`.
"""

from __future__ import annotations

import sqlite3
from importlib import resources
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

__all__ = [
    "MIGRATIONS_DIR",
    "alembic_config",
    "downgrade",
    "make_engine",
    "make_session_factory",
    "migrate",
    "normalize_url",
]


def _migrations_dir() -> Path:
    """The folder of the installed `migrations` package (the checkout's, when editable)."""
    location = resources.files("migrations")
    if not isinstance(location, Path):  # Alembic reads its scripts as files on disk
        raise RuntimeError(f"the migrations at {location} are not a folder on disk")
    return location


MIGRATIONS_DIR = _migrations_dir()

# How long a SQLite connection waits for another process's write lock before failing: the
# API, its pollers and the worker all write to the same file in the embedded default.
_SQLITE_BUSY_TIMEOUT_S = 30.0
_PG_CONNECT_TIMEOUT_S = 5


def normalize_url(url: str | URL) -> URL:
    """Parse `url`, sending plain `postgresql://` / `postgres://` URLs to psycopg 3."""
    parsed = make_url(url) if isinstance(url, str) else url
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _is_memory_sqlite(url: URL) -> bool:
    return url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"


def _on_sqlite_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    """Per connection: enforce foreign keys (off by default in SQLite), use the WAL journal."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        # WAL lets readers (the API's release poller) run while the worker writes.
        cursor.execute("PRAGMA journal_mode=WAL")
    finally:
        cursor.close()


def make_engine(url: str | URL, **kwargs: Any) -> Engine:
    """An engine for a SQLite or PostgreSQL URL, with the settings each backend needs.

    SQLite: foreign keys enforced on every connection, usable from any thread (the API runs
    inference and database calls in worker threads), a generous busy timeout; an in-memory
    database keeps one shared connection so every session sees the same tables.
    PostgreSQL: psycopg 3, connections checked before use, a 5 s connect timeout unless the
    URL sets one. `kwargs` go to `create_engine`.
    """
    parsed = normalize_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        connect_args: dict[str, Any] = {
            "check_same_thread": False,
            "timeout": _SQLITE_BUSY_TIMEOUT_S,
        }
        if _is_memory_sqlite(parsed):
            kwargs.setdefault("poolclass", StaticPool)
        elif parsed.database is not None and not parsed.database.startswith("file:"):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed, connect_args=connect_args, **kwargs)
        sa.event.listen(engine, "connect", _on_sqlite_connect)
        return engine
    if backend == "postgresql":
        kwargs.setdefault("pool_pre_ping", True)
        if "connect_timeout" not in parsed.query:  # an unreachable server fails, never hangs
            parsed = parsed.update_query_dict({"connect_timeout": str(_PG_CONNECT_TIMEOUT_S)})
        return sa.create_engine(parsed, **kwargs)
    raise ValueError(f"database URL backend {backend!r} is not supported: use sqlite or postgresql")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions bound to `engine`. Objects stay readable after commit (no expiry)."""
    return sessionmaker(bind=engine, expire_on_commit=False)


def alembic_config(connection: sa.Connection | None = None) -> Config:
    """An Alembic configuration for `migrations/`, optionally bound to an open connection."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _database_url(url: str | URL | None) -> str | URL:
    if url is not None:
        return url
    from core.settings import get_settings  # only when asked for the configured database

    return get_settings().database_url


def _run_alembic(url: str | URL | None, action: str, revision: str) -> None:
    engine = make_engine(_database_url(url))
    try:
        with engine.connect() as connection:
            config = alembic_config(connection)
            if action == "upgrade":
                command.upgrade(config, revision)
            else:
                command.downgrade(config, revision)
    finally:
        engine.dispose()


def migrate(url: str | URL | None = None, revision: str = "head") -> None:
    """Upgrade the database at `url` (default: the settings' `database_url`) to `revision`."""
    _run_alembic(url, "upgrade", revision)


def downgrade(url: str | URL | None = None, revision: str = "base") -> None:
    """Downgrade the database at `url` to `revision` (default: `base`, an empty schema)."""
    _run_alembic(url, "downgrade", revision)
