"""The audit log names the upgrade job an entry is about, and is searchable by action.

Revision ID: 0002
Revises: 0001
Created: 2026-11-30

Until now a job's entries carried its id only inside `detail`; a column with a foreign key
lets the API filter a job's history and keeps entries when the job row goes (SET NULL).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add `audit_log.job_id` (indexed, a foreign key) and an index on `action`."""
    with op.batch_alter_table("audit_log") as batch_op:
        batch_op.add_column(sa.Column("job_id", sa.String(length=32), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_audit_log_job_id_upgrade_jobs"),
            "upgrade_jobs",
            ["job_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.create_index(batch_op.f("ix_audit_log_job_id"), ["job_id"])
        batch_op.create_index(batch_op.f("ix_audit_log_action"), ["action"])
    op.execute(
        "UPDATE audit_log SET job_id = (SELECT id FROM upgrade_jobs "
        "WHERE upgrade_jobs.id = audit_log.detail ->> 'job') "
        "WHERE detail ->> 'job' IS NOT NULL"
    )


def downgrade() -> None:
    """Drop the indexes, the foreign key and the column."""
    with op.batch_alter_table("audit_log") as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_log_action"))
        batch_op.drop_index(batch_op.f("ix_audit_log_job_id"))
        batch_op.drop_constraint(batch_op.f("fk_audit_log_job_id_upgrade_jobs"), type_="foreignkey")
        batch_op.drop_column("job_id")
