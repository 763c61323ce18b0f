"""The statements that bill an annual fee to thousands of students at once, set-based.

The apply itself (`services.bulk_fees.BulkFeeBiller`) runs one `bill_batch` per transaction.

Each batch is one transaction of a few statements, whatever its size:

1. the `counters` row for invoice numbers is locked (UPDATE … RETURNING), so invoice numbers
   stay gap-free and two applies of the same fee take turns, each seeing what the other wrote;
2. `INSERT … SELECT` the next matching students not yet billed (NOT EXISTS), ON CONFLICT DO
   NOTHING on the unique (fee, student) key as the last guard, with a temporary number;
3. the new invoices are numbered in id order from the counter, which moves on by as many;
4. `INSERT … SELECT` their line, their activity entry, the `invoice_issued` notice for each
   reachable guardian and each notice's outbox row, exactly as `issue_invoice` and
   `queue_notice` write them one at a time.

A crash loses at most the batch in flight (rolled back whole); a rerun bills only those left.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Date, String, and_, case, exists, func, literal, select, update
from sqlalchemy import cast as sql_cast
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from storage import models as m
from storage import set_sql
from storage.notices import reachable
from workflows.errors import NotFound
from workflows.fees import ENTITY, LINE_KIND, BillingTerms, FeeCounts
from workflows.i18n import _
from workflows.invoices import InvoiceKind, InvoiceStatus, NoticeTemplate
from workflows.permissions import Actor

COUNTER = "invoice"
TEMP_PREFIX = "~fee"  # a number no real invoice has, until the batch is numbered

# --- who matches -----------------------------------------------------------------------------


def matching(student: Any, grades: Sequence[str], building_ids: Sequence[Any]) -> list[Any]:
    """`workflows.fees.student_matches` in SQL; `student` is `m.Student` or the table's `.c`."""
    conditions: list[Any] = [student.active.is_(True)]
    if grades:
        conditions.append(student.grade.in_(list(grades)))
    if building_ids:
        conditions.append(student.building_id.in_([int(b) for b in building_ids]))
    return conditions


def not_billed(student: Any, fee_id: int) -> Any:
    inv = set_sql.INVOICES
    return ~exists().where(inv.c.annual_fee_id == fee_id, inv.c.student_id == student.id)


def has_reachable_guardian(student: Any) -> Any:
    gs, g = set_sql.GUARDIANSHIPS, set_sql.GUARDIANS
    return exists(
        select(gs.c.student_id)
        .select_from(gs.join(g, g.c.id == gs.c.guardian_id))
        .where(gs.c.student_id == student.id, reachable(g.c))
    )


async def fee_counts(
    session: AsyncSession, fee_id: int, grades: Sequence[str], building_ids: Sequence[Any]
) -> FeeCounts:
    s = m.Student
    unbilled = and_(*matching(s, grades, building_ids), not_billed(s, fee_id))
    to_bill, without_email = (
        await session.execute(
            select(
                func.count(),
                func.coalesce(
                    func.sum(case((~has_reachable_guardian(s), 1), else_=0)),
                    0,
                ),
            ).where(unbilled)
        )
    ).one()
    already = (
        await session.execute(select(func.count()).where(m.Invoice.annual_fee_id == fee_id))
    ).scalar_one()
    return FeeCounts(
        to_bill=int(to_bill), already_billed=int(already), without_email=int(without_email)
    )


# --- applying --------------------------------------------------------------------------------


async def fee_to_bill(session: AsyncSession, fee_id: int) -> tuple[m.AnnualFee, m.DistrictSettings]:
    """The fee and the district's settings it is billed under."""
    fee = await session.get(m.AnnualFee, fee_id)
    settings = await session.get(m.DistrictSettings, 1)
    if fee is None:
        raise NotFound(_("Fee #{id} doesn't exist.", id=fee_id))
    if settings is None:
        raise NotFound(_("District settings are missing; run `devicecare db upgrade`."))
    return fee, settings


async def billed_count(session: AsyncSession, fee_id: int) -> int:
    """How many invoices the fee has, whoever billed them."""
    count = (
        await session.execute(select(func.count()).where(m.Invoice.annual_fee_id == fee_id))
    ).scalar_one()
    return int(count)


