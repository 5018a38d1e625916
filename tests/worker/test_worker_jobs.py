"""Job claiming, stale-job recovery and the progress lease, on a real database without Celery."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from core import db
from core.jobs import recover_stale_jobs
from core.models import (
    DatasetRecord,
    Deployment,
    JobStatus,
    Release,
    UpgradeJob,
    utc_now,
)
from core.settings import Settings
from core.storage import LocalArtifactStore
from core.tasks import QUEUE, RUN_UPGRADE, make_celery
from service.background import JobJanitor
from worker.heartbeat import Heartbeat
from worker.pipeline import WorkerContext, claim_job, run_job
from worker.progress import JobProgress, LeaseLost

STALE_SECONDS = 30.0


@dataclass
class Jobs:
    """A migrated SQLite database with one deployment, its release and a dataset."""

    ctx: WorkerContext
    deployment_id: int
    release_id: int
    dataset_id: str

    @property
    def sessions(self) -> sessionmaker[Session]:
        return self.ctx.sessions

    def add(self, **values: Any) -> str:
        """A job row with `values` over the defaults (queued, never started)."""
        job = UpgradeJob(
            deployment_id=self.deployment_id,
            dataset_id=self.dataset_id,
            base_release_id=self.release_id,
            request={"epochs": 1},
            **values,
        )
        with self.sessions() as session:
            session.add(job)
            session.commit()
            return job.id

    def get(self, job_id: str) -> UpgradeJob:
        with self.sessions() as session:
            return session.get_one(UpgradeJob, job_id)


def _seed(session: Session) -> tuple[int, int, str]:
    deployment = Deployment(name="default", gate_policy={})
    session.add(deployment)
    session.flush()
    manifest = {"arch": "mlp", "num_classes": 2, "labels": ["0", "1"], "input": {}}
    release = Release(
        deployment_id=deployment.id,
        version=1,
        status="active",
        artifact_sha256="0" * 64,
        artifact_kind="package",
        arch="mlp",
        num_classes=2,
        labels=["0", "1"],
        input_spec={},
        manifest=manifest,
    )
    dataset = DatasetRecord(
        name="d",
        sha256="1" * 64,
        artifact_sha256="2" * 64,
        classes=["0", "1", "2"],
        counts={},
        image_shape=[1, 8, 8],
        format="npz",
        size_bytes=0,
    )
    session.add_all([release, dataset])
    session.flush()
    return deployment.id, release.id, dataset.id


@pytest.fixture
def jobs(tmp_path: Path) -> Iterator[Jobs]:
    settings = Settings(
        _env_file=None,
        var_dir=tmp_path / "var",
        job_heartbeat_seconds=5.0,
        job_stale_seconds=STALE_SECONDS,
    )
    db.migrate(settings.database_url)
    engine = db.make_engine(settings.database_url)
    sessions = db.make_session_factory(engine)
    with sessions() as session:
        ids = _seed(session)
        session.commit()
    ctx = WorkerContext(settings, sessions, LocalArtifactStore(settings.artifact_dir))
    yield Jobs(ctx, *ids)
    engine.dispose()


def _ago(seconds: float) -> Any:
    return utc_now() - timedelta(seconds=seconds)


# --- claim_job -------------------------------------------------------------------------------


def test_claim_job_takes_a_queued_job(jobs: Jobs) -> None:
    job_id = jobs.add()

    claimed = claim_job(jobs.ctx, job_id, "worker-a")

    job = jobs.get(job_id)
    assert claimed is True
    assert job.status == JobStatus.RUNNING and job.worker_id == "worker-a"
    assert job.attempts == 1
    assert job.heartbeat_at is not None and job.started_at is not None


def test_claim_job_refuses_a_job_running_with_a_fresh_heartbeat(jobs: Jobs) -> None:
    job_id = jobs.add()
    assert claim_job(jobs.ctx, job_id, "worker-a")

    claimed = claim_job(jobs.ctx, job_id, "worker-b")

    job = jobs.get(job_id)
    assert claimed is False
    assert job.worker_id == "worker-a" and job.attempts == 1


def test_claim_job_takes_over_a_job_whose_heartbeat_is_stale(jobs: Jobs) -> None:
    started = _ago(10 * STALE_SECONDS)
    job_id = jobs.add(
        status=JobStatus.RUNNING,
        worker_id="worker-a",
        attempts=1,
        started_at=started,
        heartbeat_at=_ago(2 * STALE_SECONDS),
    )

    claimed = claim_job(jobs.ctx, job_id, "worker-b")

    job = jobs.get(job_id)
    assert claimed is True
    assert job.worker_id == "worker-b" and job.attempts == 2
    assert job.started_at == started
    assert job.heartbeat_at is not None and job.heartbeat_at > _ago(STALE_SECONDS)


@pytest.mark.parametrize("status", [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED])
def test_claim_job_refuses_a_finished_job(jobs: Jobs, status: str) -> None:
    job_id = jobs.add(status=status, heartbeat_at=_ago(10 * STALE_SECONDS))

    assert claim_job(jobs.ctx, job_id, "worker-a") is False
    assert jobs.get(job_id).status == status


def test_run_job_skips_a_job_another_worker_holds(jobs: Jobs) -> None:
    job_id = jobs.add()
    assert claim_job(jobs.ctx, job_id, "worker-a")

    outcome = run_job(jobs.ctx, job_id, "worker-b")

    job = jobs.get(job_id)
    assert outcome == "skipped"
    assert job.status == JobStatus.RUNNING and job.worker_id == "worker-a"


# --- recover_stale_jobs ----------------------------------------------------------------------


def _recover(jobs: Jobs, max_retries: int = 3) -> list[str]:
    with jobs.sessions() as session:
        requeued = recover_stale_jobs(session, STALE_SECONDS, max_retries)
        session.commit()
    return requeued


def test_recover_stale_jobs_requeues_a_silent_job(jobs: Jobs) -> None:
    job_id = jobs.add(
        status=JobStatus.RUNNING, worker_id="dead", attempts=1, heartbeat_at=_ago(2 * STALE_SECONDS)
    )

    requeued = _recover(jobs)

    job = jobs.get(job_id)
    assert requeued == [job_id]
    assert job.status == JobStatus.QUEUED and job.worker_id is None
    assert job.error is None and job.finished_at is None


def test_recover_stale_jobs_leaves_live_and_queued_jobs_alone(jobs: Jobs) -> None:
    live = jobs.add(status=JobStatus.RUNNING, worker_id="alive", attempts=1, heartbeat_at=_ago(1))
    queued = jobs.add()

    requeued = _recover(jobs)

    assert requeued == []
    assert jobs.get(live).status == JobStatus.RUNNING and jobs.get(live).worker_id == "alive"
    assert jobs.get(queued).status == JobStatus.QUEUED


def test_recover_stale_jobs_fails_a_job_out_of_retries(jobs: Jobs) -> None:
    job_id = jobs.add(
        status=JobStatus.RUNNING, worker_id="dead", attempts=3, heartbeat_at=_ago(2 * STALE_SECONDS)
    )

    requeued = _recover(jobs, max_retries=2)

    job = jobs.get(job_id)
    assert requeued == []
    assert job.status == JobStatus.FAILED and job.finished_at is not None
    assert job.error and "3 times" in job.error


def test_recover_stale_jobs_allows_exactly_max_retries_redeliveries(jobs: Jobs) -> None:
    """`attempts` counts claims: with 2 retries, the 2nd and 3rd claims are the redeliveries."""
    second = jobs.add(
        status=JobStatus.RUNNING, worker_id="dead", attempts=2, heartbeat_at=_ago(2 * STALE_SECONDS)
    )
    third = jobs.add(
        status=JobStatus.RUNNING, worker_id="dead", attempts=3, heartbeat_at=_ago(2 * STALE_SECONDS)
    )

    requeued = _recover(jobs, max_retries=2)

    assert requeued == [second]
    assert jobs.get(third).status == JobStatus.FAILED


def test_job_janitor_sweep_requeues_and_enqueues_a_stale_job(jobs: Jobs, redis_url: str) -> None:
    stale = jobs.add(
        status=JobStatus.RUNNING, worker_id="dead", attempts=1, heartbeat_at=_ago(2 * STALE_SECONDS)
    )
    settings = Settings(
        _env_file=None,
        var_dir=jobs.ctx.settings.var_dir,
        broker_url=redis_url,
        job_stale_seconds=STALE_SECONDS,
    )
    celery = make_celery(settings)
    try:
        requeued = JobJanitor(settings, jobs.sessions, celery).sweep()
    finally:
        celery.close()

    assert requeued == [stale]
    assert jobs.get(stale).status == JobStatus.QUEUED
    client = redis.Redis.from_url(redis_url)
    try:
        messages = [json.loads(m) for m in client.lrange(QUEUE, 0, -1)]
    finally:
        client.close()
    assert [m["headers"]["task"] for m in messages] == [RUN_UPGRADE]
    assert stale in messages[0]["headers"]["argsrepr"]


# --- JobProgress: heartbeat, lease, cancel flag ----------------------------------------------


def test_job_progress_writes_progress_and_heartbeat(jobs: Jobs) -> None:
    job_id = jobs.add()
    assert claim_job(jobs.ctx, job_id, "worker-a")
    progress = JobProgress(jobs.sessions, job_id, "worker-a", stages=2)

    progress.write(force=True, phase="candidates", fraction=0.5, epoch=1)

    job = jobs.get(job_id)
    assert job.phase == "candidates"
    assert job.progress == {"fraction": 0.5, "epoch": 1}


def test_job_progress_raises_lease_lost_once_another_worker_holds_the_job(jobs: Jobs) -> None:
    job_id = jobs.add()
    assert claim_job(jobs.ctx, job_id, "worker-a")
    progress = JobProgress(jobs.sessions, job_id, "worker-a", stages=1)
    progress.write(force=True, fraction=0.1)
    with jobs.sessions() as session:
        session.execute(
            sa.update(UpgradeJob).where(UpgradeJob.id == job_id).values(worker_id="worker-b")
        )
        session.commit()

    with pytest.raises(LeaseLost, match="worker-a"):
        progress.write(force=True, fraction=0.2)

    assert jobs.get(job_id).progress == {"fraction": 0.1}


def test_job_progress_reads_the_cancel_flag(jobs: Jobs) -> None:
    job_id = jobs.add()
    assert claim_job(jobs.ctx, job_id, "worker-a")
    progress = JobProgress(jobs.sessions, job_id, "worker-a", stages=1, interval=0.0)
    assert progress.cancelled() is False
    with jobs.sessions() as session:
        session.execute(
            sa.update(UpgradeJob).where(UpgradeJob.id == job_id).values(cancel_requested=True)
        )
        session.commit()

    assert progress.cancelled() is True


# --- Heartbeat: the whole job, not only training steps ----------------------------------------


def _wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _reassign(jobs: Jobs, job_id: str, **values: Any) -> None:
    with jobs.sessions() as session:
        session.execute(sa.update(UpgradeJob).where(UpgradeJob.id == job_id).values(**values))
        session.commit()


def test_heartbeat_refreshes_the_job_while_no_progress_is_written(jobs: Jobs) -> None:
    job_id = jobs.add()
    assert claim_job(jobs.ctx, job_id, "worker-a")
    _reassign(jobs, job_id, heartbeat_at=_ago(2 * STALE_SECONDS))

    with Heartbeat(jobs.sessions, job_id, "worker-a", interval=0.02) as heartbeat:
        _wait_for(lambda: heartbeat.beats >= 2)

    job = jobs.get(job_id)
    assert heartbeat.lost is False
    assert job.heartbeat_at is not None and job.heartbeat_at > _ago(STALE_SECONDS)
    with jobs.sessions() as session:
        assert recover_stale_jobs(session, STALE_SECONDS, max_retries=3) == []


@pytest.mark.parametrize(
    "takeover",
    [
        {"worker_id": "worker-b"},
        {"status": JobStatus.QUEUED, "worker_id": None},
        {"status": JobStatus.FAILED},
    ],
    ids=["another-worker", "requeued", "failed-by-janitor"],
)
def test_heartbeat_notices_a_lost_lease_and_progress_stops_the_job(
    jobs: Jobs, takeover: dict[str, Any]
) -> None:
    job_id = jobs.add()
    assert claim_job(jobs.ctx, job_id, "worker-a")
    _reassign(jobs, job_id, **takeover)
    before = jobs.get(job_id).heartbeat_at

    with Heartbeat(jobs.sessions, job_id, "worker-a", interval=0.02) as heartbeat:
        _wait_for(lambda: heartbeat.lost)
        progress = JobProgress(jobs.sessions, job_id, "worker-a", stages=1, heartbeat=heartbeat)
        with pytest.raises(LeaseLost, match="worker-a"):
            progress.cancelled()
        with pytest.raises(LeaseLost, match="worker-a"):
            progress.write(force=True, fraction=0.5)

    assert jobs.get(job_id).heartbeat_at == before


def test_run_job_keeps_the_heartbeat_fresh_through_a_slow_load(
    jobs: Jobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A phase with no training steps (here loading the old model) outlasts the stale limit."""
    settings = jobs.ctx.settings.model_copy(update={"job_heartbeat_seconds": 0.05})
    ctx = dataclasses.replace(jobs.ctx, settings=settings)
    job_id = jobs.add()
    seen: list[Any] = []

    def slow_load(path: Any) -> Any:
        for _ in range(6):
            time.sleep(0.05)
            seen.append(jobs.get(job_id).heartbeat_at)
        raise ValueError("not a model package")

    monkeypatch.setattr("worker.pipeline.load_package", slow_load)

    outcome = run_job(ctx, job_id, "worker-a")

    assert outcome == JobStatus.FAILED
    assert jobs.get(job_id).error == "ValueError: not a model package"
    assert len(set(seen)) >= 3, seen


def test_run_job_leaves_a_job_that_passed_to_another_worker_alone(
    jobs: Jobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = jobs.add()
    checkpoints = jobs.ctx.checkpoints(job_id)

    def taken_over(path: Any) -> Any:
        checkpoints.mkdir(parents=True)
        _reassign(jobs, job_id, worker_id="worker-b", attempts=2)
        raise ValueError("the first worker fails after losing its lease")

    monkeypatch.setattr("worker.pipeline.load_package", taken_over)

    outcome = run_job(jobs.ctx, job_id, "worker-a")

    job = jobs.get(job_id)
    assert outcome == "lost"
    assert job.status == JobStatus.RUNNING and job.worker_id == "worker-b"
    assert job.error is None and job.finished_at is None
    assert checkpoints.is_dir()
