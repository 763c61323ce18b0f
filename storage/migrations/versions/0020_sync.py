"""Syncs from the district's systems: each run, what each source last said, part numbers.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-08 02:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "sync_runs",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("trigger", sa.String(length=10), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("sample", sa.JSON(), nullable=False),
        sa.Column("removals", sa.Integer(), nullable=False),
        sa.Column("base", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("cursor", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "trigger IN ('nightly', 'cli')", name=op.f("ck_sync_runs_trigger_known")
        ),
        sa.CheckConstraint(
            "status IN ('running', 'applied', 'dry_run', 'held', 'failed', 'no_changes')",
            name=op.f("ck_sync_runs_status_known"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_runs")),
    )
    op.create_index("ix_sync_runs_source_started", "sync_runs", ["source", "started_at"])
    op.create_table(
        "source_records",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=False),
        sa.Column("entity", sa.String(length=20), nullable=False),
        sa.Column("entity_id", Id, nullable=True),
        sa.Column("facts", sa.JSON(), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "entity IN ('device', 'student', 'guardian', 'building')",
            name=op.f("ck_source_records_entity_known"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_source_records")),
        sa.UniqueConstraint("source", "external_id", name=op.f("uq_source_records_source")),
    )
    op.create_index("ix_source_records_entity", "source_records", ["entity", "entity_id"])
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("part_number", sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("part_number")
    op.drop_index("ix_source_records_entity", table_name="source_records")
    op.drop_table("source_records")
    op.drop_index("ix_sync_runs_source_started", table_name="sync_runs")
    op.drop_table("sync_runs")
