"""A reported payment split over several invoices; "paid, amount not given"; reply threading.

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-07 01:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column(
        "pending_payments",
        sa.Column("amount_given", sa.Boolean(), server_default=sa.true(), nullable=False),
    )
    op.add_column("pending_payments", sa.Column("reply_thread", sa.JSON(), nullable=True))
    op.create_table(
        "pending_payment_parts",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("pending_payment_id", ID, nullable=False),
        sa.Column("invoice_id", ID, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column("payment_id", ID, nullable=True),
        sa.CheckConstraint(
            "amount_cents >= 0", name=op.f("ck_pending_payment_parts_amount_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoices.id"],
            name=op.f("fk_pending_payment_parts_invoice_id_invoices"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"],
            ["payments.id"],
            name=op.f("fk_pending_payment_parts_payment_id_payments"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["pending_payment_id"],
            ["pending_payments.id"],
            name=op.f("fk_pending_payment_parts_pending_payment_id_pending_payments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pending_payment_parts")),
        sa.UniqueConstraint(
            "pending_payment_id",
            "invoice_id",
            name=op.f("uq_pending_payment_parts_pending_payment_id"),
        ),
    )
    op.create_index(
        op.f("ix_pending_payment_parts_invoice_id"),
        "pending_payment_parts",
        ["invoice_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_pending_payment_parts_pending_payment_id"),
        "pending_payment_parts",
        ["pending_payment_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_pending_payment_parts_pending_payment_id"), table_name="pending_payment_parts"
    )
    op.drop_index(op.f("ix_pending_payment_parts_invoice_id"), table_name="pending_payment_parts")
    op.drop_table("pending_payment_parts")
    with op.batch_alter_table("pending_payments") as batch:
        batch.drop_column("reply_thread")
        batch.drop_column("amount_given")
