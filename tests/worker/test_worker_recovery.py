"""Crash safety: a worker SIGKILLed mid-training, a new worker, and the job resumed."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from mpt.errors import MPTError
from mpt.train.checkpoints import load_checkpoint

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.postgres]

EPOCHS = 40
JOB = {"method": "mpt_kl", "arch": "small_cnn", "epochs": EPOCHS, "bias": 1.0}


def _read(path: Path) -> dict[str, Any] | None:
    """The checkpoint at `path`, or None when there is none (yet, or any more)."""
    try:
        return load_checkpoint(path)
    except (MPTError, OSError):
        return None


async def _checkpoint_at_least(api: Any, path: Path, epoch: int) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while (state := _read(path)) is None or state["epoch"] < epoch:
        if time.monotonic() > deadline:
            pytest.fail(f"no checkpoint of epoch {epoch} at {path}\n{api.log_tails()}")
        await anyio.sleep(0.05)
    return state


async def test_worker_killed_mid_training_resumes_from_its_checkpoint(
    start_api: Any, start_worker: Any, production: dict[str, Any]
) -> None:
    api = await start_api(**production, job_heartbeat_seconds=1.0, job_stale_seconds=4.0)
    first = start_worker(api)
    await api.deploy_old()
    dataset_id = await api.upload(api.files.digits_npz)
    job_id = await api.submit_ok(dataset_id, **JOB, gate={"max_nfr": 1.0}, auto_promote=True)
    reference = api.checkpoints(job_id) / "reference.pt"
    await _checkpoint_at_least(api, reference, 1)

    first.kill()  # SIGKILL to the worker and its pool child
    first.process.wait(10)
    killed_at = _read(reference)
    assert killed_at is not None and killed_at["epoch"] < EPOCHS - 1, "killed too late"
    assert (await api.job(job_id))["status"] == "running"
    second = start_worker(api)

    seen: list[dict[str, Any]] = []  # the reference checkpoint as the resumed job rewrites it
    deadline = time.monotonic() + 150
    while (job := await api.job(job_id))["status"] not in ("succeeded", "failed", "cancelled"):
        state = _read(reference)
        if state is not None and (not seen or state["epoch"] != seen[-1]["epoch"]):
            seen.append(state)
        assert time.monotonic() < deadline, f"job never finished: {job}\n{api.log_tails()}"
        await anyio.sleep(0.05)

    assert job["status"] == "succeeded", (job["error"], api.log_tails())
    assert job["attempts"] == 2
    assert job["release_version"] == 2
    upgrades = [r for r in api.release_rows() if r.upgrade_job_id == job_id]
    assert [r.version for r in upgrades] == [2]
    assert [r.version for r in api.release_rows()] == [1, 2]
    # The resumed run went on from the checkpoint: the epochs trained before the kill keep
    # their original stats (wall times included) and no epoch before them was written again.
    assert seen, "never saw the resumed reference checkpoint"
    assert seen[-1]["epoch"] == EPOCHS - 1
    done = len(killed_at["stats"])
    for state in seen:
        assert state["epoch"] >= killed_at["epoch"]
        assert state["stats"][:done] == killed_at["stats"]
    assert second.log.read_text().count("succeeded in") == 1
    assert "succeeded in" not in first.log.read_text()
    assert not api.checkpoints(job_id).exists()
