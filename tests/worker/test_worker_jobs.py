"""The job lease (claim, renew, check, finish), stale-job recovery, progress and the heartbeat,
on a real database without Celery."""

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
from core.jobs import JANITOR, recover_stale_jobs
from core.lease import JobCancelled, Lease, LeaseLost
from core.models import (
    AuditEntry,
    DatasetRecord,
    Deployment,
    JobPhase,
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
from worker.pipeline import JobOutcome, WorkerContext, run_job
from worker.progress import JobProgress

STALE_SECONDS = 30.0
PATIENCE = 60.0  # seconds to wait for a background thread: only a broken one takes this long


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

    def lease(self, job_id: str, worker_id: str = "worker-a") -> Lease:
        return Lease(self.sessions, job_id, worker_id)

    def claimed(self, worker_id: str = "worker-a") -> Lease:
        """A new job, claimed by `worker_id`."""
        lease = self.lease(self.add(), worker_id)
        assert lease.claim(STALE_SECONDS)
        return lease

    def set(self, job_id: str, **values: Any) -> None:
        """Change the row behind the worker's back (another worker, the janitor, the API)."""
        with self.sessions() as session:
            session.execute(sa.update(UpgradeJob).where(UpgradeJob.id == job_id).values(**values))
            session.commit()


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


# --- Lease.claim -----------------------------------------------------------------------------


def test_lease_claim_takes_a_queued_job(jobs: Jobs) -> None:
    job_id = jobs.add()

    claimed = jobs.lease(job_id).claim(STALE_SECONDS)

    job = jobs.get(job_id)
    assert claimed is True
    assert job.status == JobStatus.RUNNING and job.worker_id == "worker-a"
    assert job.attempts == 1
    assert job.heartbeat_at is not None and job.started_at is not None


def test_lease_claim_refuses_a_job_running_with_a_fresh_heartbeat(jobs: Jobs) -> None:
    job_id = jobs.claimed("worker-a").job_id

    claimed = jobs.lease(job_id, "worker-b").claim(STALE_SECONDS)

    job = jobs.get(job_id)
    assert claimed is False
    assert job.worker_id == "worker-a" and job.attempts == 1


def test_lease_claim_takes_over_a_job_whose_heartbeat_is_stale(jobs: Jobs) -> None:
    started = _ago(10 * STALE_SECONDS)
    job_id = jobs.add(
        status=JobStatus.RUNNING,
        worker_id="worker-a",
        attempts=1,
        started_at=started,
        heartbeat_at=_ago(2 * STALE_SECONDS),
    )

    claimed = jobs.lease(job_id, "worker-b").claim(STALE_SECONDS)

    job = jobs.get(job_id)
    assert claimed is True
    assert job.worker_id == "worker-b" and job.attempts == 2
    assert job.started_at == started
    assert job.heartbeat_at is not None and job.heartbeat_at > _ago(STALE_SECONDS)


@pytest.mark.parametrize("status", [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED])
def test_lease_claim_refuses_a_finished_job(jobs: Jobs, status: str) -> None:
    job_id = jobs.add(status=status, heartbeat_at=_ago(10 * STALE_SECONDS))

    assert jobs.lease(job_id).claim(STALE_SECONDS) is False
    assert jobs.get(job_id).status == status


def test_run_job_skips_a_job_another_worker_holds(jobs: Jobs) -> None:
    job_id = jobs.claimed("worker-a").job_id

    outcome = run_job(jobs.ctx, job_id, "worker-b")

    job = jobs.get(job_id)
    assert outcome is JobOutcome.SKIPPED
    assert job.status == JobStatus.RUNNING and job.worker_id == "worker-a"


# --- Lease.renew, check and finish ------------------------------------------------------------


def test_lease_renew_writes_the_heartbeat_and_values(jobs: Jobs) -> None:
    lease = jobs.claimed()
    jobs.set(lease.job_id, heartbeat_at=_ago(2 * STALE_SECONDS))

    lease.renew(phase=JobPhase.REFERENCE)

    job = jobs.get(lease.job_id)
    assert job.phase == JobPhase.REFERENCE
    assert job.heartbeat_at is not None and job.heartbeat_at > _ago(STALE_SECONDS)
    assert lease.lost is False


TAKEOVERS = pytest.mark.parametrize(
    "takeover",
    [
        {"worker_id": "worker-b"},
        {"status": JobStatus.QUEUED, "worker_id": None},
        {"status": JobStatus.FAILED},
    ],
    ids=["another-worker", "requeued", "failed-by-janitor"],
)


@TAKEOVERS
def test_lease_renew_raises_lease_lost_and_writes_nothing(
    jobs: Jobs, takeover: dict[str, Any]
) -> None:
    lease = jobs.claimed()
    jobs.set(lease.job_id, **takeover)
    before = jobs.get(lease.job_id).heartbeat_at

    with pytest.raises(LeaseLost, match="worker-a"):
        lease.renew(phase=JobPhase.REFERENCE)

    assert lease.lost is True
    assert jobs.get(lease.job_id).heartbeat_at == before
    assert jobs.get(lease.job_id).phase is None


def test_lease_check_passes_while_held_and_not_cancelled(jobs: Jobs) -> None:
    lease = jobs.claimed()

    lease.check()

    assert lease.lost is False


def test_lease_check_raises_job_cancelled_once_the_flag_is_set(jobs: Jobs) -> None:
    lease = jobs.claimed()
    jobs.set(lease.job_id, cancel_requested=True)

    with pytest.raises(JobCancelled, match=lease.job_id):
        lease.check()

    assert lease.lost is False


@TAKEOVERS
def test_lease_check_raises_lease_lost_once_the_job_is_not_held(
    jobs: Jobs, takeover: dict[str, Any]
) -> None:
    lease = jobs.claimed()
    jobs.set(lease.job_id, cancel_requested=True, **takeover)

    with pytest.raises(LeaseLost, match="worker-a"):
        lease.check()

    assert lease.lost is True


def test_lease_finish_ends_the_job_in_the_callers_transaction(jobs: Jobs) -> None:
    lease = jobs.claimed()

    with jobs.sessions() as session:
        lease.finish(session, JobStatus.FAILED, error="boom")
        assert jobs.get(lease.job_id).status == JobStatus.RUNNING  # not committed yet
        session.commit()

    job = jobs.get(lease.job_id)
    assert job.status == JobStatus.FAILED and job.error == "boom"
    assert job.finished_at is not None
    [entry] = _audit(jobs, "finish_job")
    assert (entry.actor, entry.job_id) == ("worker-a", lease.job_id)
    assert entry.detail == {"status": "failed", "error": "boom"}


def test_lease_finish_refuses_a_job_another_worker_holds(jobs: Jobs) -> None:
    lease = jobs.claimed()
    jobs.set(lease.job_id, worker_id="worker-b")

    with jobs.sessions() as session, pytest.raises(LeaseLost, match="worker-a"):
        lease.finish(session, JobStatus.SUCCEEDED)

    job = jobs.get(lease.job_id)
    assert job.status == JobStatus.RUNNING and job.worker_id == "worker-b"
    assert job.finished_at is None and lease.lost is True


# --- recover_stale_jobs ----------------------------------------------------------------------


def _recover(jobs: Jobs, max_retries: int = 3) -> list[str]:
    with jobs.sessions() as session:
        requeued = recover_stale_jobs(session, STALE_SECONDS, max_retries)
        session.commit()
    return requeued


def _audit(jobs: Jobs, action: str) -> list[AuditEntry]:
    with jobs.sessions() as session:
        return list(session.scalars(sa.select(AuditEntry).where(AuditEntry.action == action)))


def test_recover_stale_jobs_requeues_a_silent_job(jobs: Jobs) -> None:
    job_id = jobs.add(
        status=JobStatus.RUNNING, worker_id="dead", attempts=1, heartbeat_at=_ago(2 * STALE_SECONDS)
    )

    requeued = _recover(jobs)

    job = jobs.get(job_id)
    assert requeued == [job_id]
    assert job.status == JobStatus.QUEUED and job.worker_id is None
    assert job.error is None and job.finished_at is None
    [entry] = _audit(jobs, "requeue_stale_job")
    assert (entry.actor, entry.job_id) == (JANITOR, job_id)
    assert entry.detail == {"attempts": 1, "worker": "dead"}


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


# --- JobProgress: phases, progress, cancel flag ----------------------------------------------


def test_job_progress_writes_progress_and_heartbeat(jobs: Jobs) -> None:
    lease = jobs.claimed()
    progress = JobProgress(lease, stages=2)

    progress.enter(JobPhase.CANDIDATES)
    progress.update(force=True, fraction=0.5, epoch=1)

    job = jobs.get(lease.job_id)
    assert job.phase == JobPhase.CANDIDATES
    assert job.progress == {"fraction": 0.5, "epoch": 1}


def test_job_progress_times_each_phase_it_enters(jobs: Jobs) -> None:
    lease = jobs.claimed()
    progress = JobProgress(lease, stages=1)

    progress.hooks("reference", JobPhase.REFERENCE)
    progress.on_phase("selecting")
    progress.on_phase("evaluating")
    progress.enter(JobPhase.GATING)

    job = jobs.get(lease.job_id)
    assert job.phase == JobPhase.GATING
    assert list(job.progress["phase_seconds"]) == ["reference", "selecting", "evaluating"]
    assert job.progress["stage"] == "reference"


def test_job_progress_raises_lease_lost_once_another_worker_holds_the_job(jobs: Jobs) -> None:
    lease = jobs.claimed()
    progress = JobProgress(lease, stages=1)
    progress.update(force=True, fraction=0.1)
    jobs.set(lease.job_id, worker_id="worker-b")

    with pytest.raises(LeaseLost, match="worker-a"):
        progress.update(force=True, fraction=0.2)

    assert jobs.get(lease.job_id).progress == {"fraction": 0.1}


def test_stage_hooks_stop_training_with_job_cancelled(jobs: Jobs) -> None:
    lease = jobs.claimed()
    hooks = JobProgress(lease, stages=1, interval=0.0).hooks("reference", JobPhase.REFERENCE)
    assert hooks.should_stop() is False
    jobs.set(lease.job_id, cancel_requested=True)

    with pytest.raises(JobCancelled):
        hooks.should_stop()


# --- Heartbeat: the whole job, not only training steps ----------------------------------------


def _wait_for(predicate: Callable[[], bool], what: str) -> None:
    """Wait until `predicate()` holds; a generous limit only catches a thread that hangs."""
    deadline = time.monotonic() + PATIENCE
    while not predicate():
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.01)


