"""The district's IT contact: whom a Slack user DeviceCare doesn't know is told to ask.

Revision ID: 0016
Revises: 0012
Create Date: 2026-12-07 05:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = (("it_contact_name", 100), ("it_contact", 254))


def upgrade() -> None:
    with op.batch_alter_table("district_settings") as batch:
        for name, length in _COLUMNS:
            batch.add_column(
                sa.Column(
                    name, sa.String(length=length), server_default=sa.text("''"), nullable=False
                )
            )


def downgrade() -> None:
    with op.batch_alter_table("district_settings") as batch:
        for name, _ in reversed(_COLUMNS):
            batch.drop_column(name)
