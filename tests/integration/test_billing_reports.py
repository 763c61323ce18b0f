"""Billing reports against the store (SQLite and PostgreSQL), with hand-computed figures."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from storage import models as m
from storage.billing_reports import (
    EventKind,
    automation_report,
    cancelled_report,
    find_invoice_id,
    invoice_timeline,
)
from storage.db import session_factory
from storage.uow import UnitOfWorkFactory
from tests.builders import add_staff
from tests.integration.billing_helpers import TZ, add_family, add_invoice, at_run_time, runner
from workflows.clock import FixedClock
from workflows.errors import ValidationError
from workflows.invoices import (
    cancel_invoice,
    change_due_date,
    change_invoice_status,
    restore_invoice,
    set_invoice_automation,
)
from workflows.payments import PaymentMethod, RecordPayment, record_payment
from workflows.permissions import Actor
from workflows.ports import Context

JAN1, MAR1, MAR10, APR1 = date(2026, 1, 1), date(2026, 3, 1), date(2026, 3, 10), date(2026, 4, 1)
AUTOMATION = "DeviceCare automation"


def local(day: date, hour: int, minute: int = 0) -> datetime:
    """A district-time instant, as UTC."""
    return datetime.combine(day, time(hour, minute), tzinfo=TZ).astimezone(UTC)


async def run_on(engine: AsyncEngine, clock: FixedClock, *days: date) -> None:
    """The billing run on just these days (each covers the days since the previous one)."""
    for day in days:
        clock.set(at_run_time(day))
        result = await runner(engine, clock).run(day)
        assert result.ran, result.message


async def turn_on_auto_cancel(stores: UnitOfWorkFactory) -> None:
    async with stores() as store:
        (await store.settings.get()).auto_cancel_enabled = True
        await store.commit()


async def update_row(engine: AsyncEngine, model: type, row_id: int, **values: object) -> None:
    """Set-up only: puts a row in the state another part (the mail worker) would leave it."""
    async with session_factory(engine)() as session:
        await session.execute(update(model).where(model.id == row_id).values(**values))  # type: ignore[attr-defined]
        await session.commit()


async def as_staff(
    stores: UnitOfWorkFactory, clock: FixedClock, at: datetime, actor: Actor, work: object
) -> None:
    clock.set(at)
    async with stores() as store:
        await work(Context(store, clock, TZ))  # type: ignore[operator]
        await store.commit()


# --- invoices by automation status -------------------------------------------------------------


async def test_automation_report_groups_and_lists_open_invoices(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    (rivera,), _ = await add_family(stores, "Rivera")
    (chen,), _ = await add_family(stores, "Chen")
    i1 = await add_invoice(stores, rivera, created=JAN1, due=APR1, total_cents=10_000)
    i2 = await add_invoice(
        stores, rivera, created=JAN1, due=APR1, total_cents=5_000, paid_cents=1_000
    )
    i3 = await add_invoice(
        stores, rivera, created=JAN1, due=MAR10, total_cents=7_500, status="first"
    )
    i4 = await add_invoice(
        stores,
        chen,
        created=JAN1,
        due=MAR1,
        total_cents=20_000,
        paid_cents=5_000,
        status="final",
        automation=False,
    )
    i5 = await add_invoice(
        stores, chen, created=JAN1, due=None, total_cents=3_000, automation=False
    )
    # Closed invoices are not in the report.
    await add_invoice(
        stores, chen, created=JAN1, due=APR1, total_cents=10_000, paid_cents=10_000, status="paid"
    )
    await add_invoice(
        stores,
        chen,
        created=JAN1,
        due=APR1,
        total_cents=9_000,
        status="cancelled",
        automation=False,
    )
    # Mar 18 is 14 days before Apr 1: one reminder each for i1 and i2 (automation on).
    await run_on(engine, clock, date(2026, 3, 18))

    async with stores() as store:
        report = await automation_report(store.session)
        off = await automation_report(store.session, automation=False)
        on_page = await automation_report(store.session, automation=True, limit=2, offset=1)
        summary_only = await automation_report(store.session, limit=0)
        await store.commit()

    assert [(g.automation_enabled, g.status, g.count, g.balance_cents) for g in report.groups] == [
        (True, "unpaid", 2, 10_000 + 4_000),
        (True, "first", 1, 7_500),
        (False, "unpaid", 1, 3_000),
        (False, "final", 1, 15_000),
    ]
    assert (report.count(True), report.balance_cents(True)) == (3, 21_500)
    assert (report.count(False), report.balance_cents(False)) == (2, 18_000)
    # Most overdue first; no due date last.
    assert [r.invoice_id for r in report.rows] == [i4, i3, i1, i2, i5]
    assert report.listed == 5
    first = report.rows[2]
    assert (first.number, first.student, first.status, first.due_date) == (
        "INV-000001",
        "Kid0 Rivera",
        "unpaid",
        APR1,
    )
    assert (first.balance_cents, first.automation_enabled) == (10_000, True)
    assert (first.reminder_count, first.last_reminder_at) == (1, at_run_time(date(2026, 3, 18)))
    assert (report.rows[0].reminder_count, report.rows[0].last_reminder_at) == (0, None)
    assert report.rows[0].balance_cents == 15_000

    assert [r.invoice_id for r in off.rows] == [i4, i5] and off.listed == 2
    assert off.groups == report.groups  # the figures always cover both
    assert [r.invoice_id for r in on_page.rows] == [i1, i2] and on_page.listed == 3
    assert summary_only.rows == () and summary_only.listed == 5


async def test_automation_report_of_an_empty_district(
    engine: AsyncEngine, stores: UnitOfWorkFactory
) -> None:
    async with stores() as store:
        report = await automation_report(store.session)
        await store.commit()
    assert report.groups == () and report.rows == () and report.listed == 0
    assert report.count(True) == 0 and report.balance_cents(False) == 0


# --- cancelled invoices ------------------------------------------------------------------------


async def test_cancelled_report_with_auto_cancelled_designation(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    await turn_on_auto_cancel(stores)
    clerk = await add_staff(stores, "Billing Clerk")
    (rivera,), _ = await add_family(stores, "Rivera")
    (chen,), _ = await add_family(stores, "Chen")
    auto = await add_invoice(
        stores,
        rivera,
        created=date(2025, 12, 1),
        due=JAN1,
        total_cents=10_000,
        status="collections",
    )
    # Final notice on Mar 1: the 60 days of auto-cancellation end on Apr 30.
    await update_row(engine, m.Invoice, auto, final_notice_on=MAR1)
    b = await add_invoice(stores, chen, created=JAN1, due=APR1, total_cents=4_500)
    c = await add_invoice(stores, chen, created=JAN1, due=APR1, total_cents=2_500)
    d = await add_invoice(stores, chen, created=JAN1, due=APR1, total_cents=1_000)
    e = await add_invoice(stores, chen, created=JAN1, due=APR1, total_cents=1_500)
    f = await add_invoice(stores, chen, created=JAN1, due=APR1, total_cents=6_000)
    g = await add_invoice(stores, chen, created=JAN1, due=APR1, total_cents=7_000)

    def cancel(invoice_id: int, reason: str):  # type: ignore[no-untyped-def]
        return lambda ctx: cancel_invoice(ctx, clerk, invoice_id, reason=reason)

    # Apr 9 23:30 district time (Apr 10 in UTC): inside the range.
    await as_staff(
        stores,
        clock,
        local(date(2026, 4, 9), 23, 30),
        clerk,
        cancel(b, "Device returned undamaged"),
    )
    # The range's last minute, and the next day's first half hour.
    await as_staff(stores, clock, local(date(2026, 4, 30), 23, 30), clerk, cancel(c, "Duplicate"))
    await as_staff(stores, clock, local(date(2026, 5, 1), 0, 30), clerk, cancel(d, "Too late"))
    await as_staff(stores, clock, local(date(2026, 3, 31), 12), clerk, cancel(e, "Too early"))
    # Cancelled, restored and cancelled again: the latest reason is the one reported.
    await as_staff(stores, clock, local(date(2026, 4, 5), 9), clerk, cancel(f, "Wrong family"))
    await as_staff(
        stores, clock, local(date(2026, 4, 6), 9), clerk, lambda ctx: restore_invoice(ctx, clerk, f)
    )
    await as_staff(stores, clock, local(date(2026, 4, 20), 9), clerk, cancel(f, "Paid at school"))
    # Cancelled and restored: open again, not in the report.
    await as_staff(stores, clock, local(date(2026, 4, 7), 9), clerk, cancel(g, "Oops"))
    await as_staff(
        stores, clock, local(date(2026, 4, 8), 9), clerk, lambda ctx: restore_invoice(ctx, clerk, g)
    )
    await run_on(engine, clock, date(2026, 4, 30))

    async with stores() as store:
        report = await cancelled_report(store.session, APR1, date(2026, 4, 30), tz=TZ)
        page = await cancelled_report(
            store.session, APR1, date(2026, 4, 30), tz=TZ, limit=2, offset=1
        )
        march = await cancelled_report(store.session, MAR1, date(2026, 3, 31), tz=TZ)
        await store.commit()

    assert [
        (r.invoice_id, r.amount_cents, r.auto_cancelled, r.designation, r.cancelled_by, r.reason)
        for r in report.rows
    ] == [
        (b, 4_500, False, "Cancelled", "Billing Clerk Person", "Device returned undamaged"),
        (f, 6_000, False, "Cancelled", "Billing Clerk Person", "Paid at school"),
        (
            auto,
            10_000,
            True,
            "Auto-Cancelled",
            AUTOMATION,
            "Invoice automatically cancelled on 2026-04-30 after 119 days overdue.",
        ),
        (c, 2_500, False, "Cancelled", "Billing Clerk Person", "Duplicate"),
    ]
    assert report.rows[0].number == "INV-000002" and report.rows[0].student == "Kid0 Chen"
    assert report.rows[2].cancelled_at == at_run_time(date(2026, 4, 30))
    assert report.rows[3].cancelled_at == local(date(2026, 4, 30), 23, 30)
    assert (report.auto_count, report.auto_cents) == (1, 10_000)
    assert (report.manual_count, report.manual_cents) == (3, 4_500 + 6_000 + 2_500)
    assert (report.count, report.amount_cents) == (4, 23_000)
    assert [r.invoice_id for r in page.rows] == [f, auto]
    assert (page.auto_count, page.manual_count) == (1, 3)  # totals cover the whole range
    assert [r.invoice_id for r in march.rows] == [e] and march.auto_count == 0


async def test_cancelled_report_refuses_a_reversed_range(
    engine: AsyncEngine, stores: UnitOfWorkFactory
) -> None:
    async with stores() as store:
        with pytest.raises(ValidationError, match="ends before it starts"):
            await cancelled_report(store.session, APR1, MAR1, tz=TZ)
        await store.commit()


# --- one invoice's timeline --------------------------------------------------------------------


async def test_invoice_timeline_in_time_order(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    clerk = await add_staff(stores, "Billing Clerk")
    (kid0, kid1), _ = await add_family(stores, "Chen", students=2)
    x = await add_invoice(stores, kid0, created=JAN1, due=APR1, total_cents=10_000)
    y = await add_invoice(stores, kid1, created=JAN1, due=APR1, total_cents=5_000)

    # Mar 18: both invoices' 14-day reminders go to the one guardian as a digest.
    await run_on(engine, clock, date(2026, 3, 18))
    async with stores() as store:
        x_notice, y_notice = [
            n
            for n in (
                await store.session.execute(
                    m.Notice.__table__.select().order_by(m.Notice.id)  # type: ignore[attr-defined]
                )
            ).all()
            if n.template == "due_reminder"
        ]
        await store.commit()
    digest = x_notice.digest_id
    assert digest is not None and y_notice.digest_id == digest
    await update_row(
        engine,
        m.Notice,
        digest,
        status="sent",
        sent_at=local(date(2026, 3, 18), 6, 5),
        viewed_at=local(date(2026, 3, 18), 19, 40),
    )
    await update_row(engine, m.Invoice, y, paid_cents=5_000, status="paid")

    # Mar 25: the 7-day reminder alone; the mail server refused it.
    await run_on(engine, clock, date(2026, 3, 25))
    async with stores() as store:
        notices = await store.session.execute(
            m.Notice.__table__.select().where(  # type: ignore[attr-defined]
                m.Notice.invoice_id == x, m.Notice.run_day == date(2026, 3, 25)
            )
        )
        (reminder,) = notices.all()
        await store.commit()
    await update_row(
        engine, m.Notice, reminder.id, status="failed", last_error="550 mailbox unavailable"
    )

    # Apr 8: 7 days overdue, the first notice and Unpaid -> 1st Notice.
    await run_on(engine, clock, date(2026, 4, 8))
    await as_staff(
        stores,
        clock,
        datetime(2026, 4, 9, 16, tzinfo=UTC),
        clerk,
        lambda ctx: change_invoice_status(
            ctx, clerk, x, "unpaid", reason="Family called; payment plan agreed"
        ),
    )
    await as_staff(
        stores,
        clock,
        datetime(2026, 4, 10, 16, tzinfo=UTC),
        clerk,
        lambda ctx: record_payment(
            ctx,
            clerk,
            RecordPayment(
                invoice_id=x,
                amount_cents=2_500,
                method=PaymentMethod.CHECK,
                idempotency_key="check-1001",
                reference="1001",
            ),
        ),
    )
    await as_staff(
        stores,
        clock,
        datetime(2026, 4, 11, 16, tzinfo=UTC),
        clerk,
        lambda ctx: set_invoice_automation(ctx, clerk, x, False),
    )
    await as_staff(
        stores,
        clock,
        datetime(2026, 4, 11, 16, 30, tzinfo=UTC),
        clerk,
        lambda ctx: change_due_date(ctx, clerk, x, date(2026, 5, 1)),
    )

    async with stores() as store:
        timeline = await invoice_timeline(store.session, x, tz=TZ)
        other = await invoice_timeline(store.session, y, tz=TZ)
        missing = await invoice_timeline(store.session, 999_999, tz=TZ)
        await store.commit()
    assert timeline is not None and other is not None and missing is None

    head = timeline.invoice
    assert (head.number, head.student, head.status, head.status_label) == (
        "INV-000001",
        "Kid0 Chen",
        "unpaid",
        "Unpaid",
    )
    assert (head.total_cents, head.paid_cents, head.balance_cents) == (10_000, 2_500, 7_500)
    assert (head.due_date, head.automation_enabled, head.is_open) == (date(2026, 5, 1), False, True)
    assert (head.reminder_count, head.last_reminder_at) == (3, at_run_time(date(2026, 4, 8)))

    to = "chen0@example.org"
    clerk_name = "Billing Clerk Person"
    mar18, mar25 = at_run_time(date(2026, 3, 18)), at_run_time(date(2026, 3, 25))
    apr8 = at_run_time(date(2026, 4, 8))
    assert [(e.at, e.kind, e.summary, e.actor, e.note) for e in timeline.events] == [
        (local(JAN1, 10), EventKind.CREATED, "Invoice created for $100.00", None, None),
        (
            mar18,
            EventKind.STEP,
            "14-day pre-due reminder, billing run 2026-03-18, 1 recipient(s)",
            AUTOMATION,
            None,
        ),
        (
            mar18,
            EventKind.NOTICE,
            f"Reminder to {to}: in digest {digest} (sent 2026-03-18 06:05, "
            "viewed 2026-03-18 19:40)",
            None,
            None,
        ),
        (
            mar25,
            EventKind.STEP,
            "7-day pre-due reminder, billing run 2026-03-25, 1 recipient(s)",
            AUTOMATION,
            None,
        ),
        (mar25, EventKind.NOTICE, f"Reminder to {to}: failed", None, "550 mailbox unavailable"),
        (
            apr8,
            EventKind.STEP,
            "1st overdue notice, billing run 2026-04-08, 7 days overdue, 1 recipient(s)",
            AUTOMATION,
            None,
        ),
        (apr8, EventKind.STATUS, "Status Unpaid \u2192 1st Notice", AUTOMATION, None),
        (apr8, EventKind.NOTICE, f"1st overdue to {to}: queued", None, None),
        (
            datetime(2026, 4, 9, 16, tzinfo=UTC),
            EventKind.STATUS,
            "Status 1st Notice \u2192 Unpaid",
            clerk_name,
            "Family called; payment plan agreed",
        ),
        (
            datetime(2026, 4, 10, 16, tzinfo=UTC),
            EventKind.PAYMENT,
            "Payment $25.00 by check 1001, received 2026-04-10",
            clerk_name,
            None,
        ),
        (
            datetime(2026, 4, 10, 16, tzinfo=UTC),
            EventKind.NOTICE,
            f"Receipt to {to}: queued",
            None,
            None,
        ),
        (
            datetime(2026, 4, 11, 16, tzinfo=UTC),
            EventKind.ACTIVITY,
            "Automation turned off",
            clerk_name,
            None,
        ),
        (
            datetime(2026, 4, 11, 16, 30, tzinfo=UTC),
            EventKind.ACTIVITY,
            "Due date 2026-04-01 \u2192 2026-05-01",
            clerk_name,
            None,
        ),
    ]
    # The sibling's notice went out in the same digest, which is filed under the first invoice.
    assert [(e.kind, e.summary) for e in other.events] == [
        (EventKind.CREATED, "Invoice created for $50.00"),
        (EventKind.STEP, "14-day pre-due reminder, billing run 2026-03-18, 1 recipient(s)"),
        (
            EventKind.NOTICE,
            f"Reminder to {to}: in digest {digest} (sent 2026-03-18 06:05, "
            "viewed 2026-03-18 19:40)",
        ),
    ]
    assert other.invoice.status_label == "Paid"


async def test_timeline_of_an_auto_cancelled_invoice(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    await turn_on_auto_cancel(stores)
    (student,), _ = await add_family(stores, "Rivera")
    invoice = await add_invoice(stores, student, created=JAN1, due=APR1)
    # The seed timeline, run only on the days something happens.
    days = [
        date(2026, 3, 18),
        date(2026, 3, 25),
        date(2026, 3, 31),
        date(2026, 4, 8),
        date(2026, 4, 15),
        date(2026, 5, 1),
        date(2026, 5, 2),
        date(2026, 6, 30),
    ]
    await run_on(engine, clock, *days)
    async with stores() as store:
        timeline = await invoice_timeline(store.session, invoice, tz=TZ)
        await store.commit()
    assert timeline is not None
    assert timeline.invoice.status_label == "Auto-Cancelled" and not timeline.invoice.is_open
    assert timeline.invoice.cancelled_at == at_run_time(date(2026, 6, 30))
    steps = [e.summary for e in timeline.events if e.kind is EventKind.STEP]
    assert steps == [
        "14-day pre-due reminder, billing run 2026-03-18, 1 recipient(s)",
        "7-day pre-due reminder, billing run 2026-03-25, 1 recipient(s)",
        "1-day pre-due reminder, billing run 2026-03-31, 1 recipient(s)",
        "1st overdue notice, billing run 2026-04-08, 7 days overdue, 1 recipient(s)",
        "2nd overdue notice, billing run 2026-04-15, 14 days overdue, 1 recipient(s)",
        "Final overdue notice, billing run 2026-05-01, 30 days overdue, 1 recipient(s)",
        "Moved to Collections, billing run 2026-05-02, 31 days overdue",
        "Auto-cancelled, billing run 2026-06-30, 90 days overdue",
    ]
    statuses = [(e.summary, e.note) for e in timeline.events if e.kind is EventKind.STATUS]
    assert statuses == [
        ("Status Unpaid \u2192 1st Notice", None),
        ("Status 1st Notice \u2192 2nd Notice", None),
        ("Status 2nd Notice \u2192 Final Notice", None),
        ("Status Final Notice \u2192 Collections", None),
        (
            "Auto-cancelled (Collections \u2192 Cancelled)",
            "Invoice automatically cancelled on 2026-06-30 after 90 days overdue.",
        ),
    ]
    last = timeline.events[-2:]
    assert [e.kind for e in last] == [EventKind.STEP, EventKind.STATUS]
    assert {e.at for e in last} == {at_run_time(date(2026, 6, 30))}


async def test_find_invoice_by_number(engine: AsyncEngine, stores: UnitOfWorkFactory) -> None:
    (student,), _ = await add_family(stores, "Rivera")
    first = await add_invoice(stores, student, created=JAN1, due=APR1)
    second = await add_invoice(stores, student, created=JAN1, due=APR1)
    async with stores() as store:
        s = store.session
        assert await find_invoice_id(s, "INV-000001") == first
        assert await find_invoice_id(s, " inv-000002 ") == second
        assert await find_invoice_id(s, "INV-2") == second
        assert await find_invoice_id(s, "inv2") == second
        assert await find_invoice_id(s, "INV-000003") is None
        assert await find_invoice_id(s, "hello") is None
        assert await find_invoice_id(s, "") is None
        await store.commit()
