"""Device coverage as insurance: a policy can insure the devices whose synced coverage plan
starts with its `device_plan` (e.g. AppleCare+), and a claim on such coverage counts against
the device's coverage row instead of a student's enrollment.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07 15:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("insurance_policies") as batch:
        batch.add_column(sa.Column("device_plan", sa.String(length=200), nullable=True))
    with op.batch_alter_table("invoices") as batch:
        batch.add_column(sa.Column("claim_device_coverage_id", Id, nullable=True))
        batch.create_foreign_key(
            batch.f("fk_invoices_claim_device_coverage_id_device_coverages"),
            "device_coverages",
            ["claim_device_coverage_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.create_index(
            "ix_invoices_claim_device_coverage", ["claim_device_coverage_id", "status"]
        )


def downgrade() -> None:
    with op.batch_alter_table("invoices") as batch:
        batch.drop_index("ix_invoices_claim_device_coverage")
        batch.drop_constraint(
            "fk_invoices_claim_device_coverage_id_device_coverages", type_="foreignkey"
        )
        batch.drop_column("claim_device_coverage_id")
    with op.batch_alter_table("insurance_policies") as batch:
        batch.drop_column("device_plan")
