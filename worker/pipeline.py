"""One upgrade job from start to finish: claim, train, select, evaluate, gate, register.

Plain functions over a `WorkerContext`, testable without Celery; `worker.tasks` only calls
`run_job`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from core import releases
from core.models import (
    DatasetRecord,
    FlipReportKind,
    FlipReportRecord,
    GateDecision,
    JobPhase,
    JobStatus,
    Release,
    ReleaseSource,
    ReleaseStatus,
    UpgradeJob,
    utc_now,
)
from core.settings import Settings
from core.storage import LocalArtifactStore
from mpt.data import load_npz
from mpt.io import ModelPackage, load_package, save_package
from mpt.train import TrainConfig, TrainingStopped
from mpt.upgrade import UpgradeResult, upgrade
from worker.gate import GateResult, evaluate_gate
from worker.heartbeat import Heartbeat, held_by
from worker.progress import JobProgress, LeaseLost

__all__ = ["WorkerContext", "claim_job", "run_job"]

ACTOR = "worker"


@dataclass
class WorkerContext:
    settings: Settings
    sessions: sessionmaker[Session]
    store: LocalArtifactStore

    def checkpoints(self, job_id: str) -> Path:
        return Path(self.settings.artifact_dir) / "checkpoints" / job_id


def claim_job(ctx: WorkerContext, job_id: str, worker_id: str) -> bool:
    """Compare-and-set the job to `running`: queued, or running with a stale heartbeat (its
    worker died and the broker redelivered it). False when another worker holds it."""
    stale = utc_now() - timedelta(seconds=ctx.settings.job_stale_seconds)
    running_elsewhere = sa.and_(
        UpgradeJob.status == JobStatus.RUNNING, UpgradeJob.heartbeat_at < stale
    )
    claim = (
        sa.update(UpgradeJob)
        .where(
            UpgradeJob.id == job_id,
            sa.or_(UpgradeJob.status == JobStatus.QUEUED, running_elsewhere),
        )
        .values(
            status=JobStatus.RUNNING,
            worker_id=worker_id,
            heartbeat_at=utc_now(),
            attempts=UpgradeJob.attempts + 1,
            started_at=sa.func.coalesce(UpgradeJob.started_at, utc_now()),
        )
    )
    with ctx.sessions() as session:
        claimed = cast(sa.CursorResult[Any], session.execute(claim)).rowcount
        session.commit()
    return bool(claimed)


def _finish(ctx: WorkerContext, job_id: str, worker_id: str, status: str, **values: Any) -> str:
    """End the job and drop its checkpoints, unless it has passed to another worker meanwhile
    (then "lost": the row and the checkpoints are the new holder's)."""
    with ctx.sessions() as session:
        result = session.execute(
            sa.update(UpgradeJob)
            .where(held_by(job_id, worker_id))
            .values(status=status, finished_at=utc_now(), heartbeat_at=utc_now(), **values)
        )
        session.commit()
    if cast(sa.CursorResult[Any], result).rowcount == 0:
        return "lost"
    shutil.rmtree(ctx.checkpoints(job_id), ignore_errors=True)
    return status


def run_job(ctx: WorkerContext, job_id: str, worker_id: str) -> str:
    """Run the job if this worker can claim it; returns the job's final status, "skipped" when
    another worker holds it, "lost" when it passed to another worker while running here."""
    if not claim_job(ctx, job_id, worker_id):
        return "skipped"
    interval = ctx.settings.job_heartbeat_seconds
    try:
        with Heartbeat(ctx.sessions, job_id, worker_id, interval) as heartbeat:
            _execute(ctx, job_id, worker_id, heartbeat)
    except LeaseLost:
        return "lost"
    except TrainingStopped:
        return _finish(ctx, job_id, worker_id, JobStatus.CANCELLED, phase=None)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        return _finish(ctx, job_id, worker_id, JobStatus.FAILED, error=error)
    shutil.rmtree(ctx.checkpoints(job_id), ignore_errors=True)
    return JobStatus.SUCCEEDED


@dataclass
class _Inputs:
    job: UpgradeJob
    base: Release
    dataset: DatasetRecord
    policy: dict[str, Any]


def _load_inputs(ctx: WorkerContext, job_id: str) -> _Inputs:
    with ctx.sessions() as session:
        job = session.get_one(UpgradeJob, job_id)
        base = session.get_one(Release, job.base_release_id)
        dataset = session.get_one(DatasetRecord, job.dataset_id)
        deployment_policy = dict(base.deployment.gate_policy)
        session.expunge_all()
    policy = {**deployment_policy, **(job.request.get("gate") or {})}
    return _Inputs(job, base, dataset, policy)


def _reference_key(inputs: _Inputs, config: TrainConfig) -> str:
    request = inputs.job.request
    key = {
        "dataset": inputs.dataset.artifact_sha256,
        "labels": inputs.base.labels,
        "arch": request["arch"],
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "lr": config.lr,
        "seed": config.seed,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _execute(ctx: WorkerContext, job_id: str, worker_id: str, heartbeat: Heartbeat) -> None:
    inputs = _load_inputs(ctx, job_id)
    request = inputs.job.request
    old = load_package(ctx.store.path(inputs.base.artifact_sha256))
    dataset = load_npz(ctx.store.path(inputs.dataset.artifact_sha256))
    config = TrainConfig(
        epochs=request["epochs"],
        batch_size=request["batch_size"],
        lr=request["lr"],
        seed=request["seed"],
    )
    reference_index = ctx.store.root / "references" / f"{_reference_key(inputs, config)}.json"
    reference = _cached_reference(ctx, reference_index)
    biases = request.get("bias")
    stages = (0 if reference else 1) + (len(biases) if biases else 1)
    progress = JobProgress(ctx.sessions, job_id, worker_id, stages, heartbeat=heartbeat)

    def hooks_for(stage: str) -> Any:
        phase = JobPhase.REFERENCE if stage == "reference" else JobPhase.CANDIDATES
        return progress.hooks(stage, phase)

    result = upgrade(
        old,
        dataset,
        method=request["method"],
        biases=biases,
        arch=request["arch"],
        config=config,
        reference=reference,
        max_nfr=inputs.policy.get("max_nfr"),
        hooks_for=hooks_for,
        checkpoint_dir=ctx.checkpoints(job_id),
    )
    if reference is None:
        _remember_reference(ctx, reference_index, result.reference)
    progress.write(force=True, phase=JobPhase.SELECTING, fraction=1.0)
    _record(ctx, job_id, inputs, result, progress)


def _cached_reference(ctx: WorkerContext, index: Path) -> ModelPackage | None:
    if not index.is_file():
        return None
    sha256 = json.loads(index.read_text())["sha256"]
    return load_package(ctx.store.path(sha256)) if ctx.store.exists(sha256) else None


def _store_package(ctx: WorkerContext, package: ModelPackage) -> str:
    with tempfile.TemporaryDirectory(dir=ctx.store.root) as folder:
        path = save_package(Path(folder) / "model.zip", package.model, package.manifest)
        return ctx.store.put_file(path)


def _remember_reference(ctx: WorkerContext, index: Path, package: ModelPackage) -> None:
    sha256 = _store_package(ctx, package)
    index.parent.mkdir(parents=True, exist_ok=True)
    temp = index.with_suffix(".tmp")
    temp.write_text(json.dumps({"sha256": sha256}))
    temp.replace(index)


def _candidates(result: UpgradeResult) -> list[dict[str, Any]]:
    return [
        {
            "bias": c.bias,
            "val_nfr": c.val_nfr,
            "val_error": c.val_error,
            "chosen": c is result.chosen,
        }
        for c in result.candidates
    ]


def _record(
    ctx: WorkerContext, job_id: str, inputs: _Inputs, result: UpgradeResult, progress: JobProgress
) -> None:
    progress.write(force=True, phase=JobPhase.GATING)
    gate = evaluate_gate(inputs.policy, result.report)
    sha256 = _store_package(ctx, result.chosen.package)
    promote = gate.passed and bool(inputs.job.request.get("auto_promote"))
    if progress.cancelled():
        raise TrainingStopped(-1, -1)
    # Written before the session below opens: SQLite allows one writer at a time.
    progress.write(force=True, phase=JobPhase.PROMOTING if promote else JobPhase.GATING)
    with ctx.sessions() as session:
        job = session.get_one(UpgradeJob, job_id, with_for_update=True)
        if job.worker_id != progress.worker_id or job.status != JobStatus.RUNNING:
            raise LeaseLost(f"job {job_id} is no longer held by {progress.worker_id}")
        release = _register(session, inputs, result, gate, sha256, job_id)
        if promote:
            releases.promote(session, release.deployment, release, actor=ACTOR)
        promoted = promote
        progress.close_phase()
        job.status, job.finished_at, job.phase = JobStatus.SUCCEEDED, utc_now(), None
        job.result_release_id = release.id
        job.gate, job.candidates = {**gate.to_dict(), "promoted": promoted}, _candidates(result)
        job.progress = {**progress.state, "fraction": 1.0}
        session.commit()


def _register(
    session: Session,
    inputs: _Inputs,
    result: UpgradeResult,
    gate: GateResult,
    sha256: str,
    job_id: str,
) -> Release:
    deployment = session.get_one(Release, inputs.base.id).deployment
    status = ReleaseStatus.CANDIDATE if gate.passed else ReleaseStatus.REJECTED
    release = releases.add_release(
        session,
        deployment,
        artifact_sha256=sha256,
        artifact_kind="package",
        manifest=result.chosen.package.manifest.to_dict(),
        actor=ACTOR,
        source=ReleaseSource.UPGRADE,
        upgrade_job_id=job_id,
        status=status,
    )
    for kind, report in (
        (FlipReportKind.CANDIDATE, result.report),
        (FlipReportKind.NO_TREATMENT, result.reference_report),
    ):
        session.add(
            FlipReportRecord(
                release_id=release.id,
                baseline_release_id=inputs.base.id,
                kind=kind,
                split="test",
                report=report.to_dict(),
            )
        )
    session.add(
        GateDecision(
            release_id=release.id,
            job_id=job_id,
            passed=gate.passed,
            policy=inputs.policy,
            rules=gate.to_dict()["rules"],
        )
    )
    session.flush()
    return release
