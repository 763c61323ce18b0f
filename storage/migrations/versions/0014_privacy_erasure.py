"""Erasing a departed family's personal data (devicecare privacy erase).

- `privacy_erasures` records each erasure (who, when, the pseudonym), without personal data.
- Guardians and students remember when they were erased (`erased_at`); their family links stop
  opening.
- The activity log stays append-only, with one exception: while an erasure is in progress in
  the same transaction (a `privacy_erasures` row without `finished_at`, which no other
  transaction can see), an entry's `before`, `after` and `comment` may be rewritten to replace
  personal data by the pseudonym. Who acted, when, on what and which action stay fixed, and
  DELETE is still refused.
- The shipped Admin role gets the new Manage Family Data permission.

Revision ID: 0014
Revises: 0012
Create Date: 2026-12-07 05:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY_MESSAGE = "activity_log is append-only"
PERMISSION = "manage_family_data"
# Columns an erasure may never change: the audit trail's who, when, what and which.
FIXED = ("id", "at", "actor_staff_id", "actor_label", "entity_type", "entity_id", "action")
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
ERASING = "EXISTS (SELECT 1 FROM privacy_erasures WHERE finished_at IS NULL)"


def upgrade() -> None:
    op.create_table(
        "privacy_erasures",
        sa.Column("id", ID, nullable=False),
        sa.Column("pseudonym", sa.String(length=40), nullable=False),
        sa.Column("erased_by_id", ID, nullable=True),
        sa.Column("erased_by_label", sa.String(length=200), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("summary", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["erased_by_id"],
            ["staff.id"],
            name=op.f("fk_privacy_erasures_erased_by_id_staff"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_privacy_erasures")),
        sa.UniqueConstraint("pseudonym", name=op.f("uq_privacy_erasures_pseudonym")),
    )
    for table in ("guardians", "students"):
        op.add_column(table, sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True))
    _allow_erasure_updates()
    _grant_admin()


def _allow_erasure_updates() -> None:
    if op.get_context().dialect.name == "sqlite":
        changed = " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in FIXED)
        op.execute("DROP TRIGGER IF EXISTS activity_log_no_update")
        op.execute(
            "CREATE TRIGGER activity_log_no_update BEFORE UPDATE ON activity_log "
            f"WHEN NOT {ERASING} OR {changed} "
            f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END"
        )
        return
    same = " AND ".join(f"NEW.{c} IS NOT DISTINCT FROM OLD.{c}" for c in FIXED)
    op.execute(
        "CREATE OR REPLACE FUNCTION activity_log_refuse_change() RETURNS trigger "
        "LANGUAGE plpgsql AS $$ BEGIN "
        f"IF TG_OP = 'UPDATE' AND {ERASING} AND {same} THEN RETURN NEW; END IF; "
        f"RAISE EXCEPTION '{APPEND_ONLY_MESSAGE}'; END $$"
    )


def _grant_admin() -> None:
    roles = sa.table(
        "roles",
        sa.column("id", sa.Integer),
        sa.column("name", sa.String),
        sa.column("built_in", sa.Boolean),
        sa.column("permissions", sa.JSON),
    )
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(roles.c.id, roles.c.permissions).where(
            roles.c.name == "Admin", roles.c.built_in.is_(True)
        )
    ).all()
    for role_id, permissions in rows:
        if PERMISSION not in (permissions or []):
            bind.execute(
                sa.update(roles)
                .where(roles.c.id == role_id)
                .values(permissions=sorted([*(permissions or []), PERMISSION]))
            )


def downgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS activity_log_no_update")
        op.execute(
            "CREATE TRIGGER activity_log_no_update BEFORE UPDATE ON activity_log "
            f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END"
        )
    else:
        op.execute(
            "CREATE OR REPLACE FUNCTION activity_log_refuse_change() RETURNS trigger "
            f"LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '{APPEND_ONLY_MESSAGE}'; END $$"
        )
    for table in ("students", "guardians"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("erased_at")
    op.drop_table("privacy_erasures")
