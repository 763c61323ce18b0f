"""Staff show by their Slack profile name: the name, and when Slack was last asked for it.

Revision ID: 0018
Revises: 0016
Create Date: 2026-12-07 06:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("staff") as batch:
        batch.add_column(sa.Column("slack_name", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("slack_name_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("staff") as batch:
        batch.drop_column("slack_name_at")
        batch.drop_column("slack_name")