def test_heartbeat_refreshes_the_job_while_no_progress_is_written(jobs: Jobs) -> None:
    lease = jobs.claimed()
    jobs.set(lease.job_id, heartbeat_at=_ago(2 * STALE_SECONDS))

    with Heartbeat(lease, interval=0.02) as heartbeat:
        _wait_for(lambda: heartbeat.beats >= 2, "two heartbeats")

    job = jobs.get(lease.job_id)
    assert lease.lost is False
    assert job.heartbeat_at is not None and job.heartbeat_at > _ago(STALE_SECONDS)
    with jobs.sessions() as session:
        assert recover_stale_jobs(session, STALE_SECONDS, max_retries=3) == []


@TAKEOVERS
def test_heartbeat_notices_a_lost_lease_and_progress_stops_the_job(
    jobs: Jobs, takeover: dict[str, Any]
) -> None:
    lease = jobs.claimed()
    progress = JobProgress(lease, stages=1, interval=10 * STALE_SECONDS)
    progress.check()  # reads the row now; the next read is not due for a long time
    jobs.set(lease.job_id, **takeover)
    before = jobs.get(lease.job_id).heartbeat_at

    with Heartbeat(lease, interval=0.02):
        _wait_for(lambda: lease.lost, "the lease lost")
        with pytest.raises(LeaseLost, match="worker-a"):
            progress.check()
        with pytest.raises(LeaseLost, match="worker-a"):
            progress.update(force=True, fraction=0.5)

    assert jobs.get(lease.job_id).heartbeat_at == before


