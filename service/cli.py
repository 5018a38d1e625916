"""`mpt-service`: serve the API, migrate the database, create, list and revoke API keys,
back up and restore the registry, check that the database and the artifacts agree."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session

from core import db
from core.models import Scope
from core.settings import get_settings

__all__ = ["main"]


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.app import create_app

    settings = get_settings()
    host, port = args.host or settings.host, args.port or settings.port
    level = settings.log_level.lower()
    if args.workers == 1:
        app = create_app(settings, run_migrations=not args.no_migrate)
        uvicorn.run(app, host=host, port=port, log_level=level, access_log=False)
        return 0
    if settings.runs_embedded_worker:
        print(
            "mpt-service: --workers runs several API processes and no Celery worker beside "
            "them; set MPT_EMBEDDED_WORKER=false and start `celery -A worker.tasks worker -Q "
            "gpu` (with a broker they can share: MPT_BROKER_URL=redis://...)",
            file=sys.stderr,
        )
        return 2
    if not args.no_migrate:
        db.migrate(settings.database_url)
    # Each process builds its app from the same MPT_* environment.
    uvicorn.run(
        "service.app:create_replica",
        factory=True,
        workers=args.workers,
        host=host,
        port=port,
        log_level=level,
        access_log=False,
    )
    return 0


def _migrate(args: argparse.Namespace) -> int:
    settings = get_settings()
    db.migrate(settings.database_url)
    print(f"database at revision head: {db.normalize_url(settings.database_url)!r}")
    return 0


@contextmanager
def _session() -> Iterator[Session]:
    """A session on the configured database (migrated first); the engine goes with it."""
    settings = get_settings()
    db.migrate(settings.database_url)
    engine = db.make_engine(settings.database_url)
    try:
        with db.make_session_factory(engine)() as session:
            yield session
    finally:
        engine.dispose()


def _actor() -> str:
    """Who ran the command, for the audit log: `cli:<login name>`."""
    return f"cli:{os.environ.get('USER') or os.environ.get('LOGNAME') or os.getuid()}"


def _fail(command: str, exc: Exception) -> int:
    print(f"mpt-service {command}: error: {exc}", file=sys.stderr)
    return 2


def _create_key(args: argparse.Namespace) -> int:
    from service.auth import create_key

    with _session() as session:
        try:
            key = create_key(session, args.name, args.scope or [Scope.ADMIN.value], _actor())
        except ValueError as exc:
            return _fail("create-key", exc)
        session.commit()
    print(key)
    print(f"# key {args.name!r}; it is shown once and stored only as a hash", file=sys.stderr)
    return 0


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")


def _list_keys(args: argparse.Namespace) -> int:
    from service.auth import list_keys

    with _session() as session:
        rows = [
            (k.name, k.prefix, ",".join(k.scopes), _when(k.created_at), _when(k.last_used_at),
             _when(k.revoked_at))
            for k in list_keys(session)
        ]  # fmt: skip
    header = ("name", "prefix", "scopes", "created", "last used", "revoked")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    return 0


def _revoke_key(args: argparse.Namespace) -> int:
    from service.auth import revoke_key

    with _session() as session:
        try:
            revoke_key(session, args.name, _actor())
        except (LookupError, ValueError) as exc:
            return _fail("revoke-key", exc)
        session.commit()
    print(f"revoked API key {args.name!r}; every API process refuses it from now on")
    return 0


def _backup(args: argparse.Namespace) -> int:
    from core.backup import BackupError, backup
    from core.storage import StorageError, open_store

    settings = get_settings()
    try:
        summary = backup(settings.database_url, open_store(settings), args.out)
    except (BackupError, StorageError) as exc:
        return _fail("backup", exc)
    rows = sum(summary.rows.values())
    print(f"backed up {rows} rows (revision {summary.revision}) and {summary.artifacts} "
          f"artifacts ({summary.artifact_bytes} bytes) into {args.out}")  # fmt: skip
    return 0


def _restore(args: argparse.Namespace) -> int:
    from core.backup import BackupError, restore
    from core.storage import StorageError, open_store

    settings = get_settings()
    try:
        summary = restore(args.source, settings.database_url, open_store(settings))
    except (BackupError, StorageError) as exc:
        return _fail("restore", exc)
    print(f"restored {sum(summary.rows.values())} rows and {summary.artifacts} artifacts "
          f"from the backup of {summary.created_at}")  # fmt: skip
    return 0


def _check(args: argparse.Namespace) -> int:
    from core.integrity import check_registry
    from core.storage import StorageError, open_store

    settings = get_settings()
    engine = db.make_engine(settings.database_url)
    try:
        with db.make_session_factory(engine)() as session:
            report = check_registry(session, open_store(settings), verify=args.verify)
    except StorageError as exc:
        return _fail("check", exc)
    finally:
        engine.dispose()
    if args.json:
        print(json.dumps({**asdict(report), "ok": report.ok}, indent=2))
    else:
        print(f"{report.rows} rows name artifacts; {report.artifacts} artifacts stored")
        for title, items in (("rows without artifacts", report.missing),
                             ("artifacts without rows", report.orphans),
                             ("corrupt artifacts", report.corrupt)):  # fmt: skip
            print(f"{title}: {len(items)}", *(f"  {item}" for item in items), sep="\n")
    return 0 if report.ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mpt-service", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument(
        "--no-migrate",
        action="store_true",
        help="do not upgrade the database at start (run `migrate` instead)",
    )
    serve.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="API processes sharing the port (one model copy and micro-batcher each); more "
        "than one needs MPT_EMBEDDED_WORKER=false",
    )
    serve.set_defaults(run=_serve)
    sub.add_parser("migrate", help="upgrade the database to the newest schema").set_defaults(
        run=_migrate
    )
    key = sub.add_parser("create-key", help="create an API key and print it once")
    key.add_argument("--name", default="admin")
    key.add_argument("--scope", action="append", choices=[s.value for s in Scope])
    key.set_defaults(run=_create_key)
    sub.add_parser("list-keys", help="list API keys (never the keys themselves)").set_defaults(
        run=_list_keys
    )
    revoke = sub.add_parser("revoke-key", help="revoke an API key by name, at once")
    revoke.add_argument("name")
    revoke.set_defaults(run=_revoke_key)
    backup = sub.add_parser(
        "backup", help="back up the database and the artifact store together, while serving"
    )
    backup.add_argument("out", type=Path, help="a new folder for the backup")
    backup.set_defaults(run=_backup)
    restore = sub.add_parser("restore", help="restore a backup into an empty database and store")
    restore.add_argument("source", type=Path, help="the backup's folder")
    restore.set_defaults(run=_restore)
    check = sub.add_parser(
        "check", help="find rows without artifacts and artifacts without rows (exit 1)"
    )
    check.add_argument("--verify", action="store_true", help="also rehash every artifact")
    check.add_argument("--json", action="store_true")
    check.set_defaults(run=_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `mpt-service` command."""
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    raise SystemExit(main())
