"""One payment per external reference on an invoice (check number, portal or Stripe id).

Existing payments get their key; where an invoice already holds the same reference twice, the
first keeps it and the later ones are left without (they predate the rule; nothing is deleted).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 01:30:00.000000
"""

import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

payments = sa.table(
    "payments",
    sa.column("id", sa.Integer),
    sa.column("invoice_id", sa.Integer),
    sa.column("reference", sa.String),
    sa.column("reference_key", sa.String),
)


def reference_key(reference: str | None) -> str | None:
    """`workflows.payments.reference_key` as it was when this ran (a migration must not change
    with later code)."""
    text = re.sub(r"[^0-9a-z]", "", (reference or "").casefold())
    if not text:
        return None
    bare = re.sub(r"^(?:cheque|check|chk|ck|no|nr|num|number)+", "", text)
    if bare.isdigit():
        return bare.lstrip("0") or "0"
    return text


def upgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.add_column(sa.Column("reference_key", sa.String(length=200), nullable=True))
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(payments.c.id, payments.c.invoice_id, payments.c.reference)
        .where(payments.c.reference.is_not(None))
        .order_by(payments.c.id)
    ).all()
    seen: set[tuple[int, str]] = set()
    for payment_id, invoice_id, reference in rows:
        key = reference_key(reference)
        if key is None or (invoice_id, key) in seen:
            continue
        seen.add((invoice_id, key))
        bind.execute(
            sa.update(payments).where(payments.c.id == payment_id).values(reference_key=key)
        )
    op.create_index(
        "ux_payments_invoice_reference",
        "payments",
        ["invoice_id", "reference_key"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("ux_payments_invoice_reference", table_name="payments")
    with op.batch_alter_table("payments") as batch:
        batch.drop_column("reference_key")
