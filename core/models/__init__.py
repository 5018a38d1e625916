"""The database models: SQLAlchemy 2.0 typed declarative classes, one table each.

The schema is created only by the Alembic migrations in `migrations/`; `Base.metadata` is
what those migrations are checked against. Data functions live with their callers (the
service and the worker), take a `Session` and never commit: the caller owns the transaction.
"""

from core.models.access import ApiKey, AuditEntry, Scope
from core.models.base import NAMING_CONVENTION, Base, JSONType, UTCDateTime, new_id, utc_now
from core.models.datasets import DatasetFormat, DatasetRecord
from core.models.deployments import ArtifactKind, Deployment, Release, ReleaseSource, ReleaseStatus
from core.models.jobs import JobPhase, JobStatus, UpgradeJob
from core.models.reports import FlipReportKind, FlipReportRecord, GateDecision
from core.models.shadows import Shadow, ShadowTally

__all__ = [
    "NAMING_CONVENTION",
    "ApiKey",
    "ArtifactKind",
    "AuditEntry",
    "Base",
    "DatasetFormat",
    "DatasetRecord",
    "Deployment",
    "FlipReportKind",
    "FlipReportRecord",
    "GateDecision",
    "JSONType",
    "JobPhase",
    "JobStatus",
    "Release",
    "ReleaseSource",
    "ReleaseStatus",
    "Scope",
    "Shadow",
    "ShadowTally",
    "UTCDateTime",
    "UpgradeJob",
    "new_id",
    "utc_now",
]