def log_fee_applied(
    session: AsyncSession,
    fee_id: int,
    actor: Actor,
    now: datetime,
    *,
    before: dict[str, Any],
    after: dict[str, Any],
) -> None:
    """The fee's activity entry for one apply."""
    session.add(
        m.ActivityEntry(
            at=now,
            actor_staff_id=actor.staff_id,
            actor_label=actor.name,
            entity_type=ENTITY,
            entity_id=fee_id,
            action="fee_applied",
            before=before,
            after=after,
        )
    )


async def bill_batch(
    session: AsyncSession,
    *,
    fee_id: int,
    grades: list[str],
    buildings: list[Any],
    terms: BillingTerms,
    prefix: str,
    actor: Actor,
    after_student: int,
    now_at: datetime,
    limit: int,
    mail_domain: str,
) -> tuple[int, int, int]:
    """One transaction's worth: (invoices made, last student id, notices queued)."""
    is_pg = set_sql.is_postgres(session)
    base = await _lock_counter(session, is_pg)
    inv, s = set_sql.INVOICES, set_sql.STUDENTS
    now = literal(now_at, type_=m.UtcDateTime())
    temp_number = literal(f"{TEMP_PREFIX}{fee_id}:") + sql_cast(s.c.id, String)
    candidates = (
        select(
            temp_number,
            s.c.id,
            literal(InvoiceStatus.UNPAID.value),
            literal(terms.amount_cents),
            literal(0),
            literal(terms.amount_cents),
            literal(0),
            literal(terms.due_date, type_=Date()),
            literal(terms.automation_enabled),
            literal(False),
            literal(False),
            literal(False),
            literal(actor.staff_id, type_=m.Id),
            now,
            literal(0),
            literal(0),
            literal(InvoiceKind.FEE.value),
            literal(0),
            literal(0),
            literal(fee_id, type_=m.Id),
        )
        .where(
            s.c.id > after_student,
            *matching(s.c, grades, buildings),
            not_billed(s.c, fee_id),
        )
        .order_by(s.c.id)
        .limit(limit)
    )
    columns = [
        "number", "student_id", "status", "subtotal_cents", "insurance_cents",
        "total_cents", "paid_cents", "due_date", "automation_enabled", "auto_cancelled",
        "cap_reached", "override_applied", "created_by_id", "created_at",
        "automation_epoch", "reminder_count", "kind", "waived_cents", "refunded_cents",
        "annual_fee_id",
    ]  # fmt: skip
    insert = set_sql.dialect_insert(is_pg)
    stmt = (
        insert(inv)
        .from_select(columns, candidates)
        .on_conflict_do_nothing()
        .returning(inv.c.id, inv.c.student_id)
    )
    rows = (await session.execute(stmt)).all()
    if not rows:
        return 0, after_student, 0
    ids = sorted(r.id for r in rows)
    last_student = max(r.student_id for r in rows)
    await _number(session, is_pg, ids, base, prefix)
    await session.execute(
        update(set_sql.COUNTERS)
        .where(set_sql.COUNTERS.c.name == COUNTER)
        .values(value=base + len(ids))
    )
    batch = inv.c.id.in_(ids)
    await session.execute(_insert_lines(batch, terms))
    await session.execute(_insert_activity(batch, terms, actor, now_at, is_pg))
    queued = await _queue_notices(session, is_pg, batch, now_at, mail_domain)
    return len(ids), last_student, queued


async def _number(
    session: AsyncSession, is_pg: bool, ids: list[int], base: int, prefix: str
) -> None:
    """Give the batch its real numbers, in id order, after the counter's `base`."""
    inv = set_sql.INVOICES
    ranked = (
        select(inv.c.id, func.row_number().over(order_by=inv.c.id).label("seq"))
        .where(inv.c.id.in_(ids))
        .subquery()
    )
    value = literal(base) + ranked.c.seq
    if is_pg:
        text = sql_cast(value, String)
        padded: Any = case((value < 1_000_000, func.lpad(text, 6, "0")), else_=text)
    else:
        padded = func.printf("%06d", value)
    await session.execute(
        update(inv).where(inv.c.id == ranked.c.id).values(number=literal(f"{prefix}-") + padded)
    )