def test_run_job_keeps_the_heartbeat_fresh_through_a_slow_load(
    jobs: Jobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A phase with no training steps (here loading the old model) outlasts several beats."""
    settings = jobs.ctx.settings.model_copy(update={"job_heartbeat_seconds": 0.05})
    ctx = dataclasses.replace(jobs.ctx, settings=settings)
    job_id = jobs.add()

    def slow_load(path: Any) -> Any:
        beats = [jobs.get(job_id).heartbeat_at]
        while len(beats) < 3:  # two heartbeats while the load lasts
            _wait_for(lambda: jobs.get(job_id).heartbeat_at != beats[-1], "a heartbeat")
            beats.append(jobs.get(job_id).heartbeat_at)
        raise ValueError("not a model package")

    monkeypatch.setattr("worker.pipeline.load_package", slow_load)

    outcome = run_job(ctx, job_id, "worker-a")

    assert outcome is JobOutcome.FAILED
    assert jobs.get(job_id).error == "ValueError: not a model package"


def test_run_job_leaves_a_job_that_passed_to_another_worker_alone(
    jobs: Jobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = jobs.add()
    checkpoint = jobs.ctx.store.scratch(job_id) / "reference.pt"

    def taken_over(path: Any) -> Any:
        checkpoint.write_bytes(b"the new holder's checkpoint")
        jobs.set(job_id, worker_id="worker-b", attempts=2)
        raise ValueError("the first worker fails after losing its lease")

    monkeypatch.setattr("worker.pipeline.load_package", taken_over)

    outcome = run_job(jobs.ctx, job_id, "worker-a")

    job = jobs.get(job_id)
    assert outcome is JobOutcome.LOST
    assert job.status == JobStatus.RUNNING and job.worker_id == "worker-b"
    assert job.error is None and job.finished_at is None
    assert checkpoint.read_bytes() == b"the new holder's checkpoint"


def test_run_job_discards_the_scratch_folder_of_a_job_it_ends(
    jobs: Jobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = jobs.add()
    scratch = jobs.ctx.store.scratch(job_id)

    def broken(path: Any) -> Any:
        (scratch / "reference.pt").write_bytes(b"half a run")
        raise ValueError("not a model package")

    monkeypatch.setattr("worker.pipeline.load_package", broken)

    outcome = run_job(jobs.ctx, job_id, "worker-a")

    assert outcome is JobOutcome.FAILED
    assert not scratch.exists()
