"""`worker.pipeline.run_job` called directly, without Celery, on jobs submitted through the API."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import sqlalchemy as sa

from core.models import DatasetRecord, UpgradeJob
from worker.pipeline import WorkerContext, run_job

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.usefixtures("torch_one_thread"),
    # kombu's SQLAlchemy transport (the embedded broker) maps its tables with
    # `lazy="noload"`, which SQLAlchemy 2.1 deprecates; submitting a job enqueues it there.
    pytest.mark.filterwarnings(
        "ignore:The ``noload`` loader strategy is deprecated:sqlalchemy.exc.SADeprecationWarning"
    ),
]


@pytest.fixture
async def live(start_api: Any) -> Any:
    """An app (no worker) serving the old release, with `digits` uploaded."""
    api = await start_api()
    await api.deploy_old()
    api.dataset_id = await api.upload(api.files.digits_npz)
    return api


async def _run(api: Any, job_id: str, worker_id: str = "test-worker") -> str:
    """Run the job in a thread (the app keeps answering), as a worker process would."""
    ctx = WorkerContext(api.settings, api.state.sessions, api.state.store)
    outcome: str = await anyio.to_thread.run_sync(run_job, ctx, job_id, worker_id)
    return outcome


async def test_run_job_trains_a_method_without_bias(live: Any, fast_job: dict[str, Any]) -> None:
    body = {**fast_job, "method": "no_treatment", "bias": None, "epochs": 1}
    job_id = await live.submit_ok(live.dataset_id, **body)

    outcome = await _run(live, job_id)

    job = await live.job(job_id)
    assert outcome == "succeeded" and job["status"] == "succeeded", job["error"]
    assert [c["bias"] for c in job["candidates"]] == [None]
    assert job["candidates"][0]["chosen"] is True
    assert job["gate"] == {"passed": True, "rules": [], "promoted": False}
    statuses = {r["version"]: r["status"] for r in await live.releases()}
    assert statuses == {1: "active", 2: "candidate"}
    assert not live.checkpoints(job_id).exists()
    phases = job["progress"]["phase_seconds"]
    assert set(phases) == {"reference", "candidates", "selecting", "gating"}
    assert all(seconds >= 0 for seconds in phases.values())


async def test_run_job_fails_with_the_error_and_ignores_a_redelivery(
    live: Any, fast_job: dict[str, Any]
) -> None:
    job_id = await live.submit_ok(live.dataset_id, **fast_job)
    with live.state.sessions() as session:
        sha256 = session.get_one(DatasetRecord, live.dataset_id).artifact_sha256
    live.state.store.path(sha256).unlink()  # the decoded dataset vanished from the store

    outcome = await _run(live, job_id)
    again = await _run(live, job_id, "another-worker")

    job = await live.job(job_id)
    assert outcome == "failed" and job["status"] == "failed"
    assert "DatasetError" in job["error"] and sha256 in job["error"]
    assert job["finished_at"] is not None and job["attempts"] == 1
    assert again == "skipped"
    assert [r["version"] for r in await live.releases()] == [1]


async def test_run_job_with_cancel_requested_stops_before_training(
    live: Any, fast_job: dict[str, Any]
) -> None:
    job_id = await live.submit_ok(live.dataset_id, **fast_job)
    with live.state.sessions() as session:  # the cancel lands just as a worker claims the job
        session.execute(
            sa.update(UpgradeJob).where(UpgradeJob.id == job_id).values(cancel_requested=True)
        )
        session.commit()

    outcome = await _run(live, job_id)

    job = await live.job(job_id)
    assert outcome == "cancelled" and job["status"] == "cancelled"
    assert job["release_version"] is None and job["phase"] is None
    assert [r["version"] for r in await live.releases()] == [1]
    assert not live.checkpoints(job_id).exists()
