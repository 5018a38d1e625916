"""One upgrade job from start to finish: claim, train, select, evaluate, gate, register.

Plain functions over a `WorkerContext`, testable without Celery; `worker.tasks` only calls
`run_job`.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from core import lineage, releases, shadows
from core.lease import JobCancelled, Lease, LeaseLost
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
)
from core.settings import Settings
from core.storage import ArtifactStore
from mpt.biases import BiasSweep
from mpt.data import load_npz
from mpt.gate import GateResult, evaluate_gate
from mpt.io import ModelPackage, check_outputs, load_package, save_package
from mpt.metrics import FlipReport
from mpt.train import TrainConfig
from mpt.upgrade import UpgradeResult, planned_runs, upgrade
from worker.heartbeat import Heartbeat
from worker.progress import JobProgress

__all__ = ["JobOutcome", "WorkerContext", "run_job"]

ACTOR = "worker"
VAL_FRACTION = 0.1  # of each class's training images, held out to choose the candidate


class JobOutcome(StrEnum):
    """What `run_job` did: the job's final status, or why this worker left the job alone."""

    SUCCEEDED = JobStatus.SUCCEEDED.value
    FAILED = JobStatus.FAILED.value
    CANCELLED = JobStatus.CANCELLED.value
    SKIPPED = "skipped"  # not claimed: a live worker holds the job, or it is finished
    LOST = "lost"  # it passed to another worker meanwhile: its row and scratch are theirs


@dataclass
class WorkerContext:
    settings: Settings
    sessions: sessionmaker[Session]
    store: ArtifactStore

    def checkpoints(self, job_id: str) -> Path:
        """The job's scratch folder: its checkpoints, and temporary files beside them."""
        return self.store.scratch(job_id)


def run_job(ctx: WorkerContext, job_id: str, worker_id: str) -> JobOutcome:
    """Run the job if this worker can claim it, and end it unless it is lost meanwhile."""
    lease = Lease(ctx.sessions, job_id, worker_id)
    if not lease.claim(ctx.settings.job_stale_seconds):
        return JobOutcome.SKIPPED
    try:
        status = _run_claimed(ctx, lease)
    except LeaseLost:
        return JobOutcome.LOST
    ctx.store.discard_scratch(job_id)
    return JobOutcome(status)


