"""Initial schema: deployments, releases, datasets, upgrade jobs, reports, gates, keys, audit.

Revision ID: 0001
Revises:
Created: 2026-11-27

Two foreign keys close cycles (deployments.active_release_id -> releases and
releases.upgrade_job_id -> upgrade_jobs -> releases), so they are added after all three
tables exist and dropped before the tables go. `batch_alter_table` makes that work on SQLite
too, which cannot ALTER constraints and gets the table copied instead.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The column types of core.models.base, spelled out so this revision never changes with it.
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)
NOW = sa.text("CURRENT_TIMESTAMP")


def _now_column(name: str) -> sa.Column[object]:
    return sa.Column(name, TIMESTAMP, server_default=NOW, nullable=False)


def _time_column(name: str) -> sa.Column[object]:
    return sa.Column(name, TIMESTAMP, nullable=True)


def upgrade() -> None:
    """Create every table, then the two foreign keys that close cycles."""
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("prefix", sa.String(length=8), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("scopes", JSON, nullable=False),
        _now_column("created_at"),
        _time_column("revoked_at"),
        _time_column("last_used_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
        sa.UniqueConstraint("name", name=op.f("uq_api_keys_name")),
    )
    op.create_index(op.f("ix_api_keys_prefix"), "api_keys", ["prefix"])

    op.create_table(
        "datasets",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("artifact_sha256", sa.String(length=64), nullable=False),
        sa.Column("classes", JSON, nullable=False),
        sa.Column("counts", JSON, nullable=False),
        sa.Column("image_shape", JSON, nullable=False),
        sa.Column("format", sa.String(length=8), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        _now_column("created_at"),
        sa.CheckConstraint("format IN ('zip', 'tar.gz', 'npz')", name=op.f("ck_datasets_format")),
        sa.CheckConstraint("size_bytes >= 0", name=op.f("ck_datasets_size_bytes")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_datasets")),
    )
    op.create_index(op.f("ix_datasets_sha256"), "datasets", ["sha256"])

    op.create_table(
        "deployments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("gate_policy", JSON, nullable=False),
        sa.Column("active_release_id", sa.Integer(), nullable=True),
        sa.Column("release_counter", sa.Integer(), server_default="0", nullable=False),
        _now_column("created_at"),
        _now_column("updated_at"),
        sa.CheckConstraint("release_counter >= 0", name=op.f("ck_deployments_release_counter")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployments")),
        sa.UniqueConstraint("name", name=op.f("uq_deployments_name")),
    )

    op.create_table(
        "releases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("deployment_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("artifact_sha256", sa.String(length=64), nullable=False),
        sa.Column("artifact_kind", sa.String(length=16), nullable=False),
        sa.Column("arch", sa.String(length=64), nullable=False),
        sa.Column("num_classes", sa.Integer(), nullable=False),
        sa.Column("labels", JSON, nullable=False),
        sa.Column("input_spec", JSON, nullable=False),
        sa.Column("manifest", JSON, nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("upgrade_job_id", sa.String(length=32), nullable=True),
        sa.Column("previous_release_id", sa.Integer(), nullable=True),
        _now_column("created_at"),
        _time_column("activated_at"),
        _time_column("retired_at"),
        sa.CheckConstraint(
            "status IN ('candidate', 'active', 'rejected', 'retired')",
            name=op.f("ck_releases_status"),
        ),
        sa.CheckConstraint(
            "artifact_kind IN ('package', 'exported')", name=op.f("ck_releases_artifact_kind")
        ),
        sa.CheckConstraint("source IN ('upload', 'upgrade')", name=op.f("ck_releases_source")),
        sa.CheckConstraint("version >= 1", name=op.f("ck_releases_version")),
        sa.CheckConstraint("num_classes >= 1", name=op.f("ck_releases_num_classes")),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["deployments.id"],
            name=op.f("fk_releases_deployment_id_deployments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["previous_release_id"],
            ["releases.id"],
            name=op.f("fk_releases_previous_release_id_releases"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_releases")),
        sa.UniqueConstraint(
            "deployment_id", "version", name=op.f("uq_releases_deployment_id_version")
        ),
    )

    op.create_table(
        "upgrade_jobs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("deployment_id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.String(length=32), nullable=False),
        sa.Column("base_release_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("phase", sa.String(length=16), nullable=True),
        sa.Column("request", JSON, nullable=False),
        sa.Column("progress", JSON, nullable=False),
        sa.Column("candidates", JSON, nullable=False),
        sa.Column("result_release_id", sa.Integer(), nullable=True),
        sa.Column("gate", JSON, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("worker_id", sa.String(length=255), nullable=True),
        _time_column("heartbeat_at"),
        _now_column("created_at"),
        _time_column("started_at"),
        _time_column("finished_at"),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')",
            name=op.f("ck_upgrade_jobs_status"),
        ),
        sa.CheckConstraint(
            "phase IS NULL OR phase IN "
            "('reference', 'candidates', 'selecting', 'evaluating', 'gating', 'promoting')",
            name=op.f("ck_upgrade_jobs_phase"),
        ),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_upgrade_jobs_attempts")),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["deployments.id"],
            name=op.f("fk_upgrade_jobs_deployment_id_deployments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name=op.f("fk_upgrade_jobs_dataset_id_datasets")
        ),
        sa.ForeignKeyConstraint(
            ["base_release_id"],
            ["releases.id"],
            name=op.f("fk_upgrade_jobs_base_release_id_releases"),
        ),
        sa.ForeignKeyConstraint(
            ["result_release_id"],
            ["releases.id"],
            name=op.f("fk_upgrade_jobs_result_release_id_releases"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_upgrade_jobs")),
        sa.UniqueConstraint(
            "deployment_id",
            "idempotency_key",
            name=op.f("uq_upgrade_jobs_deployment_id_idempotency_key"),
        ),
    )
    op.create_index(
        "ix_upgrade_jobs_deployment_id_status", "upgrade_jobs", ["deployment_id", "status"]
    )

    with op.batch_alter_table("deployments") as batch_op:
        batch_op.create_foreign_key(
            batch_op.f("fk_deployments_active_release_id_releases"),
            "releases",
            ["active_release_id"],
            ["id"],
            ondelete="SET NULL",
        )
    with op.batch_alter_table("releases") as batch_op:
        batch_op.create_foreign_key(
            batch_op.f("fk_releases_upgrade_job_id_upgrade_jobs"),
            "upgrade_jobs",
            ["upgrade_job_id"],
            ["id"],
            ondelete="SET NULL",
        )

    op.create_table(
        "flip_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("release_id", sa.Integer(), nullable=False),
        sa.Column("baseline_release_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("split", sa.String(length=16), nullable=False),
        sa.Column("report", JSON, nullable=False),
        _now_column("created_at"),
        sa.CheckConstraint(
            "kind IN ('candidate', 'no_treatment')", name=op.f("ck_flip_reports_kind")
        ),
        sa.ForeignKeyConstraint(
            ["release_id"],
            ["releases.id"],
            name=op.f("fk_flip_reports_release_id_releases"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["baseline_release_id"],
            ["releases.id"],
            name=op.f("fk_flip_reports_baseline_release_id_releases"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flip_reports")),
        sa.UniqueConstraint(
            "release_id",
            "baseline_release_id",
            "kind",
            "split",
            name=op.f("uq_flip_reports_release_id_baseline_release_id_kind_split"),
        ),
    )

    op.create_table(
        "gate_decisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("release_id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=True),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("policy", JSON, nullable=False),
        sa.Column("rules", JSON, nullable=False),
        sa.Column("forced", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        _now_column("decided_at"),
        sa.ForeignKeyConstraint(
            ["release_id"],
            ["releases.id"],
            name=op.f("fk_gate_decisions_release_id_releases"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["upgrade_jobs.id"],
            name=op.f("fk_gate_decisions_job_id_upgrade_jobs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gate_decisions")),
    )
    op.create_index(op.f("ix_gate_decisions_release_id"), "gate_decisions", ["release_id"])

    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        _now_column("at"),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("deployment_id", sa.Integer(), nullable=True),
        sa.Column("release_id", sa.Integer(), nullable=True),
        sa.Column("detail", JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["deployments.id"],
            name=op.f("fk_audit_log_deployment_id_deployments"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["release_id"],
            ["releases.id"],
            name=op.f("fk_audit_log_release_id_releases"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index(op.f("ix_audit_log_at"), "audit_log", ["at"])
    op.create_index(op.f("ix_audit_log_deployment_id"), "audit_log", ["deployment_id"])


def downgrade() -> None:
    """Drop everything `upgrade` created: the leaves, the cycle-closing keys, then the rest."""
    op.drop_table("audit_log")
    op.drop_table("gate_decisions")
    op.drop_table("flip_reports")
    with op.batch_alter_table("releases") as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_releases_upgrade_job_id_upgrade_jobs"), type_="foreignkey"
        )
    with op.batch_alter_table("deployments") as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_deployments_active_release_id_releases"), type_="foreignkey"
        )
    op.drop_table("upgrade_jobs")
    op.drop_table("releases")
    op.drop_table("deployments")
    op.drop_table("datasets")
    op.drop_table("api_keys")
