"""indexes for the reports' date ranges

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

Every report picks its rows by a date range (incidents by the day they happened or the time
they closed, invoices by when they were issued or cancelled, repeat-offender flags by when they
were raised). Without these, a short range such as last week still scans the whole table; see
docs/performance.md, "Reports".
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = (
    ("ix_incidents_occurred_on", "incidents", ["occurred_on"]),
    ("ix_incidents_closed_at", "incidents", ["closed_at"]),
    ("ix_invoices_created_at", "invoices", ["created_at"]),
    ("ix_invoices_cancelled_at", "invoices", ["cancelled_at"]),
    ("ix_student_flags_flagged_at", "student_flags", ["flagged_at"]),
)


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _columns in reversed(INDEXES):
        op.drop_index(name, table_name=table)
