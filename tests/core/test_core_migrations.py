"""Migrations: every revision up and down on both backends, and no drift from the models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL

from core.db import MIGRATIONS_DIR, alembic_config, downgrade, make_engine, migrate
from core.models import Base

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_TABLES = set(Base.metadata.tables)


def _tables(url: URL) -> set[str]:
    engine = make_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def _current_revision(url: URL) -> str | None:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def _revisions_in_order() -> list[str]:
    script = ScriptDirectory.from_config(alembic_config())
    return [rev.revision for rev in reversed(list(script.walk_revisions("base", "heads")))]


def test_core_migrations_single_head() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert len(script.get_heads()) == 1
    assert MIGRATIONS_DIR.joinpath("env.py").is_file()


def test_core_migrations_every_revision_up_and_down(db_url: URL) -> None:
    revisions = _revisions_in_order()
    for revision in revisions:
        migrate(db_url, revision)
        assert _current_revision(db_url) == revision
    assert _tables(db_url) == MODEL_TABLES
    for previous in [*reversed(revisions[:-1]), None]:
        downgrade(db_url, previous or "base")
        assert _current_revision(db_url) == previous
    assert _tables(db_url) == set()
    migrate(db_url)  # and back up again: a downgrade leaves nothing behind that blocks it
    assert _tables(db_url) == MODEL_TABLES


def test_core_migrations_match_models(db_url: URL) -> None:
    migrate(db_url)
    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "compare_server_default": True}
            )
            differences = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert differences == [], f"models and migrations disagree: {differences}"


def test_core_migrations_run_from_any_directory(
    sqlite_url: URL, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    migrate(sqlite_url.render_as_string(hide_password=False))
    assert _tables(sqlite_url) == MODEL_TABLES


def test_core_migrations_alembic_command_line(sqlite_url: URL, tmp_path: Path) -> None:
    url = sqlite_url.render_as_string(hide_password=False)
    ini = str(REPO_ROOT / "alembic.ini")
    for args in (["upgrade", "head"], ["downgrade", "base"]):
        subprocess.run(
            [sys.executable, "-m", "alembic", "-c", ini, "-x", f"url={url}", *args],
            cwd=tmp_path,
            check=True,
            capture_output=True,
            timeout=120,
        )
    assert _current_revision(sqlite_url) is None
