"""`mpt-service`: serve the API, migrate the database, create API keys."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

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


def _create_key(args: argparse.Namespace) -> int:
    from service.auth import create_key

    settings = get_settings()
    db.migrate(settings.database_url)
    sessions = db.make_session_factory(db.make_engine(settings.database_url))
    with sessions() as session:
        try:
            key = create_key(session, args.name, args.scope or [Scope.ADMIN.value])
        except ValueError as exc:
            print(f"mpt-service create-key: error: {exc}", file=sys.stderr)
            return 2
        session.commit()
    print(key)
    print(f"# key {args.name!r}; it is shown once and stored only as a hash", file=sys.stderr)
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `mpt-service` command."""
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    raise SystemExit(main())
