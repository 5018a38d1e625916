"""Fixtures for core/: database URLs on SQLite and on the real local PostgreSQL server
(`postgres_url`, shared from tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import URL, make_url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> URL:
    """A SQLite database file of the test's own."""
    return make_url(f"sqlite:///{(tmp_path / 'core.db').as_posix()}")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> URL:
    """Each backend in turn: a SQLite file, then a PostgreSQL schema."""
    url: URL = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture(scope="session")
def project_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of this checkout, built once for the install tests."""
    from tests.wheels import build_wheel

    return build_wheel(tmp_path_factory.mktemp("wheel"))
