"""Does the database agree with the artifact store? Rows that name a missing artifact, and
artifacts that no row (or named reference) names."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import Session

from core.models import DatasetRecord, Release
from core.storage import ArtifactStore

__all__ = ["IntegrityReport", "check_registry"]


@dataclass
class IntegrityReport:
    """`missing`: rows whose artifact is not stored, as `table id: sha256`; `orphans`:
    stored artifacts nothing names; `corrupt`: artifacts whose content does not match their
    name (only when asked to verify)."""

    rows: int = 0
    artifacts: int = 0
    missing: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.orphans or self.corrupt)


def _named(session: Session) -> list[tuple[str, str]]:
    releases = session.execute(sa.select(Release.id, Release.artifact_sha256)).all()
    datasets = session.execute(sa.select(DatasetRecord.id, DatasetRecord.artifact_sha256)).all()
    return [(f"releases {i}", sha) for i, sha in releases] + [
        (f"datasets {i}", sha) for i, sha in datasets
    ]


def _references(store: ArtifactStore) -> set[str]:
    return {sha for name in store.ref_names() if (sha := store.get_ref(name)) is not None}


def _matches(store: ArtifactStore, sha256: str) -> bool:
    digest = hashlib.sha256()
    with store.open(sha256) as blob:
        while chunk := blob.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest() == sha256


def check_registry(
    session: Session, store: ArtifactStore, *, verify: bool = False
) -> IntegrityReport:
    """Compare the rows with the store; `verify` also rehashes every artifact."""
    stored, named = set(store.artifact_ids()), _named(session)
    report = IntegrityReport(rows=len(named), artifacts=len(stored))
    report.missing = sorted(f"{row}: {sha}" for row, sha in named if sha not in stored)
    report.orphans = sorted(stored - {sha for _, sha in named} - _references(store))
    if verify:
        report.corrupt = sorted(sha for sha in stored if not _matches(store, sha))
    return report
