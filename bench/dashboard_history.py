"""A deployment with a long, made-up release history, written straight into a registry:
the dashboard's tests and its page-speed benchmark look at it without training anything.

Every number in it is a real flip report of synthetic logits: made up, but consistent.
"""

from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sqlalchemy.orm import Session, sessionmaker

from core import releases
from core.models import (
    DatasetRecord,
    Deployment,
    FlipReportKind,
    FlipReportRecord,
    GateDecision,
    JobStatus,
    Release,
    ReleaseSource,
    ReleaseStatus,
    UpgradeJob,
    utc_now,
)
from core.storage import ArtifactStore
from mpt import models
from mpt.gate import GateContext, evaluate_gate
from mpt.io import InputSpec, Manifest, save_package
from mpt.metrics import FlipReport, flip_report

__all__ = ["History", "populate"]

ACTOR = "history"
POLICY: dict[str, Any] = {"max_nfr": 0.05, "error_budget": 0.02}


@dataclass(frozen=True)
class History:
    deployment: str
    dataset_id: str
    versions: list[int]
    num_old: int
    num_classes: int


def populate(
    sessions: sessionmaker[Session],
    store: ArtifactStore,
    *,
    name: str = "history",
    num_classes: int = 20,
    num_old: int = 15,
    releases_count: int = 4,
    test_per_class: int = 10,
    flip_rate: float = 0.05,
    seed: int = 0,
    labels: list[str] | None = None,
) -> History:
    """Write a deployment whose release 1 was uploaded and releases 2.. came from upgrades,
    each with both flip reports, a gate decision and its job; the last one passing the gate
    is active. One real (untrained) package backs every release, so the service can load it.
    `labels` (default `class-000`, ...) must number `num_classes`.
    """
    generator = torch.Generator().manual_seed(seed)
    labels = labels or [f"class-{i:03d}" for i in range(num_classes)]
    package_sha = _package(store, labels)
    targets = torch.arange(num_classes).repeat_interleave(test_per_class)
    dataset_id = _dataset(sessions, store, labels, targets, generator)
    with sessions() as session:
        deployment = releases.create_deployment(session, name, POLICY, ACTOR)
        manifest = _manifest(labels)
        first = releases.add_release(
            session, deployment, artifact_sha256=package_sha, artifact_kind="package",
            manifest=manifest, actor=ACTOR,
        )  # fmt: skip
        releases.promote(session, deployment, first, actor=ACTOR, first=True)
        versions = [first.version]
        for step in range(1, releases_count):
            case = _Case(targets, num_old, labels, flip_rate * (0.5 + step % 3 / 2), generator)
            # flip rates cycle through 0.5x, 1x and 1.5x `flip_rate`
            release = _upgrade(session, deployment, package_sha, dataset_id, case)
            versions.append(release.version)
        deployment.golden_dataset_id = dataset_id
        session.commit()
    return History(name, dataset_id, versions, num_old, num_classes)


@dataclass
class _Case:
    targets: torch.Tensor
    num_old: int
    labels: list[str]
    flip_rate: float
    generator: torch.Generator

    def _rand(self) -> torch.Tensor:
        return torch.rand(len(self.targets), generator=self.generator)

    def logits(self, columns: int, right: torch.Tensor) -> torch.Tensor:
        """Logits whose argmax is the target where `right`, with made-up confidences."""
        scores = torch.randn(len(self.targets), columns, generator=self.generator)
        rows = torch.arange(len(self.targets))[right & (self.targets < columns)]
        scores[rows, self.targets[rows]] += 4.0 + 2 * torch.rand(
            len(rows), generator=self.generator
        )
        wrong = torch.arange(len(self.targets))[~right & (self.targets < columns)]
        scores[wrong, self.targets[wrong]] = -10.0  # never right by chance
        return scores

    def reports(self) -> tuple[FlipReport, FlipReport]:
        """The chosen candidate flips about `flip_rate` of the old model's right answers, the
        plain retrain twice as many; both fix half of its old mistakes."""
        old_right = self._rand() < 0.9
        fixed = ~old_right & (self._rand() < 0.5)
        old = self.logits(self.num_old, old_right)
        reports = []
        for rate in (self.flip_rate, 2 * self.flip_rate):
            new_right = (old_right & (self._rand() >= rate)) | fixed
            new = self.logits(len(self.labels), new_right)
            reports.append(flip_report(old, new, self.targets, self.num_old, self.labels))
        return reports[0], reports[1]


