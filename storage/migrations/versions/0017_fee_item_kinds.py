"""Fee schedule items have a kind from a fixed list: damage, collection, annual or other.

Parts and fines (the old kinds "part" and "fine") become damage fees, collection items stay
collection, anything else becomes "other"; a check constraint then keeps the list fixed.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 06:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here (not imported) so a later change to the enum can't rewrite this migration.
_KINDS = ("damage", "collection", "annual", "other")
_LEGACY = {
    "damage": ("part", "fine", "damage", "loss"),
    "collection": ("collection",),
    "annual": ("annual", "fee"),
}


def upgrade() -> None:
    fee_items = sa.table("fee_items", sa.column("kind", sa.String(20)))
    lowered = sa.func.lower(sa.func.trim(fee_items.c.kind))
    op.execute(
        fee_items.update().values(
            kind=sa.case(
                *((lowered.in_(old), new) for new, old in _LEGACY.items()),
                else_="other",
            )
        )
    )
    allowed = ", ".join(f"'{kind}'" for kind in _KINDS)
    with op.batch_alter_table("fee_items") as batch:
        batch.create_check_constraint("kind_known", f"kind IN ({allowed})")


def downgrade() -> None:
    with op.batch_alter_table("fee_items") as batch:
        batch.drop_constraint("kind_known", type_="check")
    # Damage fees were parts or fines; parts is the closer guess for a screen or a keyboard.
    fee_items = sa.table("fee_items", sa.column("kind", sa.String(20)))
    op.execute(fee_items.update().where(fee_items.c.kind == "damage").values(kind="part"))
