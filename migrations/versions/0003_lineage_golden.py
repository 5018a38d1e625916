"""Lineage and must-not-flip sets: baseline releases, a deployment's golden dataset, and the
flip reports that measure them.

Revision ID: 0003
Revises: 0002
Created: 2026-11-30

Every deployment's first release becomes its baseline, as later releases are measured
against it by default.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KINDS_BEFORE = "kind IN ('candidate', 'no_treatment')"
_KINDS_AFTER = "kind IN ('candidate', 'no_treatment', 'cumulative', 'golden')"


def upgrade() -> None:
    """Add `releases.baseline` (v1 of each deployment set), `deployments.golden_dataset_id`,
    and the report kinds `cumulative` and `golden`."""
    with op.batch_alter_table("releases") as batch_op:
        batch_op.add_column(
            sa.Column("baseline", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    op.execute(sa.text("UPDATE releases SET baseline = :yes WHERE version = 1").bindparams(yes=True))
    with op.batch_alter_table("deployments") as batch_op:
        batch_op.add_column(sa.Column("golden_dataset_id", sa.String(length=32), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_deployments_golden_dataset_id_datasets"),
            "datasets",
            ["golden_dataset_id"],
            ["id"],
            ondelete="SET NULL",
        )
    _replace_kind_check(_KINDS_AFTER)


def downgrade() -> None:
    """Drop what `upgrade` added; reports of the new kinds go with it."""
    op.execute("DELETE FROM flip_reports WHERE kind IN ('cumulative', 'golden')")
    _replace_kind_check(_KINDS_BEFORE)
    with op.batch_alter_table("deployments") as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_deployments_golden_dataset_id_datasets"), type_="foreignkey"
        )
        batch_op.drop_column("golden_dataset_id")
    with op.batch_alter_table("releases") as batch_op:
        batch_op.drop_column("baseline")


def _replace_kind_check(condition: str) -> None:
    with op.batch_alter_table("flip_reports") as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_flip_reports_kind"), type_="check")
        batch_op.create_check_constraint(batch_op.f("ck_flip_reports_kind"), condition)
