"""A deployment's lineage and must-not-flip set: which releases are baselines that every
later candidate is measured against, and which dataset holds the golden images."""

from __future__ import annotations

import io

import numpy as np
import sqlalchemy as sa
from numpy.typing import NDArray
from sqlalchemy.orm import Session

from core.audit import record as audit
from core.models import DatasetRecord, Deployment, Release
from core.releases import ConflictError
from core.storage import ArtifactStore

__all__ = ["baselines", "golden_from_images", "set_baseline", "set_golden"]


def baselines(session: Session, deployment: Deployment) -> list[Release]:
    """The deployment's baseline releases, oldest first."""
    return list(
        session.scalars(
            sa.select(Release)
            .where(Release.deployment_id == deployment.id, Release.baseline.is_(True))
            .order_by(Release.version)
        )
    )


def set_baseline(session: Session, release: Release, baseline: bool, actor: str) -> Release:
    """Mark or unmark `release` as a baseline (an idempotent change, audited when made)."""
    if release.baseline != baseline:
        release.baseline = baseline
        action = "mark_baseline" if baseline else "unmark_baseline"
        audit(session, actor, action, deployment=release.deployment, release=release,
              detail={"version": release.version})  # fmt: skip
    return release


def set_golden(
    session: Session, deployment: Deployment, dataset: DatasetRecord | None, actor: str
) -> None:
    """Make `dataset` the deployment's must-not-flip set, or remove it (None).

    Its classes must be labels of the active release and its images of that release's input
    size: they are what the active release must keep answering."""
    if dataset is not None:
        _check_golden(deployment, dataset)
    deployment.golden_dataset_id = None if dataset is None else dataset.id
    audit(session, actor, "set_golden" if dataset else "clear_golden", deployment=deployment,
          detail={"dataset": None if dataset is None else dataset.id})  # fmt: skip


def _check_golden(deployment: Deployment, dataset: DatasetRecord) -> None:
    active = deployment.active_release
    if active is None:
        raise ConflictError(f"deployment {deployment.name!r} has no active release to protect")
    unknown = sorted(set(dataset.classes) - set(active.labels))
    if unknown:
        raise ConflictError(
            f"the golden set has classes release {active.version} does not know: {unknown}"
        )
    spec = active.input_spec
    if list(dataset.image_shape) != [spec["channels"], spec["height"], spec["width"]]:
        raise ConflictError(
            f"golden images are {dataset.image_shape} (C, H, W); release {active.version} "
            f"takes {[spec['channels'], spec['height'], spec['width']]}"
        )
    if not dataset.counts.get("test"):
        raise ConflictError("the golden set has no test images (its test split is what counts)")


def golden_from_images(
    session: Session,
    store: ArtifactStore,
    deployment: Deployment,
    source: DatasetRecord,
    indices: list[int],
    actor: str,
) -> DatasetRecord:
    """Add test images of `source` (by position) to the deployment's golden set, making one
    if it has none: a new dataset whose test split (and train split, which a dataset must
    have) holds the old golden images and these, labels kept by name."""
    images, labels = _test_images(store, source, indices)
    if deployment.golden_dataset_id is not None:
        old = session.get_one(DatasetRecord, deployment.golden_dataset_id)
        before, before_labels = _test_images(store, old, None)
        images, labels = np.concatenate([before, images]), before_labels + labels
    record = _store_golden(store, deployment.name, images, labels)
    session.add(record)
    session.flush()
    set_golden(session, deployment, record, actor)
    return record


def _test_images(
    store: ArtifactStore, record: DatasetRecord, indices: list[int] | None
) -> tuple[NDArray[np.uint8], list[str]]:
    """(images, label names) of the test split, all of them or at `indices`."""
    with np.load(store.path(record.artifact_sha256), allow_pickle=False) as arrays:
        x, y, classes = arrays["x_test"], arrays["y_test"], [str(c) for c in arrays["classes"]]
    if indices is None:
        indices = list(range(len(x)))
    bad = [i for i in indices if not 0 <= i < len(x)]
    if bad:
        raise ConflictError(f"the test split of {record.id} has {len(x)} images; not {bad[:5]}")
    return x[indices], [classes[int(y[i])] for i in indices]


def _store_golden(
    store: ArtifactStore, name: str, images: NDArray[np.uint8], labels: list[str]
) -> DatasetRecord:
    classes = sorted(set(labels))
    y = np.array([classes.index(label) for label in labels], dtype=np.int64)
    buffer = io.BytesIO()
    np.savez(buffer, classes=np.array(classes), x_train=images, y_train=y, x_test=images, y_test=y)
    data = buffer.getvalue()
    sha256 = store.put_bytes(data)
    counts = {label: labels.count(label) for label in classes}
    shape = [1, *images.shape[1:3]] if images.ndim == 3 else [images.shape[3], *images.shape[1:3]]
    return DatasetRecord(
        name=f"{name}-golden", sha256=sha256, artifact_sha256=sha256, classes=classes,
        counts={"train": counts, "test": counts}, image_shape=shape, format="npz",
        size_bytes=len(data),
    )  # fmt: skip
