"""Fixtures for core/: database URLs on SQLite and on the real local PostgreSQL server.

PostgreSQL tests FAIL (never skip) when the server is down: CI runs with it up. Each test
gets a schema of its own, dropped afterwards, so runs are repeatable and never touch tables
that other test suites keep in the same database.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError

from core.db import make_engine

POSTGRES_URL = os.environ.get(
    "MPT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> URL:
    """A SQLite database file of the test's own."""
    return make_url(f"sqlite:///{(tmp_path / 'core.db').as_posix()}")


@pytest.fixture
def postgres_url() -> Iterator[URL]:
    """A fresh schema on the local PostgreSQL server, first on the connections' search path."""
    base = make_url(POSTGRES_URL).update_query_dict({"connect_timeout": "5"})
    schema = f"core_test_{uuid.uuid4().hex[:12]}"
    admin = make_engine(base, poolclass=sa.NullPool)
    problem = None
    try:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    except OperationalError as exc:
        problem = str(exc.orig).strip()
    if problem is not None:
        admin.dispose()
        pytest.fail(
            f"PostgreSQL is not reachable at {POSTGRES_URL} ({problem}). These tests need the "
            "real server: start it with `source scripts/services.sh` (or point "
            "MPT_TEST_POSTGRES_URL at one).",
            pytrace=False,
        )
    try:
        yield base.update_query_dict({"options": f"-csearch_path={schema}"})
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> URL:
    """Each backend in turn: a SQLite file, then a PostgreSQL schema."""
    url: URL = request.getfixturevalue(f"{request.param}_url")
    return url
