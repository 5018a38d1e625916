"""Backing up and restoring the registry (the database and the artifact store) together,
while the service runs.

A backup is a folder: `database.jsonl` (every row of every table, one JSON object a line),
`artifacts/` (the store's blobs and references) and `backup.json` (the schema revision and
what was copied). The database is read first, from one consistent snapshot (a copy made with
SQLite's online backup, or a REPEATABLE READ transaction on PostgreSQL); the artifacts are
copied after. That order makes the backup whole: an artifact is stored before any row names
it and is never changed or removed afterwards, so every artifact a row of the snapshot names
is already there to copy. Artifacts stored after the snapshot come along too; `check` lists
them as artifacts without rows. The folder is written under a temporary name and renamed
when complete.

A restore goes into an empty database and an empty store: the database is migrated to the
backup's revision, the rows are loaded in one transaction, then it is migrated to the newest
revision; every artifact is stored again through the store, which checks its sha256.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.migration import MigrationContext
from sqlalchemy.engine import URL

from core import db
from core.models import Base, UTCDateTime, utc_now
from core.storage import ArtifactStore, LocalArtifactStore, ref_body, validate_sha256

__all__ = ["BackupError", "BackupSummary", "backup", "restore"]

ROWS_NAME, ARTIFACTS_NAME, SUMMARY_NAME = "database.jsonl", "artifacts", "backup.json"


class BackupError(Exception):
    """A backup that cannot be made or restored; the message says why."""


@dataclass
class BackupSummary:
    """What a backup holds (`backup.json`)."""

    revision: str
    created_at: str
    rows: dict[str, int] = field(default_factory=dict)
    artifacts: int = 0
    artifact_bytes: int = 0
    references: int = 0


# --- the database -------------------------------------------------------------------------------


@contextmanager
def _snapshot(url: str | URL) -> Iterator[sa.Connection]:
    """A connection that sees one consistent state of the database at `url`."""
    parsed = db.normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            copy = Path(folder) / "snapshot.db"
            source, target = sqlite3.connect(str(parsed.database)), sqlite3.connect(copy)
            try:
                source.backup(target)  # SQLite's online backup: safe while others write
            finally:
                source.close()
                target.close()
            engine = db.make_engine(f"sqlite:///{copy}")
            try:
                with engine.connect() as connection:
                    yield connection
            finally:
                engine.dispose()
        return
    engine = db.make_engine(parsed)
    try:
        with engine.connect() as connection:
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
            with connection.begin():
                yield connection
    finally:
        engine.dispose()


def _revision(connection: sa.Connection) -> str:
    revision = MigrationContext.configure(connection).get_current_revision()
    if revision is None:
        raise BackupError("the database has no schema (run `mpt-service migrate` first)")
    return revision


def _encode(table: sa.Table, row: sa.Row[Any]) -> dict[str, Any]:
    out = {}
    for column in table.columns:
        value = row._mapping[column.name]
        out[column.name] = value.isoformat() if isinstance(value, datetime) else value
    return out


def _decode(table: sa.Table, values: dict[str, Any]) -> dict[str, Any]:
    out = dict(values)
    for column in table.columns:
        if isinstance(column.type, UTCDateTime) and out.get(column.name) is not None:
            out[column.name] = datetime.fromisoformat(out[column.name])
    return out


def _dump_rows(connection: sa.Connection, path: Path) -> dict[str, int]:
    counts = {}
    with path.open("w", encoding="utf-8") as out:
        for table in Base.metadata.sorted_tables:
            count = 0
            for row in connection.execute(sa.select(table).order_by(*table.primary_key)):
                out.write(json.dumps({"table": table.name, "row": _encode(table, row)}) + "\n")
                count += 1
            counts[table.name] = count
    return counts


def _deferred(table: sa.Table) -> list[str]:
    """Columns of foreign keys that close a cycle: loaded empty, filled in after every row."""
    return [fk.parent.name for fk in table.foreign_keys if fk.use_alter or fk.column.table is table]


def _load_rows(connection: sa.Connection, path: Path) -> None:
    tables = Base.metadata.tables
    later: list[tuple[sa.Table, dict[str, Any]]] = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            entry = json.loads(line)
            table = tables[entry["table"]]
            row = _decode(table, entry["row"])
            deferred = {name: row[name] for name in _deferred(table) if row[name] is not None}
            connection.execute(sa.insert(table).values({**row, **dict.fromkeys(deferred)}))
            if deferred:
                key = {c.name: row[c.name] for c in table.primary_key}
                later.append((table, {"key": key, "values": deferred}))
    for table, update in later:
        where = [table.c[name] == value for name, value in update["key"].items()]
        connection.execute(sa.update(table).where(*where).values(update["values"]))
    if connection.dialect.name == "postgresql":
        _reset_sequences(connection)


def _reset_sequences(connection: sa.Connection) -> None:
    """Integer ids continue after the loaded ones (PostgreSQL sequences do not see inserts
    that name their ids)."""
    for table in Base.metadata.sorted_tables:
        [key] = table.primary_key
        if isinstance(key.type, sa.Integer):
            connection.execute(
                sa.text(
                    f"SELECT setval(pg_get_serial_sequence('{table.name}', '{key.name}'), "
                    f'COALESCE(MAX("{key.name}"), 1), MAX("{key.name}") IS NOT NULL) '
                    f'FROM "{table.name}"'
                )
            )


# --- the artifacts ------------------------------------------------------------------------------


def _copy_artifacts(store: ArtifactStore, target: Path, summary: BackupSummary) -> None:
    for sha256 in store.artifact_ids():
        destination = target / sha256[:2] / sha256
        destination.parent.mkdir(parents=True, exist_ok=True)
        with store.open(sha256) as source, destination.open("wb") as out:
            shutil.copyfileobj(source, out, 1024 * 1024)
        summary.artifacts += 1
        summary.artifact_bytes += destination.stat().st_size
    (target / "references").mkdir(parents=True, exist_ok=True)
    for name in store.ref_names():
        pointed = store.get_ref(name)
        if pointed is not None:  # a reference whose artifact is gone has nothing to restore
            (target / "references" / f"{name}.json").write_bytes(ref_body(pointed))
            summary.references += 1


# --- backup and restore -------------------------------------------------------------------------


def backup(database_url: str | URL, store: ArtifactStore, out: Path) -> BackupSummary:
    """Back up the database and the store into the new folder `out` (see the module)."""
    if out.exists():
        raise BackupError(f"{out} already exists; back up into a new folder")
    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        with _snapshot(database_url) as connection:
            summary = BackupSummary(_revision(connection), utc_now().isoformat())
            summary.rows = _dump_rows(connection, partial / ROWS_NAME)
        _copy_artifacts(store, partial / ARTIFACTS_NAME, summary)
        (partial / SUMMARY_NAME).write_text(json.dumps(asdict(summary), indent=2) + "\n")
        os.replace(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return summary


def _read_summary(folder: Path) -> BackupSummary:
    try:
        return BackupSummary(**json.loads((folder / SUMMARY_NAME).read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise BackupError(f"{folder} is not a complete backup ({SUMMARY_NAME}: {exc})") from exc


def _check_empty(database_url: str | URL, store: ArtifactStore) -> None:
    engine = db.make_engine(database_url)
    try:
        with engine.connect() as connection:
            present = set(sa.inspect(connection).get_table_names())
            for table in Base.metadata.sorted_tables:
                if (
                    table.name in present
                    and connection.execute(
                        sa.select(sa.func.count()).select_from(table)
                    ).scalar_one()
                ):
                    raise BackupError(f"the database is not empty ({table.name} has rows)")
    finally:
        engine.dispose()
    if next(iter(store.artifact_ids()), None) is not None:
        raise BackupError(f"the artifact store at {store.location} is not empty")


def restore(folder: Path, database_url: str | URL, store: ArtifactStore) -> BackupSummary:
    """Restore the backup in `folder` into an empty database and an empty store."""
    summary = _read_summary(folder)
    _check_empty(database_url, store)
    artifacts = folder / ARTIFACTS_NAME
    for blob in LocalArtifactStore(artifacts).blobs():
        if store.put_file(blob) != validate_sha256(blob.name):
            raise BackupError(f"artifact {blob.name} in the backup is corrupt (wrong sha256)")
    for reference in sorted((artifacts / "references").glob("*.json")):
        store.set_ref(reference.stem, json.loads(reference.read_text())["sha256"])
    db.migrate(database_url, summary.revision)
    engine = db.make_engine(database_url)
    try:
        with engine.begin() as connection:
            _load_rows(connection, folder / ROWS_NAME)
    finally:
        engine.dispose()
    db.migrate(database_url)
    return summary
