"""The whole story through `mptctl`, against `mpt-service serve` with its embedded worker:
deploy, upload, upgrade, watch, report, promote, predict, rollback; then a release that fails
its gate (`watch` exits 5) and the refusals that follow from it, and a cancelled job (exits
6). Then the demo of
`scripts/run.sh` (`mptctl.demo`), twice: the second run makes nothing again."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from mptctl import Client
from mptctl.cli import EXIT
from mptctl.demo import DemoFiles, run
from tests.processes import mptctl, serving
from tests.worker.conftest import FAST_JOB, Files

pytestmark = pytest.mark.slow

ADMIN_TOKEN = "mptctl-story-admin-token"
NAME = "shop"


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serving(tmp_path_factory.mktemp("story"), {"MPT_ADMIN_TOKEN": ADMIN_TOKEN}) as url:
        yield url


def _ok(url: str, *args: str) -> str:
    done = mptctl(url, ADMIN_TOKEN, *args)
    assert done.returncode == 0, (args, done.stderr)
    return done.stdout


def _json(url: str, *args: str) -> Any:
    return json.loads(_ok(url, *args, "--json"))


def _upgrade_args(dataset_id: str, *gate: str) -> list[str]:
    job = FAST_JOB
    args = ["upgrade", NAME, "--dataset", dataset_id, "--method", job["method"]]
    args += ["--arch", job["arch"], "--epochs", str(job["epochs"]), "--bias", str(job["bias"])]
    return args + [arg for rule in gate for arg in ("--gate", rule)]


def _new_class_image(files: Files, path: Path) -> Path:
    """A test image of class 7, which only the upgrade knows."""
    test = files.digits.splits["test"]
    Image.fromarray(test.x[test.y == 7][0, 0].numpy()).save(path)  # (H, W) grayscale
    return path


def test_mptctl_tells_the_whole_story(url: str, tmp_path: Path, files: Files) -> None:
    deployed = _ok(url, "deploy", NAME, str(files.old_package), "--gate", "max_nfr=1")
    assert deployed.strip() == f"{NAME} v1: active (5 labels)"
    dataset = _json(url, "datasets", "upload", str(files.digits_npz))
    job = _json(url, *_upgrade_args(dataset["id"]))
    assert job["status"] == "queued"

    watched = mptctl(url, ADMIN_TOKEN, "watch", job["id"], "--interval", "0.2")
    assert watched.returncode == 0, watched.stderr
    assert f"{NAME} v2 passed the gate" in watched.stdout
    assert "succeeded" in watched.stderr and "100%" in watched.stderr  # the bar's end

    table = _ok(url, "report", NAME, "2")
    assert "plain retrain" in table and "NFR, old-class images" in table
    assert "gate: PASSED" in table and "max_nfr" in table
    with Client(url, ADMIN_TOKEN) as api:
        assert _json(url, "report", NAME, "2") == api.report(NAME, 2)

    assert _ok(url, "promote", NAME, "2").strip() == f"{NAME} v2: active (10 labels)"
    predicted = _ok(url, "predict", NAME, str(_new_class_image(files, tmp_path / "seven.png")))
    assert predicted.splitlines()[0] == "release v2"
    assert predicted.splitlines()[1].startswith("seven.png: ")

    assert _ok(url, "rollback", NAME).strip() == f"{NAME} v1: active (5 labels)"
    statuses = {r["version"]: r["status"] for r in _json(url, "releases", NAME)}
    assert statuses == {1: "active", 2: "retired"}
    _check_a_cancelled_job(url, dataset["id"])
    _check_a_failed_gate(url, dataset["id"])


def _check_a_failed_gate(url: str, dataset_id: str) -> None:
    submitted = _json(url, *_upgrade_args(dataset_id, "min_accuracy=1"))
    failed = mptctl(url, ADMIN_TOKEN, "watch", submitted["id"], "--quiet")
    assert failed.returncode == EXIT["gate_failed"] == 5
    assert f"{NAME} v3 failed the gate (min_accuracy" in failed.stdout
    assert failed.stderr.startswith("mptctl: job ") and failed.stderr.count("\n") == 1

    jobs = _json(url, "jobs", NAME)
    assert jobs[0]["id"] == submitted["id"]
    no_reason = mptctl(url, ADMIN_TOKEN, "promote", NAME, "3", "--force")
    finished = mptctl(url, ADMIN_TOKEN, "cancel", submitted["id"])
    assert no_reason.returncode == finished.returncode == EXIT["refused"]
    assert "reason" in no_reason.stderr and "already succeeded" in finished.stderr
    forced = _ok(url, "promote", NAME, "3", "--force", "--reason", "accepted by the test")
    assert forced.strip() == f"{NAME} v3: active (10 labels)"


def _check_a_cancelled_job(url: str, dataset_id: str) -> None:
    long_job = [*_upgrade_args(dataset_id), "--epochs", "500"]  # the last --epochs counts
    submitted = _json(url, *long_job)
    assert _ok(url, "cancel", submitted["id"]).startswith(f"job {submitted['id']} ")
    ended = mptctl(url, ADMIN_TOKEN, "watch", submitted["id"], "--quiet")
    assert ended.returncode == EXIT["job_failed"] == 6
    assert ended.stdout.strip() == f"job {submitted['id']} cancelled"
    assert ended.stderr == f"mptctl: job {submitted['id']} cancelled\n"


def _demo_files(files: Files, folder: Path) -> DemoFiles:
    """What `scripts/run.sh` prepares, from the digits files (old model on 5 classes)."""
    demo = DemoFiles(folder)
    shutil.copy(files.old_package, demo.package)
    shutil.copy(files.digits_npz, demo.dataset)
    _new_class_image(files, demo.sample)
    demo.sample_label.write_text("7\n")
    return demo


def test_demo_second_run_reuses_the_first(
    url: str, tmp_path: Path, files: Files, capsys: pytest.CaptureFixture[str]
) -> None:
    demo = _demo_files(files, tmp_path)
    with Client(url, ADMIN_TOKEN) as api:
        assert run(api, demo, epochs=1, key_hint="the test", quiet=True) == 0
        first = capsys.readouterr().out
        assert run(api, demo, epochs=1, key_hint="the test", quiet=True) == 0
        second = capsys.readouterr().out
        jobs = api.upgrades("default")
    assert "registered" in first and "uploading" in first and "submitted job" in first
    assert "gate: " in first and "plain retrain" in first
    assert "POST /predict" in first and f"{url}/dashboard" in first
    assert "registered" not in second and "uploading" not in second
    assert f"following job {jobs[0].id} (succeeded)" in second
    assert len(jobs) == 1
