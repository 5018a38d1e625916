"""`mpt-service`: serve the API, migrate the database, create, list and revoke API keys."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from core import db
from core.models import Scope
from core.settings import get_settings

__all__ = ["main"]


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.app import create_app

    settings = get_settings()
    app = create_app(settings, run_migrations=not args.no_migrate)
    uvicorn.run(
        app,
        host=args.host or settings.host,
        port=args.port or settings.port,
        log_level=settings.log_level.lower(),
        access_log=False,
    )
    return 0


def _migrate(args: argparse.Namespace) -> int:
    settings = get_settings()
    db.migrate(settings.database_url)
    print(f"database at revision head: {db.normalize_url(settings.database_url)!r}")
    return 0


def _sessions() -> sessionmaker[Session]:
    settings = get_settings()
    db.migrate(settings.database_url)
    return db.make_session_factory(db.make_engine(settings.database_url))


def _actor() -> str:
    """Who ran the command, for the audit log: `cli:<login name>`."""
    return f"cli:{os.environ.get('USER') or os.environ.get('LOGNAME') or os.getuid()}"


def _fail(command: str, exc: Exception) -> int:
    print(f"mpt-service {command}: error: {exc}", file=sys.stderr)
    return 2


def _create_key(args: argparse.Namespace) -> int:
    from service.auth import create_key

    with _sessions()() as session:
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

    with _sessions()() as session:
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

    with _sessions()() as session:
        try:
            revoke_key(session, args.name, _actor())
        except (LookupError, ValueError) as exc:
            return _fail("revoke-key", exc)
        session.commit()
    print(f"revoked API key {args.name!r}; every API process refuses it from now on")
    return 0


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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `mpt-service` command."""
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    raise SystemExit(main())
