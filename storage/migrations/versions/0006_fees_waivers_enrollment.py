"""fees, waivers and refunds, device collection, insurance enrollment and premiums

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.models

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# Permissions added in this release, granted to the shipped roles a district still has.
NEW_GRANTS = {
    "Admin": [
        "approve_waivers",
        "issue_refunds",
        "manage_enrollments",
        "manage_fees",
        "collect_devices",
    ],
    "SuperAdmin": [
        "approve_waivers",
        "issue_refunds",
        "manage_enrollments",
        "manage_fees",
        "collect_devices",
    ],
    "Technician": ["collect_devices"],
    "Billing Clerk": ["waive_charges", "manage_enrollments", "manage_fees"],
    "Finance Director": ["approve_waivers", "issue_refunds", "manage_enrollments", "manage_fees"],
    "Front Desk": ["collect_devices"],
}


def upgrade() -> None:
    op.create_table(
        "annual_fees",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("code", sa.String(length=60), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("school_year", sa.String(length=20), nullable=False),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column("grades", sa.JSON(), nullable=False),
        sa.Column("building_ids", sa.JSON(), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column(
            "created_by_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("created_at", storage.models.UtcDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount_cents > 0", name=op.f("ck_annual_fees_amount_positive")),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["staff.id"],
            name=op.f("fk_annual_fees_created_by_id_staff"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_annual_fees")),
        sa.UniqueConstraint("code", "school_year", name=op.f("uq_annual_fees_code")),
    )
    op.create_table(
        "device_collections",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "device_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "student_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("reason", sa.String(length=20), nullable=False),
        sa.Column("missing", sa.JSON(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column(
            "collected_by_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("collected_at", storage.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["collected_by_id"],
            ["staff.id"],
            name=op.f("fk_device_collections_collected_by_id_staff"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_device_collections_device_id_devices"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["student_id"],
            ["students.id"],
            name=op.f("fk_device_collections_student_id_students"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_collections")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_device_collections_idempotency_key")),
    )
    op.create_index(
        op.f("ix_device_collections_device_id"), "device_collections", ["device_id"], unique=False
    )
    op.create_index(
        op.f("ix_device_collections_student_id"), "device_collections", ["student_id"], unique=False
    )
    op.create_table(
        "device_coverages",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "device_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("provider", sa.String(length=100), nullable=False),
        sa.Column("plan", sa.String(length=200), nullable=False),
        sa.Column("coverage_start", sa.Date(), nullable=False),
        sa.Column("coverage_end", sa.Date(), nullable=False),
        sa.Column("source", sa.String(length=300), nullable=True),
        sa.Column("imported_at", storage.models.UtcDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "coverage_end >= coverage_start", name=op.f("ck_device_coverages_coverage_order")
        ),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_device_coverages_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_coverages")),
        sa.UniqueConstraint(
            "device_id", "plan", "coverage_start", name=op.f("uq_device_coverages_device_id")
        ),
    )
    op.create_index(
        op.f("ix_device_coverages_device_id"), "device_coverages", ["device_id"], unique=False
    )
    op.create_table(
        "invoice_adjustments",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "invoice_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column(
            "payment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column(
            "requested_by_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("requested_at", storage.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column(
            "decided_by_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("decided_at", storage.models.UtcDateTime(timezone=True), nullable=True),
        sa.Column("decision_comment", sa.Text(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.CheckConstraint("amount_cents > 0", name=op.f("ck_invoice_adjustments_amount_positive")),
        sa.ForeignKeyConstraint(
            ["decided_by_id"],
            ["staff.id"],
            name=op.f("fk_invoice_adjustments_decided_by_id_staff"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoices.id"],
            name=op.f("fk_invoice_adjustments_invoice_id_invoices"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"],
            ["payments.id"],
            name=op.f("fk_invoice_adjustments_payment_id_payments"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["requested_by_id"],
            ["staff.id"],
            name=op.f("fk_invoice_adjustments_requested_by_id_staff"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoice_adjustments")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_invoice_adjustments_idempotency_key")),
    )
    op.create_index(
        op.f("ix_invoice_adjustments_invoice_id"),
        "invoice_adjustments",
        ["invoice_id"],
        unique=False,
    )

    with op.batch_alter_table("district_settings") as batch:
        batch.add_column(
            sa.Column(
                "waiver_approval_cents",
                sa.Integer(),
                server_default=sa.text("10000"),
                nullable=False,
            )
        )
    with op.batch_alter_table("insurance_policies") as batch:
        batch.add_column(sa.Column("term_label", sa.String(length=60), nullable=True))
        batch.add_column(sa.Column("term_start", sa.Date(), nullable=True))
        batch.add_column(sa.Column("term_end", sa.Date(), nullable=True))
        batch.add_column(
            sa.Column("premium_cents", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
        batch.add_column(sa.Column("enroll_opens_on", sa.Date(), nullable=True))
        batch.add_column(sa.Column("enroll_closes_on", sa.Date(), nullable=True))
        batch.add_column(
            sa.Column(
                "coverage_starts",
                sa.String(length=20),
                server_default=sa.text("'on_payment'"),
                nullable=False,
            )
        )
        batch.add_column(sa.Column("expiry_reminder_days", sa.Integer(), nullable=True))
    with op.batch_alter_table("insurance_enrollments") as batch:
        batch.add_column(sa.Column("premium_waiver_reason", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("premium_waived_by_id", Id, nullable=True))
        batch.add_column(
            sa.Column("activated_at", storage.models.UtcDateTime(timezone=True), nullable=True)
        )
        batch.add_column(sa.Column("enrolled_by_id", Id, nullable=True))
        batch.add_column(
            sa.Column(
                "source", sa.String(length=20), server_default=sa.text("'staff'"), nullable=False
            )
        )
        batch.add_column(sa.Column("expiry_reminded_on", sa.Date(), nullable=True))
        batch.create_foreign_key(
            batch.f("fk_insurance_enrollments_premium_waived_by_id_staff"),
            "staff",
            ["premium_waived_by_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.create_foreign_key(
            batch.f("fk_insurance_enrollments_enrolled_by_id_staff"),
            "staff",
            ["enrolled_by_id"],
            ["id"],
            ondelete="SET NULL",
        )
    op.create_index(
        "uq_insurance_enrollments_live",
        "insurance_enrollments",
        ["student_id", "policy_id", "term_start"],
        unique=True,
        sqlite_where=sa.text("status != 'cancelled'"),
        postgresql_where=sa.text("status != 'cancelled'"),
    )
    with op.batch_alter_table("invoices") as batch:
        batch.add_column(
            sa.Column(
                "kind", sa.String(length=20), server_default=sa.text("'incident'"), nullable=False
            )
        )
        batch.add_column(
            sa.Column("waived_cents", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
        batch.add_column(
            sa.Column("refunded_cents", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
        batch.add_column(sa.Column("annual_fee_id", Id, nullable=True))
        batch.add_column(sa.Column("collection_id", Id, nullable=True))
        batch.add_column(sa.Column("premium_enrollment_id", Id, nullable=True))
        batch.create_index(
            batch.f("ix_invoices_premium_enrollment_id"), ["premium_enrollment_id"], unique=False
        )
        batch.create_unique_constraint(
            batch.f("uq_invoices_annual_fee_id"), ["annual_fee_id", "student_id"]
        )
        batch.create_foreign_key(
            batch.f("fk_invoices_premium_enrollment_id_insurance_enrollments"),
            "insurance_enrollments",
            ["premium_enrollment_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.create_foreign_key(
            batch.f("fk_invoices_annual_fee_id_annual_fees"),
            "annual_fees",
            ["annual_fee_id"],
            ["id"],
            ondelete="RESTRICT",
        )
        batch.create_foreign_key(
            batch.f("fk_invoices_collection_id_device_collections"),
            "device_collections",
            ["collection_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.create_check_constraint(
            "waived_in_range", "waived_cents >= 0 AND paid_cents + waived_cents <= total_cents"
        )
        batch.create_check_constraint(
            "refunded_in_range", "refunded_cents >= 0 AND refunded_cents <= paid_cents"
        )
    _grant_new_permissions()


def _grant_new_permissions() -> None:
    roles = sa.table(
        "roles",
        sa.column("id", sa.Integer()),
        sa.column("name", sa.String()),
        sa.column("permissions", sa.JSON()),
        sa.column("built_in", sa.Boolean()),
    )
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(roles.c.id, roles.c.name, roles.c.permissions).where(roles.c.built_in)
    ).all()
    for role_id, name, permissions in rows:
        grants = NEW_GRANTS.get(name)
        if not grants:
            continue
        merged = sorted(set(permissions or []) | set(grants))
        bind.execute(roles.update().where(roles.c.id == role_id).values(permissions=merged))


def downgrade() -> None:
    with op.batch_alter_table("invoices") as batch:
        batch.drop_constraint("waived_in_range", type_="check")
        batch.drop_constraint("refunded_in_range", type_="check")
        batch.drop_constraint(
            batch.f("fk_invoices_collection_id_device_collections"), type_="foreignkey"
        )
        batch.drop_constraint(batch.f("fk_invoices_annual_fee_id_annual_fees"), type_="foreignkey")
        batch.drop_constraint(
            batch.f("fk_invoices_premium_enrollment_id_insurance_enrollments"), type_="foreignkey"
        )
        batch.drop_constraint(batch.f("uq_invoices_annual_fee_id"), type_="unique")
        batch.drop_index(batch.f("ix_invoices_premium_enrollment_id"))
        for column in (
            "premium_enrollment_id",
            "collection_id",
            "annual_fee_id",
            "refunded_cents",
            "waived_cents",
            "kind",
        ):
            batch.drop_column(column)
    op.drop_index("uq_insurance_enrollments_live", table_name="insurance_enrollments")
    with op.batch_alter_table("insurance_enrollments") as batch:
        batch.drop_constraint(
            batch.f("fk_insurance_enrollments_enrolled_by_id_staff"), type_="foreignkey"
        )
        batch.drop_constraint(
            batch.f("fk_insurance_enrollments_premium_waived_by_id_staff"), type_="foreignkey"
        )
        for column in (
            "expiry_reminded_on",
            "source",
            "enrolled_by_id",
            "activated_at",
            "premium_waived_by_id",
            "premium_waiver_reason",
        ):
            batch.drop_column(column)
    with op.batch_alter_table("insurance_policies") as batch:
        for column in (
            "expiry_reminder_days",
            "coverage_starts",
            "enroll_closes_on",
            "enroll_opens_on",
            "premium_cents",
            "term_end",
            "term_start",
            "term_label",
        ):
            batch.drop_column(column)
    with op.batch_alter_table("district_settings") as batch:
        batch.drop_column("waiver_approval_cents")
    op.drop_index(op.f("ix_invoice_adjustments_invoice_id"), table_name="invoice_adjustments")
    op.drop_table("invoice_adjustments")
    op.drop_index(op.f("ix_device_coverages_device_id"), table_name="device_coverages")
    op.drop_table("device_coverages")
    op.drop_index(op.f("ix_device_collections_student_id"), table_name="device_collections")
    op.drop_index(op.f("ix_device_collections_device_id"), table_name="device_collections")
    op.drop_table("device_collections")
    op.drop_table("annual_fees")
