"""The daily billing run against the store, day by day with an injected clock (SQLite and PG)."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from storage import models as m
from storage.db import session_factory
from storage.store import StoreFactory
from tests.integration.billing_helpers import (
    TZ,
    add_family,
    add_invoice,
    at_run_time,
    count,
    invoice_row,
    notices_of,
    run_days,
    runner,
    steps_of,
)
from workflows.clock import FixedClock

JAN1, APR1 = date(2026, 1, 1), date(2026, 4, 1)


async def test_seed_timeline_day_by_day(
    engine: AsyncEngine, stores: StoreFactory, clock: FixedClock
) -> None:
    async with stores() as store:
        record = await store.settings()
        record.auto_cancel_enabled = True
        await store.commit()
    (student,), _ = await add_family(stores, "Rivera")
    invoice_id = await add_invoice(stores, student, created=JAN1, due=APR1)

    await run_days(engine, clock, JAN1, date(2026, 7, 15))

    assert await steps_of(engine, invoice_id) == [
        ("pre_due_14", date(2026, 3, 18)),
        ("pre_due_7", date(2026, 3, 25)),
        ("pre_due_1", date(2026, 3, 31)),
        ("first", date(2026, 4, 8)),
        ("second", date(2026, 4, 15)),
        ("final", date(2026, 5, 1)),
        ("collections", date(2026, 5, 2)),
        # 60 days after the final notice of May 1.
        ("auto_cancel", date(2026, 6, 30)),
    ]
    assert [(t, d) for t, _s, d in await notices_of(engine, invoice_id)] == [
        ("due_reminder", date(2026, 3, 18)),
        ("due_reminder", date(2026, 3, 25)),
        ("due_reminder", date(2026, 3, 31)),
        ("overdue_first", date(2026, 4, 8)),
        ("overdue_second", date(2026, 4, 15)),
        ("overdue_final", date(2026, 5, 1)),
    ]
    invoice = await invoice_row(engine, invoice_id)
    assert invoice.status == "cancelled" and invoice.auto_cancelled
    assert invoice.reminder_count == 6
    async with session_factory(engine)() as session:
        entry = (
            await session.execute(
                select(m.ActivityEntry).where(
                    m.ActivityEntry.entity_id == invoice_id,
                    m.ActivityEntry.action == "auto_cancelled",
                )
            )
        ).scalar_one()
    assert entry.comment == "Invoice automatically cancelled on 2026-06-30 after 90 days overdue."
    assert await count(engine, m.BillingRun, m.BillingRun.status == "completed") == 196


async def test_rerun_of_a_day_sends_nothing_twice(
    engine: AsyncEngine, stores: StoreFactory, clock: FixedClock
) -> None:
    (student,), _ = await add_family(stores, "Chen", guardians=2)
    invoice_id = await add_invoice(stores, student, created=JAN1, due=APR1)
    day = date(2026, 3, 18)
    clock.set(at_run_time(day))
    first = await runner(engine, clock).run(day)
    again = await runner(engine, clock).run(day)
    assert first.totals is not None and first.totals.emails_queued == 2
    assert again.totals is not None and again.totals.emails_queued == 2  # the day's, not new
    assert len(await notices_of(engine, invoice_id)) == 2
    assert await count(engine, m.OutboxMessage, m.OutboxMessage.kind == "email.notice") == 2
    assert TZ is not None
