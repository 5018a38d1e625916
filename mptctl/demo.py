"""The demo's story through the REST API, run by `scripts/run.sh` beside the service:

register the old model as release 1, upload the extended dataset, submit an MPT upgrade
with the default bias sweep, follow it, then print the gate's verdict, the flip report
beside the plain retrain, what those numbers say in words (including, plainly, when they
do not show what MPT promises), one prediction and where the dashboard is.

Each step first looks for what an earlier run made (the deployment's active release, the
uploaded dataset, an upgrade job that did not fail), so a second run trains nothing again.

    python -m mptctl.demo --url http://127.0.0.1:8000 --dir var/demo    # key in MPT_KEY
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mptctl import views
from mptctl.client import Client, UpgradeRequest
from mptctl.errors import ApiError
from mptctl.reports import Proportion, ReleaseReport
from mptctl.resources import Job
from mptctl.watch import watch_job

__all__ = ["DemoFiles", "main", "run", "story"]

DEPLOYMENT = "default"
GATE: dict[str, float | str] = {"max_nfr": 0.1, "error_budget": 0.02}


@dataclass(frozen=True)
class DemoFiles:
    """What `scripts/run.sh` prepares in the demo folder, and what the demo remembers."""

    folder: Path

    @property
    def package(self) -> Path:
        return self.folder / "v1.zip"  # the old model, trained on the first 50 classes

    @property
    def dataset(self) -> Path:
        return self.folder / "glyphs.npz"  # all 100 classes

    @property
    def sample(self) -> Path:
        return self.folder / "sample.png"  # a test image of a new class

    @property
    def sample_label(self) -> Path:
        return self.folder / "sample.label"

    @property
    def dataset_id(self) -> Path:
        return self.folder / "dataset-id"


def say(text: str) -> None:
    print(f"demo: {text}", flush=True)


def _wait_until_up(client: Client, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not client.is_up():
        if time.monotonic() > deadline:
            raise ApiError(f"the service at {client.base_url} did not start in {timeout:.0f} s")
        time.sleep(0.5)


def _register_v1(client: Client, files: DemoFiles) -> None:
    try:
        deployment = client.deployment(DEPLOYMENT)
    except ApiError as exc:
        if exc.status != 404:
            raise
        deployment = client.create_deployment(DEPLOYMENT, GATE)
        say(f"created deployment {DEPLOYMENT!r} with the gate {GATE}")
    if deployment.active_release is not None:
        say(f"{DEPLOYMENT!r} serves v{deployment.active_release.version} already")
        return
    release = client.register_release(DEPLOYMENT, files.package, activate=True)
    say(f"registered {files.package}: {views.release_line(DEPLOYMENT, release)}")


def _dataset_id(client: Client, files: DemoFiles) -> str:
    if files.dataset_id.is_file():
        known = files.dataset_id.read_text().strip()
        try:
            return client.dataset(known).id
        except ApiError as exc:
            if exc.status != 404:
                raise
    say(f"uploading {files.dataset}")
    dataset = client.upload_dataset(files.dataset, name="glyphs", deployment=DEPLOYMENT)
    files.dataset_id.write_text(dataset.id + "\n")
    say(views.dataset_line(dataset))
    return dataset.id


def _job(client: Client, dataset_id: str, epochs: int, batch_size: int | None) -> Job:
    """The newest upgrade of the deployment that did not fail, or a new one."""
    for job in client.upgrades(DEPLOYMENT):
        if job.status not in ("failed", "cancelled"):
            say(f"following job {job.id} ({job.status}) of an earlier run")
            return job
    request = UpgradeRequest(
        dataset_id, method="mpt_kl", epochs=epochs, batch_size=batch_size, auto_promote=True
    )
    job = client.submit_upgrade(DEPLOYMENT, request)
    batches = "" if batch_size is None else f" of batches of {batch_size}"
    say(f"submitted job {job.id}: mpt_kl, {epochs} epochs{batches}, the plain retrain and "
        "one candidate per bias of the default sweep")  # fmt: skip
    return job


def _value(p: Proportion | None) -> float | None:
    return None if p is None else p["value"]


def story(report: ReleaseReport, similar: float = float(GATE["error_budget"])) -> list[str]:
    """The headline numbers in words: how good the old model is, then the upgrade's negative
    flips and error beside the plain retrain's, and whether they show what MPT promises
    (fewer flips than a plain retrain at an error at most `similar` higher), said plainly
    either way."""
    reports = report["reports"]
    mpt = reports["candidate"]["report"]
    old_error = _value(mpt["error_rates"]["old_model"]["old"])
    lines = [] if old_error is None else [
        f"v1 misclassifies {old_error:.1%} of the test images of its {mpt['num_old']} classes"
    ]  # fmt: skip
    plain = reports["no_treatment"]["report"] if "no_treatment" in reports else None
    if plain is None:
        return lines
    nfr, plain_nfr = _value(mpt["nfr"]["old"]), _value(plain["nfr"]["old"])
    error = _value(mpt["error_rates"]["new_model"]["all"])
    plain_error = _value(plain["error_rates"]["new_model"]["all"])
    if nfr is None or plain_nfr is None or error is None or plain_error is None:
        return lines
    fewer = f" ({plain_nfr / nfr:.1f}x fewer)" if 0 < nfr < plain_nfr else ""
    lines.append(
        f"of the old-class test images v1 got right, MPT's v{report['version']} gets "
        f"{nfr:.1%} wrong, the plain retrain {plain_nfr:.1%}{fewer}; error on all "
        f"{mpt['num_classes']} classes {error:.1%} against {plain_error:.1%}"
    )
    points = 100 * (error - plain_error)
    if nfr < plain_nfr and points <= 100 * similar:
        how = "similar" if points > -100 * similar else f"{-points:.1f} points less"
        lines.append(f"as MPT promises: fewer negative flips than a plain retrain, at {how} error")
    elif nfr >= plain_nfr:
        lines.append(
            "at this small scale MPT did not keep its promise: it flipped no fewer old-class "
            "images than the plain retrain"
        )
    else:
        lines.append(
            f"at this small scale MPT did not keep its promise: fewer flips, but at {points:.1f} "
            "points more error than the plain retrain"
        )
    return lines


def _predict(client: Client, files: DemoFiles, timeout: float = 10) -> None:
    expected = files.sample_label.read_text().strip() if files.sample_label.is_file() else "?"
    active = client.deployment(DEPLOYMENT).active_release
    result = client.predict([files.sample])  # POST /predict: the default deployment
    deadline = time.monotonic() + timeout
    # The API process loads a release the worker promoted at its next poll of the database.
    while active and result.release != active.version and time.monotonic() < deadline:
        time.sleep(0.25)
        result = client.predict([files.sample])
    top = result.predictions[0]
    say(f"POST /predict {files.sample} (a test image of {expected!r}, a new class): "
        f"{top.label!r} ({top.score:.2f}) from release v{result.release}")  # fmt: skip


def run(
    client: Client,
    files: DemoFiles,
    *,
    epochs: int,
    key_hint: str,
    quiet: bool,
    batch_size: int | None = None,
) -> int:
    """The whole story; 0 once the gate has decided (passed or not). `batch_size` None
    leaves it to the service."""
    _wait_until_up(client)
    _register_v1(client, files)
    job = _job(client, _dataset_id(client, files), epochs, batch_size)
    job = watch_job(client, job.id, quiet=quiet, interval=1.0)
    say(views.verdict(job))
    if job.release_version is None:
        return 1
    report = client.report(DEPLOYMENT, job.release_version)
    print(views.report_text(report), flush=True)
    for line in story(report):
        say(line)
    _predict(client, files)
    say(f"dashboard: {client.base_url}/dashboard (log in with the admin key: {key_hint})")
    say(f"try: MPT_KEY=... mptctl report {DEPLOYMENT} {job.release_version}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mptctl.demo", description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--dir", type=Path, default=Path("var/demo"), help="the demo's files")
    parser.add_argument("--epochs", type=int, default=8, help="of every run of the upgrade")
    parser.add_argument(
        "--batch-size", type=int, default=64, help="of every run of the upgrade (default 64)"
    )
    parser.add_argument("--key-hint", default="MPT_KEY", help="where the user finds the key")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        with Client(args.url, os.environ.get("MPT_KEY"), timeout=300) as client:
            return run(
                client, DemoFiles(args.dir), epochs=args.epochs, key_hint=args.key_hint,
                quiet=args.quiet, batch_size=args.batch_size,
            )  # fmt: skip
    except ApiError as exc:
        print(f"demo: stopped: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
