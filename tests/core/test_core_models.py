"""The models on a migrated database: constraints hold on both backends, values round-trip."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session

from core.db import make_engine, make_session_factory, migrate
from core.models import (
    AuditEntry,
    DatasetRecord,
    Deployment,
    JobStatus,
    Release,
    ReleaseStatus,
    UpgradeJob,
)


@pytest.fixture
def session(db_url: URL) -> Iterator[Session]:
    """A session on a freshly migrated database; whatever it did is rolled back afterwards."""
    migrate(db_url)
    engine = make_engine(db_url)
    factory = make_session_factory(engine)
    try:
        with factory() as session:
            yield session
            session.rollback()
    finally:
        engine.dispose()


def _deployment(session: Session, name: str = "default") -> Deployment:
    deployment = Deployment(name=name, gate_policy={"max_nfr": 0.02})
    session.add(deployment)
    session.flush()
    return deployment


def _release(session: Session, deployment: Deployment, version: int, **overrides: Any) -> Release:
    fields: dict[str, Any] = {
        "deployment_id": deployment.id,
        "version": version,
        "artifact_sha256": "a" * 64,
        "artifact_kind": "package",
        "arch": "small_cnn",
        "num_classes": 2,
        "labels": ["cat", "dog"],
        "input_spec": {"channels": 3, "height": 32, "width": 32},
        "manifest": {"arch": "small_cnn"},
        **overrides,
    }
    release = Release(**fields)
    session.add(release)
    session.flush()
    return release


def _dataset(session: Session) -> DatasetRecord:
    dataset = DatasetRecord(
        name="digits",
        sha256="b" * 64,
        artifact_sha256="c" * 64,
        classes=["0", "1"],
        counts={"train": {"0": 5, "1": 5}},
        image_shape=[1, 8, 8],
        format="npz",
        size_bytes=123,
    )
    session.add(dataset)
    session.flush()
    return dataset


def _job(session: Session, release: Release, dataset: DatasetRecord, **overrides: Any) -> None:
    fields: dict[str, Any] = {
        "deployment_id": release.deployment_id,
        "dataset_id": dataset.id,
        "base_release_id": release.id,
        "request": {"method": "mpt_kl", "bias": [0, 4]},
        **overrides,
    }
    job = UpgradeJob(**fields)
    session.add(job)
    session.flush()


def test_core_models_release_version_unique_per_deployment(session: Session) -> None:
    first, second = _deployment(session, "first"), _deployment(session, "second")
    _release(session, first, 1)
    _release(session, second, 1)  # the same number in another deployment is fine
    with pytest.raises(IntegrityError, match=r"(?i)unique"):
        _release(session, first, 1)


def test_core_models_release_status_checked(session: Session) -> None:
    deployment = _deployment(session)
    with pytest.raises(IntegrityError, match=r"ck_releases_status"):
        _release(session, deployment, 1, status="live")


def test_core_models_job_status_and_phase_checked(session: Session) -> None:
    release = _release(session, _deployment(session), 1)
    dataset = _dataset(session)
    _job(session, release, dataset, status=JobStatus.RUNNING, phase="candidates")
    with session.begin_nested(), pytest.raises(IntegrityError):
        _job(session, release, dataset, status="retrying")
    with pytest.raises(IntegrityError):
        _job(session, release, dataset, phase="sleeping")


def test_core_models_idempotency_key_unique_per_deployment(session: Session) -> None:
    release = _release(session, _deployment(session, "first"), 1)
    other = _release(session, _deployment(session, "second"), 1)
    dataset = _dataset(session)
    _job(session, release, dataset, idempotency_key="abc")
    _job(session, other, dataset, idempotency_key="abc")  # another deployment: fine
    _job(session, release, dataset)  # jobs without a key never collide
    _job(session, release, dataset)
    with pytest.raises(IntegrityError, match=r"(?i)unique"):
        _job(session, release, dataset, idempotency_key="abc")


def test_core_models_foreign_keys_enforced(session: Session) -> None:
    deployment = _deployment(session)
    with pytest.raises(IntegrityError, match=r"(?i)foreign key"):
        _release(session, deployment, 1, deployment_id=deployment.id + 1000)


def test_core_models_active_release_cycle_in_one_flush(session: Session) -> None:
    deployment = Deployment(name="cycle", gate_policy={})
    release = Release(
        deployment=deployment,
        version=1,
        status=ReleaseStatus.ACTIVE,
        artifact_sha256="d" * 64,
        artifact_kind="exported",
        arch="small_cnn",
        num_classes=3,
        labels=["a", "b", "c"],
        input_spec={},
        manifest={},
    )
    deployment.active_release = release
    session.add_all([deployment, release])
    session.flush()
    session.expire_all()
    loaded = session.get_one(Deployment, deployment.id)
    assert loaded.active_release is not None
    assert loaded.active_release.version == 1
    assert loaded.release_counter == 0


def test_core_models_timestamps_are_utc_aware(session: Session) -> None:
    release = _release(session, _deployment(session), 1)
    activated = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    release.activated_at = activated
    session.flush()
    session.expire_all()
    loaded = session.get_one(Release, release.id)
    assert loaded.activated_at == activated
    assert loaded.activated_at is not None and loaded.activated_at.tzinfo == UTC
    assert loaded.created_at.tzinfo == UTC
    assert abs(datetime.now(UTC) - loaded.created_at) < timedelta(minutes=5)


def test_core_models_server_default_timestamp_is_utc(session: Session) -> None:
    deployment = _deployment(session)
    session.execute(
        sa.text(
            "INSERT INTO audit_log (actor, action, deployment_id, detail) "
            "VALUES ('system', 'test', :id, '{}')"
        ),
        {"id": deployment.id},
    )
    entry = session.scalars(sa.select(AuditEntry)).one()
    assert entry.at.tzinfo == UTC
    assert abs(datetime.now(UTC) - entry.at) < timedelta(minutes=5)


def test_core_models_naive_datetime_refused(session: Session) -> None:
    release = _release(session, _deployment(session), 1)
    release.retired_at = datetime(2026, 1, 1)  # naive: the point of the test
    with pytest.raises(StatementError, match="naive datetime"):
        session.flush()


def test_core_models_json_round_trip(session: Session) -> None:
    release = _release(session, _deployment(session), 1, labels=["zéro", "un"])
    dataset = _dataset(session)
    job_request = {"bias": [0, 1.5], "gate": {"max_nfr": 0.01, "bind_on": "upper"}}
    _job(session, release, dataset, request=job_request)
    session.expire_all()
    job = session.scalars(sa.select(UpgradeJob)).one()
    assert job.request == job_request
    assert job.progress == {} and job.candidates == []
    assert job.cancel_requested is False and job.attempts == 0
    assert len(job.id) == 32
    assert session.get_one(Release, release.id).labels == ["zéro", "un"]


@pytest.mark.parametrize("name", ["", "Default", "a_b", "-a", "a-", "a" * 64, "a/b"])
def test_core_models_deployment_name_must_be_slug(name: str) -> None:
    with pytest.raises(ValueError, match="slug"):
        Deployment(name=name)


def test_core_models_deployment_name_accepts_slugs() -> None:
    assert Deployment(name="flowers-v2").name == "flowers-v2"
