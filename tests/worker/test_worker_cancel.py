"""Cooperative cancel of a job that is training on a real worker (Redis, PostgreSQL)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.postgres]

LONG_JOB = {"method": "mpt_kl", "arch": "small_cnn", "epochs": 500, "bias": 1.0}


async def test_worker_cancel_mid_training_ends_cancelled_without_a_release(
    start_api: Any, start_worker: Any, production: dict[str, Any]
) -> None:
    api = await start_api(**production)
    start_worker(api)
    await api.deploy_old()
    dataset_id = await api.upload(api.files.digits_npz)
    job_id = await api.submit_ok(dataset_id, **LONG_JOB, auto_promote=True)
    running = await api.wait_job(
        job_id, lambda job: job["status"] != "queued" and "step" in job["progress"], timeout=60
    )
    assert running["status"] == "running", running
    assert running["phase"] == "reference" and running["started_at"] is not None
    progress = running["progress"]
    assert {"fraction", "epoch", "epochs", "step", "steps", "loss"} <= progress.keys()
    assert 0.0 < progress["fraction"] < 1.0 and progress["epochs"] == LONG_JOB["epochs"]

    response = await api.client.post(f"/v1/upgrades/{job_id}/cancel")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "running"  # it stops between two steps, not here
    job = await api.wait_job(job_id, timeout=120)  # 500 epochs would take far longer

    assert job["status"] == "cancelled", (job, api.log_tails())
    assert job["progress"]["fraction"] < 1.0 and job["progress"]["epoch"] < LONG_JOB["epochs"]
    assert job["phase"] is None and job["finished_at"] is not None
    assert job["release_version"] is None and job["error"] is None
    assert [r["version"] for r in await api.releases()] == [1]
    assert await api.active_version() == 1
    # the worker discards the job's scratch folder just after it records the end
    for _ in range(300):
        if not api.checkpoints(job_id).exists():
            break
        await anyio.sleep(0.1)
    assert not api.checkpoints(job_id).exists()
