"""`mptctl`: the mpt-upgrades REST API from a terminal.

The service's address and key come from `--url`/`--key` or `MPT_URL`/`MPT_KEY`. Exit codes:
0 done; 2 bad usage or an unreadable local file; 3 the service refused the request (4xx);
4 the service failed (5xx) or could not be reached; 5 `watch`: the release failed the gate;
6 `watch`: the job failed or was cancelled. Failures print one line on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from mptctl import commands
from mptctl.client import Client
from mptctl.commands import EXIT, Command, Context, UsageError
from mptctl.errors import ApiError

__all__ = ["DEFAULT_URL", "EXIT", "build_parser", "main"]

DEFAULT_URL = "http://127.0.0.1:8000"


# --- the parser ----------------------------------------------------------------------------


def _common(defaults: bool) -> argparse.ArgumentParser:
    """The options every command takes, before or after its name (only the main parser
    holds their defaults, so a subcommand's copy never overwrites a value given earlier)."""

    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=default(None), help=f"MPT_URL; else {DEFAULT_URL}")
    common.add_argument("--key", default=default(None), help="API key; MPT_KEY")
    common.add_argument("--json", action="store_true", default=default(False), help="print JSON")
    common.add_argument("--quiet", action="store_true", default=default(False), help="no bars")
    return common


def _add_upgrade(sub: Any, common: argparse.ArgumentParser) -> None:
    up = sub.add_parser("upgrade", parents=[common], help="submit an upgrade job")
    up.add_argument("name", help="deployment")
    up.add_argument("--dataset", required=True, help="dataset id (from `datasets upload`)")
    up.add_argument("--method", help="mpt_kl (default), mpt_lm, no_treatment, pct_kl, ...")
    up.add_argument("--arch")
    up.add_argument("--epochs", type=int)
    up.add_argument("--batch-size", type=int)
    up.add_argument("--lr", type=float)
    up.add_argument("--bias", type=float, action="append", help="in logits; repeat to sweep")
    up.add_argument(
        "--relative-bias", type=float, action="append", help="in median margins; repeat to sweep"
    )
    up.add_argument("--seed", type=int)
    up.add_argument("--gate", action="append", metavar="RULE=VALUE", help="overrides a rule")
    up.add_argument("--auto-promote", action="store_true", help="promote when the gate passes")
    up.add_argument("--idempotency-key", help="the same key returns the same job")
    up.add_argument("--watch", action="store_true", help="then follow it like `watch`")
    up.add_argument("--interval", type=float, default=0.5, help=argparse.SUPPRESS)
    up.set_defaults(run=commands.upgrade)


def _add_datasets(sub: Any, common: argparse.ArgumentParser) -> None:
    datasets = sub.add_parser("datasets", help="upload or show a dataset")
    actions = datasets.add_subparsers(dest="action", required=True)
    upload = actions.add_parser("upload", parents=[common], help="upload .npz, .zip or .tar.gz")
    upload.add_argument("file")
    upload.add_argument("--name", help="a title (default: the file name)")
    upload.add_argument("--deployment", help="check it holds this deployment's labels")
    upload.add_argument("--resize", metavar="HxW", help="resize images, e.g. 32x32")
    upload.set_defaults(run=commands.upload)
    show = actions.add_parser("show", parents=[common], help="a dataset's classes and counts")
    show.add_argument("id")
    show.set_defaults(run=commands.dataset)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mptctl",
        parents=[_common(defaults=True)],
        description="The mpt-upgrades REST API from a terminal.",
        epilog="exit codes: 0 ok, 2 usage, 3 refused (4xx), 4 server error or unreachable, "
        "5 gate failed (watch), 6 job failed or cancelled (watch)",
    )
    common = _common(defaults=False)
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, does: Command, help: str, *positional: str) -> argparse.ArgumentParser:
        command = sub.add_parser(name, parents=[common], help=help)
        for arg in positional:
            command.add_argument(arg)
        command.set_defaults(run=does)
        return command

    add("deployments", commands.deployments, "list deployments")
    deploy = add("deploy", commands.deploy, "create a deployment and register a package", "name")
    deploy.add_argument("package", help="model package (.zip or .pt2)")
    deploy.add_argument("--gate", action="append", metavar="RULE=VALUE", help="a new one's gate")
    add("releases", commands.releases, "list a deployment's releases", "name")
    _add_datasets(sub, common)
    _add_upgrade(sub, common)
    jobs = add("jobs", commands.jobs, "list a deployment's upgrade jobs", "name")
    jobs.add_argument("--limit", type=int, default=20)
    watch = add("watch", commands.watch, "follow a job to its verdict", "job")
    watch.add_argument("--interval", type=float, default=0.5, help="seconds between polls")
    add("cancel", commands.cancel, "cancel a queued or running job", "job")
    promote = add("promote", commands.promote, "make a release active", "name")
    promote.add_argument("version", type=int)
    promote.add_argument("--force", action="store_true", help="override a failed gate (admin)")
    promote.add_argument("--reason", help="why; required with --force")
    rollback = add("rollback", commands.rollback, "back to the previous active release", "name")
    rollback.add_argument("--to", type=int, metavar="VERSION", help="this release instead")
    predict = add("predict", commands.predict, "classify image files: predict [NAME] IMAGE...")
    predict.add_argument("items", nargs="+", metavar="[NAME] IMAGE")
    report = add("report", commands.report, "a release's flip report", "name")
    report.add_argument("version", type=int)
    report.add_argument("--worst", type=int, default=5, help="old classes to list")
    return parser


def _exit_for(exc: ApiError) -> int:
    if exc.status is not None and 400 <= exc.status < 500:
        return EXIT["refused"]
    return EXIT["unavailable"]


def _one_line(text: str) -> str:
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `mptctl` command."""
    args = build_parser().parse_args(argv)
    url = args.url or os.environ.get("MPT_URL") or DEFAULT_URL
    key = args.key or os.environ.get("MPT_KEY")
    try:
        with Client(url, key) as client:
            return int(args.run(Context(client, args)))
    except UsageError as exc:
        print(f"mptctl {args.command}: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT["usage"]
    except ApiError as exc:
        print(f"mptctl {args.command}: {_one_line(str(exc))}", file=sys.stderr)
        return _exit_for(exc)
    except KeyboardInterrupt:
        print(f"mptctl {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
