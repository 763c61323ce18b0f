"""billing automation settings

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23

The district settings row gains the billing automation settings. Each column has a server
default, so the existing row gets the shipped defaults without a data step.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    "pre_due_enabled",
    "pre_due_days",
    "overdue_enabled",
    "overdue_days",
    "auto_cancel_enabled",
    "auto_cancel_days",
    "stop_reminders_on_partial_payment",
    "daily_run_time",
)


def upgrade() -> None:
    with op.batch_alter_table("district_settings") as batch:
        batch.add_column(
            sa.Column("pre_due_enabled", sa.Boolean(), nullable=False, server_default=sa.true())
        )
        batch.add_column(
            sa.Column(
                "pre_due_days", sa.JSON(), nullable=False, server_default=sa.text("'[14, 7, 1]'")
            )
        )
        batch.add_column(
            sa.Column("overdue_enabled", sa.Boolean(), nullable=False, server_default=sa.true())
        )
        batch.add_column(
            sa.Column(
                "overdue_days", sa.JSON(), nullable=False, server_default=sa.text("'[7, 14, 30]'")
            )
        )
        batch.add_column(
            sa.Column(
                "auto_cancel_enabled", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )
        batch.add_column(
            sa.Column(
                "auto_cancel_days", sa.Integer(), nullable=False, server_default=sa.text("60")
            )
        )
        batch.add_column(
            sa.Column(
                "stop_reminders_on_partial_payment",
                sa.Boolean(),
                nullable=False,
                server_default=sa.false(),
            )
        )
        batch.add_column(
            sa.Column(
                "daily_run_time",
                sa.String(length=5),
                nullable=False,
                server_default=sa.text("'06:00'"),
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("district_settings") as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)