def _run_claimed(ctx: WorkerContext, lease: Lease) -> JobStatus:
    try:
        with Heartbeat(lease, ctx.settings.job_heartbeat_seconds):
            _execute(ctx, lease)
    except LeaseLost:
        raise
    except JobCancelled:
        return _end(ctx, lease, JobStatus.CANCELLED, phase=None)
    except Exception as exc:
        return _end(ctx, lease, JobStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
    return JobStatus.SUCCEEDED


def _end(ctx: WorkerContext, lease: Lease, status: JobStatus, **values: Any) -> JobStatus:
    with ctx.sessions() as session:
        lease.finish(session, status, **values)
        session.commit()
    return status


@dataclass
class _Inputs:
    job: UpgradeJob
    base: Release
    dataset: DatasetRecord
    policy: dict[str, Any]
    baselines: list[Release]  # of the same lineage: their labels start the base's labels
    golden: DatasetRecord | None


def _load_inputs(ctx: WorkerContext, job_id: str) -> _Inputs:
    with ctx.sessions() as session:
        job = session.get_one(UpgradeJob, job_id)
        base = session.get_one(Release, job.base_release_id)
        dataset = session.get_one(DatasetRecord, job.dataset_id)
        deployment = base.deployment
        deployment_policy = dict(deployment.gate_policy)
        marked = [r for r in lineage.baselines(session, deployment) if _ancestor(r, base)]
        golden = (
            session.get(DatasetRecord, deployment.golden_dataset_id)
            if deployment.golden_dataset_id
            else None
        )
        session.expunge_all()
    policy = {**deployment_policy, **(job.request.get("gate") or {})}
    if golden is not None:
        policy.setdefault("max_golden_flips", 0)  # a golden set exists: no golden image flips
    return _Inputs(job, base, dataset, policy, marked, golden)


def _ancestor(release: Release, base: Release) -> bool:
    return release.version <= base.version and base.labels[: len(release.labels)] == release.labels


def _reference_key(inputs: _Inputs, config: TrainConfig) -> str:
    """The plain retrain depends on the data, the label order, the model and the recipe."""
    unused = ("checkpoint_path", "device", "teacher_precision")  # a plain retrain has no teacher
    recipe = {k: v for k, v in config.to_dict().items() if k not in unused}
    key = {
        "dataset": inputs.dataset.artifact_sha256,
        "labels": inputs.base.labels,
        "input": inputs.base.input_spec,  # phi_new is trained on the old model's normalisation
        "arch": inputs.job.request["arch"],
        "recipe": recipe,
        "validation": VAL_FRACTION,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _execute(ctx: WorkerContext, lease: Lease) -> None:
    job_id = lease.job_id
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
    reference_name = _reference_key(inputs, config)
    reference = _cached_reference(ctx, reference_name)
    sweep = BiasSweep.parse(request["method"], request.get("bias"), request.get("relative_bias"))
    progress = JobProgress(
        lease, planned_runs(request["method"], sweep, reference_given=reference is not None)
    )

    def hooks_for(stage: str) -> Any:
        training = JobPhase.CANDIDATES if stage.startswith("candidate") else JobPhase.REFERENCE
        return progress.hooks(stage, training)

    result = upgrade(
        old,
        dataset,
        method=request["method"],
        sweep=sweep,
        arch=request["arch"],
        config=config,
        reference=reference,
        gate=shadows.split_policy(inputs.policy)[0],  # validation has no live traffic
        hooks_for=hooks_for,
        on_phase=progress.on_phase,
        checkpoint_dir=ctx.checkpoints(job_id),
        val_fraction=VAL_FRACTION,
        baselines=[load_package(ctx.store.path(r.artifact_sha256)) for r in inputs.baselines],
        golden=None
        if inputs.golden is None
        else load_npz(ctx.store.path(inputs.golden.artifact_sha256)),
    )
    if reference is None:
        ctx.store.set_ref(reference_name, _store_package(ctx, job_id, result.reference))
    _record(ctx, lease, inputs, result, progress)


def _cached_reference(ctx: WorkerContext, name: str) -> ModelPackage | None:
    sha256 = ctx.store.get_ref(name)
    return None if sha256 is None else load_package(ctx.store.path(sha256))


def _store_package(ctx: WorkerContext, job_id: str, package: ModelPackage) -> str:
    with tempfile.TemporaryDirectory(dir=ctx.store.scratch(job_id)) as folder:
        path = save_package(Path(folder) / "model.zip", package.model, package.manifest)
        return ctx.store.put_file(path)


def _record(
    ctx: WorkerContext, lease: Lease, inputs: _Inputs, result: UpgradeResult, progress: JobProgress
) -> None:
    progress.enter(JobPhase.GATING)
    chosen = result.chosen.package
    check_outputs(chosen.model, chosen.manifest.input, chosen.manifest.num_classes)
    now, live = shadows.split_policy(inputs.policy)
    gate = evaluate_gate(now, result.report, result.evidence)
    sha256 = _store_package(ctx, lease.job_id, result.chosen.package)
    auto = bool(inputs.job.request.get("auto_promote"))
    shadow = gate.passed and bool(live)  # the shadow rules wait for live traffic
    promote = gate.passed and auto and not shadow
    lease.check()
    if promote:  # written before the session below opens: SQLite allows one writer at a time
        progress.enter(JobPhase.PROMOTING)
    with ctx.sessions() as session:
        release = _register(session, inputs, result, gate, sha256, lease.job_id)
        if promote:
            releases.promote(session, release.deployment, release, actor=ACTOR)
        if shadow:
            shadows.start(
                session, release, sample_rate=ctx.settings.shadow_sample_rate,
                threshold=ctx.settings.shadow_threshold, auto_promote=auto, actor=ACTOR,
                policy=inputs.policy,
            )  # fmt: skip
        progress.close_phase()
        lease.finish(
            session,
            JobStatus.SUCCEEDED,
            phase=None,
            result_release_id=release.id,
            gate={
                **gate.to_dict(),
                "promoted": promote,
                "selection": result.selection.to_dict(),
                "margin": result.margin,
                "baselines": [r.version for r in inputs.baselines],
                "golden_dataset_id": inputs.golden.id if inputs.golden else None,
                "shadow": live if shadow else None,  # rules waiting for live traffic
            },
            candidates=result.candidate_rows(),
            progress={**progress.state, "fraction": 1.0},
        )
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
    for kind, baseline, split, report in _reports(inputs, result):
        session.add(
            FlipReportRecord(
                release_id=release.id,
                baseline_release_id=baseline.id,
                kind=kind,
                split=split,
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


def _reports(
    inputs: _Inputs, result: UpgradeResult
) -> list[tuple[FlipReportKind, Release, str, FlipReport]]:
    """(kind, the release it is measured against, split, report) of everything stored."""
    rows = [
        (FlipReportKind.CANDIDATE, inputs.base, "test", result.report),
        (FlipReportKind.NO_TREATMENT, inputs.base, "test", result.reference_report),
    ]
    rows += [
        (FlipReportKind.CUMULATIVE, baseline, "test", report)
        for baseline, report in zip(inputs.baselines, result.cumulative_reports, strict=True)
    ]
    if result.golden_report is not None:
        rows.append((FlipReportKind.GOLDEN, inputs.base, "golden", result.golden_report))
    return rows