async def _queue_notices(
    session: AsyncSession, is_pg: bool, batch: Any, now_at: datetime, mail_domain: str
) -> int:
    """`invoice_issued` for every reachable guardian, and each notice's outbox row."""
    inv, gs, g, n, o = (
        set_sql.INVOICES,
        set_sql.GUARDIANSHIPS,
        set_sql.GUARDIANS,
        set_sql.NOTICES,
        set_sql.OUTBOX,
    )
    now = literal(now_at, type_=m.UtcDateTime())
    template = NoticeTemplate.INVOICE_ISSUED.value
    notices = (
        select(
            inv.c.id,
            g.c.id,
            literal(template),
            literal("invoice-issued:") + sql_cast(inv.c.id, String),
            g.c.email,
            set_sql.message_id(is_pg, mail_domain),
            set_sql.json_object(is_pg),  # {}: issue_invoice queues no extra context
            literal("queued"),
            now,
        )
        .select_from(inv)
        .join(gs, gs.c.student_id == inv.c.student_id)
        .join(g, g.c.id == gs.c.guardian_id)
        .where(batch, reachable(g.c))
        .order_by(inv.c.id, g.c.id)
    )
    columns = [
        "invoice_id", "guardian_id", "template", "dedupe_key", "to_address", "message_id",
        "context", "status", "created_at",
    ]  # fmt: skip
    added = cast(CursorResult[Any], await session.execute(n.insert().from_select(columns, notices)))
    fresh = (
        select(n.c.id)
        .select_from(n.join(inv, inv.c.id == n.c.invoice_id))
        .where(batch, n.c.template == template)
        .subquery()
    )
    await session.execute(
        o.insert().from_select(
            set_sql.OUTBOX_COLUMNS, set_sql.outbox_rows(fresh, now_at, is_pg=is_pg)
        )
    )
    return int(added.rowcount or 0)


async def _lock_counter(session: AsyncSession, is_pg: bool) -> int:
    """The invoice counter's value, its row locked until the batch commits.

    A no-op UPDATE takes the row lock on PostgreSQL (SQLite's BEGIN IMMEDIATE already holds
    the database's one write lock); a second apply waits here, then sees this batch's rows.
    """
    c = set_sql.COUNTERS
    stmt = update(c).where(c.c.name == COUNTER).values(value=c.c.value).returning(c.c.value)
    value = (await session.execute(stmt)).scalar_one_or_none()
    if value is not None:
        return int(value)
    insert = set_sql.dialect_insert(is_pg)
    await session.execute(
        insert(c).values(name=COUNTER, value=0).on_conflict_do_nothing(index_elements=["name"])
    )
    return int((await session.execute(stmt)).scalar_one())


def _insert_lines(batch: Any, terms: BillingTerms) -> Any:
    inv = set_sql.INVOICES
    rows = select(
        inv.c.id,
        literal(1),
        literal(terms.description),
        literal(LINE_KIND),
        literal(1),
        literal(terms.amount_cents),
        literal(terms.amount_cents),
    ).where(batch)
    columns = [
        "invoice_id", "position", "description", "kind", "quantity", "unit_cents", "amount_cents",
    ]  # fmt: skip
    return set_sql.LINES.insert().from_select(columns, rows)


def _insert_activity(batch: Any, terms: BillingTerms, actor: Actor, now: Any, is_pg: bool) -> Any:
    """The 'created' entry `issue_invoice` writes, one per invoice."""
    inv = set_sql.INVOICES
    after = set_sql.json_object(
        is_pg,
        "number", inv.c.number,
        "status", inv.c.status,
        "subtotal_cents", inv.c.subtotal_cents,
        "insurance_cents", inv.c.insurance_cents,
        "total_cents", inv.c.total_cents,
        "paid_cents", inv.c.paid_cents,
        "waived_cents", inv.c.waived_cents,
        "refunded_cents", inv.c.refunded_cents,
        "kind", inv.c.kind,
        "lines", literal(1),
        "due_date", literal(terms.due_date.isoformat()),
    )  # fmt: skip
    rows = select(
        literal(now, type_=m.UtcDateTime()),
        literal(actor.staff_id, type_=m.Id),
        literal(actor.name),
        literal("invoice"),
        inv.c.id,
        literal("created"),
        after,
    ).where(batch)
    return set_sql.ACTIVITY.insert().from_select(
        ["at", "actor_staff_id", "actor_label", "entity_type", "entity_id", "action", "after"],
        rows,
    )