def _upgrade(
    session: Session, deployment: Deployment, package_sha: str, dataset_id: str, case: _Case
) -> Release:
    chosen, plain = case.reports()
    gate = evaluate_gate(POLICY, chosen, GateContext(reference=plain))
    base = deployment.active_release
    assert base is not None
    job = UpgradeJob(
        deployment_id=deployment.id, dataset_id=dataset_id, base_release_id=base.id,
        status=JobStatus.SUCCEEDED, request={"method": "mpt_kl", "arch": "small_cnn"},
        progress={"fraction": 1.0}, candidates=_candidates(chosen),
        started_at=utc_now(), finished_at=utc_now(),
    )  # fmt: skip
    session.add(job)
    session.flush()
    status = ReleaseStatus.CANDIDATE if gate.passed else ReleaseStatus.REJECTED
    release = releases.add_release(
        session, deployment, artifact_sha256=package_sha, artifact_kind="package",
        manifest=_manifest(case.labels), actor=ACTOR, source=ReleaseSource.UPGRADE,
        upgrade_job_id=job.id, status=status,
    )  # fmt: skip
    for kind, against, split, report in _lineage_reports(deployment, base, case, chosen, plain):
        session.add(
            FlipReportRecord(
                release_id=release.id, baseline_release_id=against.id, kind=kind, split=split,
                report=report.to_dict(),
            )
        )  # fmt: skip
    session.add(
        GateDecision(
            release_id=release.id, job_id=job.id, passed=gate.passed, policy=POLICY,
            rules=gate.to_dict()["rules"],
        )
    )  # fmt: skip
    error = chosen.new_model_error.all.value
    job.result_release_id = release.id
    job.gate = {
        **gate.to_dict(), "promoted": gate.passed, "selection": _selection(error),
        "golden_dataset_id": dataset_id,
    }  # fmt: skip
    if gate.passed:
        releases.promote(session, deployment, release, actor=ACTOR)
    session.flush()
    return release


def _lineage_reports(
    deployment: Deployment, base: Release, case: _Case, chosen: FlipReport, plain: FlipReport
) -> list[tuple[FlipReportKind, Release, str, FlipReport]]:
    """Both reports against the base release; against v1 (the baseline) a report that drifts
    further with each step; on the golden set (the first 40 test images) a small one."""
    v1 = _first_release(deployment)
    steps = deployment.release_counter
    drift = _Case(case.targets, case.num_old, case.labels, case.flip_rate * (1 + steps / 4),
                  case.generator)  # fmt: skip
    cumulative = chosen if base.id == v1.id else drift.reports()[0]
    golden = _Case(case.targets[:40], case.num_old, case.labels, case.flip_rate, case.generator)
    return [
        (FlipReportKind.CANDIDATE, base, "test", chosen),
        (FlipReportKind.NO_TREATMENT, base, "test", plain),
        (FlipReportKind.CUMULATIVE, v1, "test", cumulative),
        (FlipReportKind.GOLDEN, base, "golden", golden.reports()[0]),
    ]


def _first_release(deployment: Deployment) -> Release:
    session = Session.object_session(deployment)
    assert session is not None
    return session.query(Release).filter_by(deployment_id=deployment.id, version=1).one()


def _candidates(chosen: FlipReport) -> list[dict[str, Any]]:
    nfr, error = chosen.nfr.old.value, chosen.new_model_error.all.value
    rows = []
    for i, relative in enumerate((0.0, 0.125, 0.25, 0.5)):
        rows.append(
            {
                "bias": relative * 4, "relative_bias": relative,
                "val_nfr": nfr * (1.4 - 0.2 * i), "val_nfr_interval": [0.0, 1.0],
                "val_error": error + 0.004 * i, "val_old_samples": chosen.nfr.old.n,
                "chosen": i == 2,
            }
        )  # fmt: skip
    return rows


def _selection(error: float) -> dict[str, Any]:
    best = error - 0.008
    return {
        "chosen": 2, "best_error": best, "error_budget": 0.01, "max_error": best + 0.01,
        "qualified": [0, 1, 2], "fallback": False,
        "reason": "lowest validation NFR within the error budget",
    }  # fmt: skip


def _manifest(labels: list[str]) -> dict[str, Any]:
    return Manifest("small_cnn", len(labels), list(labels), _spec()).to_dict()


def _spec() -> InputSpec:
    return InputSpec(3, 32, 32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def _package(store: ArtifactStore, labels: list[str]) -> str:
    torch.manual_seed(0)
    model = models.create("small_cnn", len(labels), in_channels=3)
    with tempfile.TemporaryDirectory() as folder:
        manifest = Manifest("small_cnn", len(labels), list(labels), _spec())
        return store.put_file(save_package(Path(folder) / "model.zip", model, manifest))


def _dataset(
    sessions: sessionmaker[Session],
    store: ArtifactStore,
    labels: list[str],
    targets: torch.Tensor,
    generator: torch.Generator,
) -> str:
    """A test split of coloured noise, one hue per class, stored as the upload format."""
    n = len(targets)
    hue = torch.rand(len(labels), 3, generator=generator)[targets] * 255
    noise = torch.rand(n, 32, 32, 3, generator=generator) * 60
    x = (hue[:, None, None, :] * 0.8 + noise).clamp(0, 255).to(torch.uint8).numpy()
    buffer = io.BytesIO()
    arrays = {"x_train": x[:1], "y_train": targets[:1].numpy()}
    np.savez(buffer, classes=np.array(labels), x_test=x, y_test=targets.numpy(), **arrays)
    sha = store.put_bytes(buffer.getvalue())
    with sessions() as session:
        record = DatasetRecord(
            name="history", sha256=sha, artifact_sha256=sha, classes=labels,
            counts={"test": {label: int((targets == i).sum()) for i, label in enumerate(labels)}},
            image_shape=[3, 32, 32], format="npz", size_bytes=len(buffer.getvalue()),
        )  # fmt: skip
        session.add(record)
        session.commit()
        return record.id
