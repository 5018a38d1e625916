"""`mptctl` as a user runs it, against a real server: output, exit codes, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

from mptctl.cli import EXIT
from mptctl.resources import Job, Progress
from mptctl.watch import describe
from tests.mptctl.conftest import Service
from tests.processes import mptctl, unused_port


def test_mptctl_deployments_prints_a_table_and_json(service: Service) -> None:
    listed = mptctl(service.url, service.key, "deployments")
    as_json = mptctl(service.url, service.key, "deployments", "--json")
    assert listed.returncode == as_json.returncode == 0
    assert listed.stdout.splitlines()[0].split() == ["name", "active", "labels", "gate"]
    assert isinstance(json.loads(as_json.stdout), list)


def test_mptctl_upload_prints_the_dataset(service: Service, digits_npz: Path) -> None:
    done = mptctl(service.url, service.key, "datasets", "upload", str(digits_npz), "--json")
    assert done.returncode == 0, done.stderr
    dataset = json.loads(done.stdout)
    assert dataset["classes"] == ["0", "1", "2"]
    assert "upload digits-3.npz" in done.stderr  # the progress bar
    shown = mptctl(service.url, service.key, "datasets", "show", dataset["id"])
    assert shown.stdout.startswith(f"dataset {dataset['id']}: 3 classes;")


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def test_mptctl_unknown_deployment_exits_3_with_one_line(service: Service) -> None:
    done = mptctl(service.url, service.key, "releases", "nowhere")
    assert done.returncode == EXIT["refused"] == 3
    assert done.stdout == ""
    line = _one_line(done.stderr)
    assert line.startswith("mptctl releases: 404") and "nowhere" in line


def test_mptctl_bad_key_exits_3(service: Service) -> None:
    done = mptctl(service.url, "not-a-key", "deployments")
    assert done.returncode == EXIT["refused"]
    assert _one_line(done.stderr).startswith("mptctl deployments: 401")


def test_mptctl_server_down_exits_4_with_one_line() -> None:
    url = f"http://127.0.0.1:{unused_port()}"
    done = mptctl(url, "key", "watch", "some-job")
    assert done.returncode == EXIT["unavailable"] == 4
    assert f"no answer from {url}" in _one_line(done.stderr)


def test_mptctl_usage_errors_exit_2(service: Service) -> None:
    missing = mptctl(service.url, service.key, "upgrade", "default")  # no --dataset
    bad_gate = mptctl(service.url, service.key, "deploy", "x", __file__, "--gate", "max_nfr")
    no_image = mptctl(service.url, service.key, "predict", "default", "no-such.png")
    no_package = mptctl(service.url, service.key, "deploy", "x", "no-such.zip")
    codes = {p.returncode for p in (missing, bad_gate, no_image, no_package)}
    assert codes == {EXIT["usage"]}
    assert _one_line(bad_gate.stderr) == "mptctl deploy: --gate expects RULE=VALUE, got 'max_nfr'"
    assert _one_line(no_image.stderr) == "mptctl predict: no such file: no-such.png"


def _job(phase: str | None, status: str = "running", **progress: object) -> Job:
    raw = {"progress": {"fraction": 0.5, **progress}}
    return Job(
        "j", "default", status, phase, Progress.from_json(raw["progress"]), None, None, None,
        {}, "2026-01-01T00:00:00", None, raw,
    )  # fmt: skip


def test_watch_describe_names_phase_stage_and_epoch() -> None:
    training = _job("candidates", stage="candidate:0.25", epoch=3, epochs=8)
    assert describe(training) == "candidates · candidate:0.25 · epoch 3/8"
    assert describe(_job("gating", stage="candidate:0.25", epoch=8, epochs=8)) == "gating"
    assert describe(_job(None, status="queued")) == "queued"
    assert describe(_job(None, status="succeeded")) == "succeeded"
