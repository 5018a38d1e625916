"""Shadow traffic: candidates run beside the active release on sampled live inputs, and the
churn tallies each API process writes.

Revision ID: 0004
Revises: 0003
Created: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create `shadows` and `shadow_tallies`."""
    op.create_table(
        "shadows",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("deployment_id", sa.Integer(), nullable=False),
        sa.Column("release_id", sa.Integer(), nullable=False),
        sa.Column("sample_rate", sa.Double(), nullable=False),
        sa.Column("threshold", sa.Double(), nullable=False),
        sa.Column("auto_promote", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("policy", JSON, nullable=False),
        sa.Column(
            "started_at", TIMESTAMP, server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),  # fmt: skip
        sa.Column("stopped_at", TIMESTAMP, nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.CheckConstraint(
            "sample_rate > 0 AND sample_rate <= 1", name=op.f("ck_shadows_sample_rate")
        ),
        sa.CheckConstraint("threshold >= 0 AND threshold <= 1", name=op.f("ck_shadows_threshold")),
        sa.ForeignKeyConstraint(
            ["deployment_id"], ["deployments.id"], ondelete="CASCADE",
            name=op.f("fk_shadows_deployment_id_deployments"),
        ),  # fmt: skip
        sa.ForeignKeyConstraint(
            ["release_id"], ["releases.id"], ondelete="CASCADE",
            name=op.f("fk_shadows_release_id_releases"),
        ),  # fmt: skip
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shadows")),
    )
    op.create_index(op.f("ix_shadows_deployment_id"), "shadows", ["deployment_id"])
    op.create_table(
        "shadow_tallies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("shadow_id", sa.Integer(), nullable=False),
        sa.Column("process", sa.String(length=64), nullable=False),
        sa.Column("counts", JSON, nullable=False),
        sa.Column("dropped", sa.Integer(), server_default="0", nullable=False),
        sa.Column("samples", JSON, nullable=False),
        sa.Column(
            "updated_at", TIMESTAMP, server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),  # fmt: skip
        sa.ForeignKeyConstraint(
            ["shadow_id"], ["shadows.id"], ondelete="CASCADE",
            name=op.f("fk_shadow_tallies_shadow_id_shadows"),
        ),  # fmt: skip
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shadow_tallies")),
        sa.UniqueConstraint("shadow_id", "process", name=op.f("uq_shadow_tallies_shadow_id_process")),
    )


def downgrade() -> None:
    """Drop both tables."""
    op.drop_table("shadow_tallies")
    op.drop_index(op.f("ix_shadows_deployment_id"), table_name="shadows")
    op.drop_table("shadows")
