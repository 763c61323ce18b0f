"""Service facts: each long-running process's heartbeat, last success, last error and counters.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 05:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "service_facts",
        sa.Column("process", sa.String(length=40), nullable=False),
        sa.Column("instance", sa.String(length=200), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_success", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("counters", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("process", name=op.f("pk_service_facts")),
    )


def downgrade() -> None:
    op.drop_table("service_facts")
