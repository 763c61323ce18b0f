"""District facts families are told: checks payable to, mailing address, office contact.

The district name's old placeholder ("Our District", which nothing could change) becomes
"not set", so emails leave out the sentences that need a name until one is set.

Revision ID: 0011
Revises: 0008
Create Date: 2026-12-07 01:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = (
    ("check_payable_to", 200),
    ("check_mailing_address", 400),
    ("office_phone", 40),
    ("office_hours", 120),
    ("office_email", 254),
)
_PLACEHOLDER = "Our District"


def upgrade() -> None:
    with op.batch_alter_table("district_settings") as batch:
        for name, length in _COLUMNS:
            batch.add_column(
                sa.Column(
                    name, sa.String(length=length), server_default=sa.text("''"), nullable=False
                )
            )
        batch.alter_column(
            "district_name",
            existing_type=sa.String(length=200),
            existing_nullable=False,
            server_default=sa.text("''"),
        )
    settings = sa.table("district_settings", sa.column("district_name", sa.String))
    op.execute(
        settings.update().where(settings.c.district_name == _PLACEHOLDER).values(district_name="")
    )


def downgrade() -> None:
    settings = sa.table("district_settings", sa.column("district_name", sa.String))
    op.execute(
        settings.update().where(settings.c.district_name == "").values(district_name=_PLACEHOLDER)
    )
    with op.batch_alter_table("district_settings") as batch:
        batch.alter_column(
            "district_name",
            existing_type=sa.String(length=200),
            existing_nullable=False,
            server_default=None,
        )
        for name, _length in reversed(_COLUMNS):
            batch.drop_column(name)
