"""Pieces of the INSERT … SELECT statements that write notices and outbox rows for a batch.

The billing run and the bulk fee apply both write rows in sets rather than one by one; the
database makes what Python would otherwise make per row (a Message-ID, a JSON payload), in the
dialect at hand.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import String, Table, func, literal, select
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from storage import models as m
from storage.notices import NOTICE_KIND

# The models' Core tables, for statements over many rows at once.
INVOICES = cast(Table, m.Invoice.__table__)
LINES = cast(Table, m.InvoiceLine.__table__)
STUDENTS = cast(Table, m.Student.__table__)
GUARDIANS = cast(Table, m.Guardian.__table__)
GUARDIANSHIPS = cast(Table, m.Guardianship.__table__)
ACTIVITY = cast(Table, m.ActivityEntry.__table__)
NOTICES = cast(Table, m.Notice.__table__)
OUTBOX = cast(Table, m.OutboxMessage.__table__)
COUNTERS = cast(Table, m.Counter.__table__)
STEPS = cast(Table, m.BillingStep.__table__)

OUTBOX_COLUMNS = [
    "kind", "dedupe_key", "payload", "status", "attempts", "next_attempt_at", "created_at",
]  # fmt: skip


def is_postgres(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def dialect_insert(is_pg: bool) -> Any:
    """The INSERT that knows ON CONFLICT, for the dialect at hand."""
    return pg_insert if is_pg else sqlite_insert


def message_id(is_pg: bool, mail_domain: str) -> Any:
    """A random Message-ID made by the database, shaped as `storage.notices.new_message_id`."""
    if is_pg:
        random_hex: Any = func.replace(sql_cast(func.gen_random_uuid(), String), "-", "")
    else:
        random_hex = func.lower(func.hex(func.randomblob(16)))
    return literal("<") + random_hex + literal(f"@{mail_domain}>")


def json_object(is_pg: bool, *pairs: Any) -> Any:
    """A JSON object from key, value, key, value…; plain strings become literals."""
    args = [literal(p) if isinstance(p, str) else p for p in pairs]
    return func.json_build_object(*args) if is_pg else func.json_object(*args)


def outbox_rows(notices: Any, now_at: datetime, *, is_pg: bool) -> Any:
    """SELECT of an email outbox row for each notice id in `notices` (a subquery)."""
    now = literal(now_at, type_=m.UtcDateTime())
    return select(
        literal(NOTICE_KIND),
        literal("notice:") + sql_cast(notices.c.id, String),
        json_object(is_pg, "notice_id", notices.c.id),
        literal("pending"),
        literal(0),
        now,
        now,
    )
