"""What each `mptctl` command does, given the client and its parsed arguments; the exit
codes they mean (docs/client.md)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from mptctl import views
from mptctl.client import Client, UpgradeRequest
from mptctl.errors import ApiError
from mptctl.resources import Job
from mptctl.watch import watch_job

__all__ = ["EXIT", "Command", "Context", "UsageError", "follow"]

EXIT = {"ok": 0, "usage": 2, "refused": 3, "unavailable": 4, "gate_failed": 5, "job_failed": 6}


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


def deployments(ctx: Context) -> int:
    found = ctx.client.deployments()
    ctx.show(views.deployments_table(found), [d.raw for d in found])
    return 0


def deploy(ctx: Context) -> int:
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


def releases(ctx: Context) -> int:
    found = ctx.client.releases(ctx.args.name)
    ctx.show(views.releases_table(found), [r.raw for r in found])
    return 0


def upload(ctx: Context) -> int:
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


def dataset(ctx: Context) -> int:
    dataset = ctx.client.dataset(ctx.args.id)
    ctx.show(views.dataset_line(dataset), dataset.raw)
    return 0


def upgrade(ctx: Context) -> int:
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
        return follow(ctx, job.id)
    ctx.show(f"job {job.id} {job.status}", job.raw)
    return 0


def jobs(ctx: Context) -> int:
    found = ctx.client.upgrades(ctx.args.name, limit=ctx.args.limit)
    ctx.show(views.jobs_table(found), [j.raw for j in found])
    return 0


def _exit_of(job: Job) -> int:
    if job.status != "succeeded":
        return EXIT["job_failed"]
    return EXIT["gate_failed"] if job.gate_passed is False else 0


def follow(ctx: Context, job_id: str) -> int:
    job = watch_job(ctx.client, job_id, quiet=ctx.args.quiet, interval=ctx.args.interval)
    ctx.show(views.verdict(job), job.raw)
    code = _exit_of(job)
    if code:
        print(f"mptctl: {views.verdict(job)}", file=sys.stderr)
    return code


def watch(ctx: Context) -> int:
    return follow(ctx, ctx.args.job)


def cancel(ctx: Context) -> int:
    job = ctx.client.cancel_upgrade(ctx.args.job)
    text = f"job {job.id} {'cancelled' if job.finished else 'will stop within seconds'}"
    ctx.show(text, job.raw)
    return 0


def promote(ctx: Context) -> int:
    args = ctx.args
    release = ctx.client.promote(args.name, args.version, force=args.force, reason=args.reason)
    ctx.show(views.release_line(args.name, release), release.raw)
    return 0


def rollback(ctx: Context) -> int:
    release = ctx.client.rollback(ctx.args.name, ctx.args.to)
    ctx.show(views.release_line(ctx.args.name, release), release.raw)
    return 0


def predict(ctx: Context) -> int:
    """`predict [NAME] IMAGE...`: a first argument that is not a file names the deployment."""
    items: list[str] = ctx.args.items
    name = None
    if len(items) > 1 and not Path(items[0]).is_file():
        name, items = items[0], items[1:]
    images = [_file(item) for item in items]
    result = ctx.client.predict(images, deployment=name)
    ctx.show(views.predictions_lines([p.name for p in images], result), result.raw)
    return 0


def report(ctx: Context) -> int:
    report = ctx.client.report(ctx.args.name, ctx.args.version)
    ctx.show(views.report_text(report, worst=ctx.args.worst), report)
    return 0
