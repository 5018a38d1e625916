"""`worker.pipeline.run_job` called directly, without Celery, on jobs submitted through the API."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import sqlalchemy as sa

from core.models import DatasetRecord, UpgradeJob
from worker import pipeline
from worker.pipeline import JobOutcome, WorkerContext, run_job

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


async def _run(api: Any, job_id: str, worker_id: str = "test-worker") -> JobOutcome:
    """Run the job in a thread (the app keeps answering), as a worker process would."""
    ctx = WorkerContext(api.settings, api.state.sessions, api.state.store)
    outcome: JobOutcome = await anyio.to_thread.run_sync(run_job, ctx, job_id, worker_id)
    return outcome


def _cancel(api: Any, job_id: str) -> None:
    with api.state.sessions() as session:
        session.execute(
            sa.update(UpgradeJob).where(UpgradeJob.id == job_id).values(cancel_requested=True)
        )
        session.commit()


async def test_run_job_trains_a_method_without_bias(live: Any, fast_job: dict[str, Any]) -> None:
    body = {**fast_job, "method": "no_treatment", "bias": None, "epochs": 1}
    job_id = await live.submit_ok(live.dataset_id, **body)

    outcome = await _run(live, job_id)

    job = await live.job(job_id)
    assert outcome is JobOutcome.SUCCEEDED and job["status"] == "succeeded", job["error"]
    assert [c["bias"] for c in job["candidates"]] == [None]
    assert job["candidates"][0]["chosen"] is True
    gate = job["gate"]
    assert {k: gate[k] for k in ("passed", "rules", "promoted")} == {
        "passed": True,
        "rules": [],
        "promoted": False,
    }
    assert gate["selection"]["chosen"] == 0 and gate["margin"] is None
    statuses = {r["version"]: r["status"] for r in await live.releases()}
    assert statuses == {1: "active", 2: "candidate"}
    assert not live.checkpoints(job_id).exists()
    phases = job["progress"]["phase_seconds"]
    assert list(phases) == ["reference", "candidates", "selecting", "evaluating", "gating"]
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
    assert outcome is JobOutcome.FAILED and job["status"] == "failed"
    assert "DatasetError" in job["error"] and sha256 in job["error"]
    assert job["finished_at"] is not None and job["attempts"] == 1
    assert again is JobOutcome.SKIPPED
    assert [r["version"] for r in await live.releases()] == [1]


async def test_run_job_with_cancel_requested_stops_before_training(
    live: Any, fast_job: dict[str, Any]
) -> None:
    job_id = await live.submit_ok(live.dataset_id, **fast_job)
    _cancel(live, job_id)  # the cancel lands just as a worker claims the job

    outcome = await _run(live, job_id)

    job = await live.job(job_id)
    assert outcome is JobOutcome.CANCELLED and job["status"] == "cancelled"
    assert "step" not in job["progress"]
    assert job["release_version"] is None and job["phase"] is None
    assert [r["version"] for r in await live.releases()] == [1]
    assert not live.checkpoints(job_id).exists()


async def test_run_job_with_a_cancel_after_training_registers_no_release(
    live: Any, fast_job: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = await live.submit_ok(live.dataset_id, **{**fast_job, "epochs": 1}, auto_promote=True)

    gate = pipeline.evaluate_gate

    def cancel_then_gate(policy: Any, report: Any, context: Any = None) -> Any:
        _cancel(live, job_id)  # the cancel lands while the gate is evaluated
        return gate(policy, report, context)

    monkeypatch.setattr(pipeline, "evaluate_gate", cancel_then_gate)

    outcome = await _run(live, job_id)

    job = await live.job(job_id)
    assert outcome is JobOutcome.CANCELLED and job["status"] == "cancelled"
    assert job["phase"] is None and job["release_version"] is None
    assert [r["version"] for r in await live.releases()] == [1]
    assert await live.active_version() == 1
    assert not live.checkpoints(job_id).exists()
