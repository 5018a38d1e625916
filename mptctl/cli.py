"""`mptctl`: the mpt-upgrades REST API from a terminal.

The service's address and key come from `--url`/`--key` or `MPT_URL`/`MPT_KEY`. Exit codes:
0 done; 2 bad usage or an unreadable local file; 3 the service refused the request (4xx);
4 the service failed (5xx) or could not be reached; 5 `watch`: the release failed the gate;
6 `watch`: the job failed or was cancelled. Failures print one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from mptctl import views
from mptctl.client import Client, UpgradeRequest
from mptctl.errors import ApiError
from mptctl.resources import Job
from mptctl.watch import watch_job

__all__ = ["EXIT", "build_parser", "main"]

EXIT = {"ok": 0, "usage": 2, "refused": 3, "unavailable": 4, "gate_failed": 5, "job_failed": 6}
DEFAULT_URL = "http://127.0.0.1:8000"


class UsageError(Exception):
    """A command line that cannot be run as given (exit 2)."""


@dataclass(frozen=True)
class Context:
    client: Client
    args: argparse.Namespace

    def show(self, text: str, raw: Any) -> None:
        """Print `text`, or `raw` as JSON with `--json`."""
        print(json.dumps(raw, indent=2) if self.args.json else text)


Command = Callable[[Context], int]


def _gate(values: list[str] | None) -> dict[str, float | str] | None:
    """`RULE=VALUE` pairs as a gate policy (numbers where they parse)."""
    if not values:
        return None
    policy: dict[str, float | str] = {}
    for item in values:
        rule, sep, value = item.partition("=")
        if not sep or not rule:
            raise UsageError(f"--gate expects RULE=VALUE, got {item!r}")
        try:
            policy[rule] = float(value)
        except ValueError:
            policy[rule] = value
    return policy


def _file(path: str) -> Path:
    if not Path(path).is_file():
        raise UsageError(f"no such file: {path}")
    return Path(path)


# --- commands ------------------------------------------------------------------------------


def _deployments(ctx: Context) -> int:
    found = ctx.client.deployments()
    ctx.show(views.deployments_table(found), [d.raw for d in found])
    return 0


def _deploy(ctx: Context) -> int:
    """Create the deployment when it does not exist, then register the package; it becomes
    active when the deployment has no active release yet."""
    args, client = ctx.args, ctx.client
    package = _file(args.package)
    try:
        deployment = client.deployment(args.name)
    except ApiError as exc:
        if exc.status != 404:
            raise
        deployment = client.create_deployment(args.name, _gate(args.gate))
    release = client.register_release(
        args.name, package, activate=deployment.active_release is None
    )
    ctx.show(views.release_line(args.name, release), release.raw)
    return 0


def _releases(ctx: Context) -> int:
    found = ctx.client.releases(ctx.args.name)
    ctx.show(views.releases_table(found), [r.raw for r in found])
    return 0


def _upload(ctx: Context) -> int:
    path = _file(ctx.args.file)
    size = path.stat().st_size
    with tqdm(
        total=size, unit="B", unit_scale=True, desc=f"upload {path.name}", disable=ctx.args.quiet
    ) as bar:

        def sent(done: int, total: int) -> None:
            bar.update(done - bar.n)

        dataset = ctx.client.upload_dataset(
            path,
            name=ctx.args.name,
            deployment=ctx.args.deployment,
            resize=ctx.args.resize,
            progress=sent,
        )
    ctx.show(views.dataset_line(dataset), dataset.raw)
    return 0


def _dataset(ctx: Context) -> int:
    dataset = ctx.client.dataset(ctx.args.id)
    ctx.show(views.dataset_line(dataset), dataset.raw)
    return 0


def _upgrade(ctx: Context) -> int:
    args = ctx.args
    request = UpgradeRequest(
        dataset_id=args.dataset,
        method=args.method,
        arch=args.arch,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        bias=args.bias,
        relative_bias=args.relative_bias,
        seed=args.seed,
        gate=_gate(args.gate),
        auto_promote=args.auto_promote,
    )
    job = ctx.client.submit_upgrade(args.name, request, idempotency_key=args.idempotency_key)
    if args.watch:
        return _follow(ctx, job.id)
    ctx.show(f"job {job.id} {job.status}", job.raw)
    return 0


def _jobs(ctx: Context) -> int:
    found = ctx.client.upgrades(ctx.args.name, limit=ctx.args.limit)
    ctx.show(views.jobs_table(found), [j.raw for j in found])
    return 0


def _exit_of(job: Job) -> int:
    if job.status != "succeeded":
        return EXIT["job_failed"]
    return EXIT["gate_failed"] if job.gate_passed is False else 0


def _follow(ctx: Context, job_id: str) -> int:
    out = open(os.devnull, "w") if ctx.args.quiet else None  # noqa: SIM115
    try:
        job = watch_job(ctx.client, job_id, out=out, interval=ctx.args.interval)
    finally:
        if out is not None:
            out.close()
    ctx.show(views.verdict(job), job.raw)
    code = _exit_of(job)
    if code:
        print(f"mptctl: {views.verdict(job)}", file=sys.stderr)
    return code


def _watch(ctx: Context) -> int:
    return _follow(ctx, ctx.args.job)


def _cancel(ctx: Context) -> int:
    job = ctx.client.cancel_upgrade(ctx.args.job)
    text = f"job {job.id} {'cancelled' if job.finished else 'will stop within seconds'}"
    ctx.show(text, job.raw)
    return 0


def _promote(ctx: Context) -> int:
    args = ctx.args
    release = ctx.client.promote(args.name, args.version, force=args.force, reason=args.reason)
    ctx.show(views.release_line(args.name, release), release.raw)
    return 0


def _rollback(ctx: Context) -> int:
    release = ctx.client.rollback(ctx.args.name, ctx.args.to)
    ctx.show(views.release_line(ctx.args.name, release), release.raw)
    return 0


def _predict(ctx: Context) -> int:
    """`predict [NAME] IMAGE...`: a first argument that is not a file names the deployment."""
    items: list[str] = ctx.args.items
    name = None
    if len(items) > 1 and not Path(items[0]).is_file():
        name, items = items[0], items[1:]
    images = [_file(item) for item in items]
    result = ctx.client.predict(images, deployment=name)
    ctx.show(views.predictions_lines([p.name for p in images], result), result.raw)
    return 0


def _report(ctx: Context) -> int:
    report = ctx.client.report(ctx.args.name, ctx.args.version)
    ctx.show(views.report_text(report, worst=ctx.args.worst), report)
    return 0


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
    up.set_defaults(run=_upgrade)


def _add_datasets(sub: Any, common: argparse.ArgumentParser) -> None:
    datasets = sub.add_parser("datasets", help="upload or show a dataset")
    actions = datasets.add_subparsers(dest="action", required=True)
    upload = actions.add_parser("upload", parents=[common], help="upload .npz, .zip or .tar.gz")
    upload.add_argument("file")
    upload.add_argument("--name", help="a title (default: the file name)")
    upload.add_argument("--deployment", help="check it holds this deployment's labels")
    upload.add_argument("--resize", metavar="HxW", help="resize images, e.g. 32x32")
    upload.set_defaults(run=_upload)
    show = actions.add_parser("show", parents=[common], help="a dataset's classes and counts")
    show.add_argument("id")
    show.set_defaults(run=_dataset)


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

    def add(name: str, run: Command, help: str, *positional: str) -> argparse.ArgumentParser:
        command = sub.add_parser(name, parents=[common], help=help)
        for arg in positional:
            command.add_argument(arg)
        command.set_defaults(run=run)
        return command

    add("deployments", _deployments, "list deployments")
    deploy = add("deploy", _deploy, "create a deployment and register a package", "name")
    deploy.add_argument("package", help="model package (.zip or .pt2)")
    deploy.add_argument("--gate", action="append", metavar="RULE=VALUE", help="a new one's gate")
    add("releases", _releases, "list a deployment's releases", "name")
    _add_datasets(sub, common)
    _add_upgrade(sub, common)
    jobs = add("jobs", _jobs, "list a deployment's upgrade jobs", "name")
    jobs.add_argument("--limit", type=int, default=20)
    watch = add("watch", _watch, "follow a job to its verdict", "job")
    watch.add_argument("--interval", type=float, default=0.5, help="seconds between polls")
    add("cancel", _cancel, "cancel a queued or running job", "job")
    promote = add("promote", _promote, "make a release active", "name")
    promote.add_argument("version", type=int)
    promote.add_argument("--force", action="store_true", help="override a failed gate (admin)")
    promote.add_argument("--reason", help="why; required with --force")
    rollback = add("rollback", _rollback, "back to the previous active release", "name")
    rollback.add_argument("--to", type=int, metavar="VERSION", help="this release instead")
    predict = add("predict", _predict, "classify image files: predict [NAME] IMAGE...")
    predict.add_argument("items", nargs="+", metavar="[NAME] IMAGE")
    report = add("report", _report, "a release's flip report", "name")
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
