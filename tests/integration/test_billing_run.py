"""The daily billing run against the store, day by day with an injected clock (SQLite and PG)."""

from __future__ import annotations

import asyncio
from datetime import date

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.billing_run import SLACK_RUN_KIND
from storage import models as m
from storage.db import create_engine, session_factory
from storage.uow import UnitOfWorkFactory
from tests.builders import add_staff
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
from workflows.invoices import change_due_date, change_invoice_status
from workflows.ports import Context

JAN1, APR1 = date(2026, 1, 1), date(2026, 4, 1)


async def test_seed_timeline_day_by_day(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    async with stores() as store:
        record = await store.settings.get()
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
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock
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


# --- people's changes, partial payments, automation off -----------------------------------------


def _ctx(store: object, clock: FixedClock) -> Context:
    return Context(store, clock, TZ)  # type: ignore[arg-type]


async def test_manual_reset_restarts_from_the_status_a_person_set(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    (student,), _ = await add_family(stores, "Okafor")
    invoice_id = await add_invoice(stores, student, created=JAN1, due=APR1)
    clerk = await add_staff(stores, "Billing Clerk")
    await run_days(engine, clock, date(2026, 4, 1), date(2026, 4, 16))
    assert (await invoice_row(engine, invoice_id)).status == "second"

    clock.set(at_run_time(date(2026, 4, 16)))
    async with stores() as store:
        await change_invoice_status(
            _ctx(store, clock),
            clerk,
            invoice_id,
            "unpaid",
            reason="Family called; giving them a week",
        )
        await store.commit()
    await run_days(engine, clock, date(2026, 4, 17), date(2026, 5, 2))

    steps = await steps_of(engine, invoice_id)
    assert steps == [
        ("first", date(2026, 4, 8)),
        ("second", date(2026, 4, 15)),
        ("first", date(2026, 4, 17)),  # the reset re-arms the notices, starting with the first
        ("second", date(2026, 4, 18)),
        ("final", date(2026, 5, 1)),
        ("collections", date(2026, 5, 2)),
    ]
    templates = [t for t, _s, _d in await notices_of(engine, invoice_id)]
    assert templates == ["overdue_first", "overdue_second"] * 2 + ["overdue_final"]


async def test_partial_payment_with_the_setting_off_and_on(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    (student,), _ = await add_family(stores, "Nguyen")
    partial = await add_invoice(stores, student, created=JAN1, due=APR1, paid_cents=4_000)
    await run_days(engine, clock, date(2026, 4, 8), date(2026, 4, 8))
    assert [s for s, _d in await steps_of(engine, partial)] == ["first"]

    async with stores() as store:
        (await store.settings.get()).stop_reminders_on_partial_payment = True
        await store.commit()
    await run_days(engine, clock, date(2026, 4, 9), date(2026, 5, 10))
    assert [s for s, _d in await steps_of(engine, partial)] == ["first"]
    assert (await invoice_row(engine, partial)).status == "first"


async def test_automation_off_and_no_due_date_are_left_alone(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    (student,), _ = await add_family(stores, "Silva")
    off = await add_invoice(stores, student, created=JAN1, due=APR1, automation=False)
    undated = await add_invoice(stores, student, created=JAN1, due=None)
    await run_days(engine, clock, date(2026, 3, 17), date(2026, 5, 3))
    assert await steps_of(engine, off) == []
    assert await steps_of(engine, undated) == []
    assert (await invoice_row(engine, off)).status == "unpaid"


async def test_changed_due_date_rearms_the_reminders(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    (student,), _ = await add_family(stores, "Haddad")
    invoice_id = await add_invoice(stores, student, created=JAN1, due=APR1)
    clerk = await add_staff(stores, "Billing Clerk")
    await run_days(engine, clock, date(2026, 3, 18), date(2026, 3, 18))
    async with stores() as store:
        await change_due_date(_ctx(store, clock), clerk, invoice_id, date(2026, 4, 15))
        await store.commit()
    await run_days(engine, clock, date(2026, 3, 19), date(2026, 4, 14))
    assert await steps_of(engine, invoice_id) == [
        ("pre_due_14", date(2026, 3, 18)),
        ("pre_due_14", date(2026, 4, 1)),
        ("pre_due_7", date(2026, 4, 8)),
        ("pre_due_1", date(2026, 4, 14)),
    ]


# --- pauses and downtime --------------------------------------------------------------------------


async def test_pause_window_holds_reminders_and_the_overdue_clock(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    (student,), _ = await add_family(stores, "Kowalski")
    invoice_id = await add_invoice(stores, student, created=JAN1, due=APR1)
    async with stores() as store:
        store.session.add(
            m.BillingPause(
                starts_on=date(2026, 3, 23),
                ends_on=date(2026, 4, 5),
                reason="Spring break",
                created_at=clock.now(),
            )
        )
        await store.commit()
    await run_days(engine, clock, date(2026, 3, 15), date(2026, 4, 25))
    # Mar 25 and Mar 31 fall in the pause; the first notice waits for 7 unpaused days overdue.
    assert await steps_of(engine, invoice_id) == [
        ("pre_due_14", date(2026, 3, 18)),
        ("first", date(2026, 4, 12)),
        ("second", date(2026, 4, 19)),
    ]
    assert await count(engine, m.BillingRun, m.BillingRun.paused.is_(True)) == 14


async def test_a_missed_week_catches_up_without_a_burst(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    (student,), _ = await add_family(stores, "Mensah")
    soon = await add_invoice(stores, student, created=JAN1, due=APR1)
    late = await add_invoice(stores, student, created=JAN1, due=date(2026, 2, 1))
    await run_days(engine, clock, date(2026, 3, 16), date(2026, 3, 16))
    # Down from Mar 17 to Mar 26: the 14-day reminder (Mar 18) and the 7-day one (Mar 25) were
    # missed; only the latest goes. The long-overdue invoice moves one step per run.
    await run_days(engine, clock, date(2026, 3, 27), date(2026, 3, 30))
    assert await steps_of(engine, soon) == [("pre_due_7", date(2026, 3, 27))]
    assert [s for s, _d in await steps_of(engine, late)] == [
        "first",
        "second",
        "final",
        "collections",
    ]
    async with session_factory(engine)() as session:
        run = await session.get(m.BillingRun, date(2026, 3, 27))
    assert run is not None and run.covered_since == date(2026, 3, 16)


# --- crashes, races, digests, dry runs ------------------------------------------------------------


class Crash(RuntimeError):
    pass


async def _five_families(stores: UnitOfWorkFactory) -> list[int]:
    invoices = []
    for name in ["Ali", "Baker", "Cruz", "Diaz", "Evans"]:
        (student,), _ = await add_family(stores, name)
        invoices.append(await add_invoice(stores, student, created=JAN1, due=APR1))
    return invoices


@pytest.mark.parametrize("crash_after", [1, 3])
async def test_crash_mid_run_then_rerun_sends_each_notice_once(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock, crash_after: int
) -> None:
    invoices = await _five_families(stores)
    day = date(2026, 4, 8)
    clock.set(at_run_time(day))
    batches = 0

    async def crash(_taken: int) -> None:
        nonlocal batches
        batches += 1
        if batches == crash_after:
            raise Crash("power cut")

    with pytest.raises(Crash):
        await runner(engine, clock, batch_size=2, after_batch=crash).run(day)
    async with session_factory(engine)() as session:
        run = await session.get(m.BillingRun, day)
    assert run is not None and run.status == "running"

    result = await runner(engine, clock, batch_size=2).run(day)
    assert result.totals is not None and result.totals.emails_queued == 5
    for invoice_id in invoices:
        assert [t for t, _s, _d in await notices_of(engine, invoice_id)] == ["overdue_first"]
        assert (await invoice_row(engine, invoice_id)).status == "first"
    assert await count(engine, m.OutboxMessage, m.OutboxMessage.kind == "email.notice") == 5
    assert await count(engine, m.Notice, m.Notice.status == "pending") == 0
    assert await count(engine, m.OutboxMessage, m.OutboxMessage.kind == SLACK_RUN_KIND) == 1


async def test_two_runners_at_once_one_runs(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    invoices = await _five_families(stores)
    day = date(2026, 3, 18)
    clock.set(at_run_time(day))
    inside, let_go = asyncio.Event(), asyncio.Event()

    async def hold(_taken: int) -> None:
        inside.set()
        await asyncio.wait_for(let_go.wait(), 10)

    # A second engine stands for a second process: its own connections and lock attempts.
    other = create_engine(str(engine.url.render_as_string(hide_password=False)))
    try:
        first = asyncio.create_task(runner(engine, clock, batch_size=2, after_batch=hold).run(day))
        await asyncio.wait_for(inside.wait(), 10)
        second = await runner(other, clock).run(day)
        let_go.set()
        done = await first
    finally:
        await other.dispose()
    assert not second.ran and second.message == "Another billing run is in progress."
    assert done.ran and done.totals is not None and done.totals.emails_queued == 5
    for invoice_id in invoices:
        assert len(await notices_of(engine, invoice_id)) == 1


async def test_several_invoices_of_one_guardian_become_one_digest(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    students, guardians = await add_family(stores, "Park", guardians=2, students=2)
    a = await add_invoice(stores, students[0], created=JAN1, due=APR1)
    b = await add_invoice(stores, students[1], created=JAN1, due=APR1)
    (other_student,), _ = await add_family(stores, "Quinn")
    single = await add_invoice(stores, other_student, created=JAN1, due=APR1)
    await run_days(engine, clock, date(2026, 3, 18), date(2026, 3, 18))

    async with session_factory(engine)() as session:
        digests = list(
            (
                await session.execute(
                    select(m.Notice)
                    .where(m.Notice.template == "billing_digest")
                    .order_by(m.Notice.guardian_id)
                )
            ).scalars()
        )
    assert [d.guardian_id for d in digests] == guardians
    assert all(len(d.context["notice_ids"]) == 2 for d in digests)
    # The digest itself hangs off the first invoice (for reply threading).
    assert sorted((t, s) for t, s, _d in await notices_of(engine, a)) == [
        ("billing_digest", "queued"),
        ("billing_digest", "queued"),
        ("due_reminder", "digested"),
        ("due_reminder", "digested"),
    ]
    assert {s for _t, s, _d in await notices_of(engine, b)} == {"digested"}
    assert [s for _t, s, _d in await notices_of(engine, single)] == ["queued"]
    # Two digests and one single email go out; the digested members are not sent on their own.
    assert await count(engine, m.OutboxMessage, m.OutboxMessage.kind == "email.notice") == 3


async def test_dry_run_previews_and_writes_nothing(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    invoices = await _five_families(stores)
    day = date(2026, 4, 8)
    clock.set(at_run_time(day))
    preview = await runner(engine, clock).run(day, dry_run=True)
    assert preview.dry_run and not preview.ran
    assert [(p.invoice_id, p.step, p.to_status, p.recipients) for p in preview.planned] == [
        (i, "first", "first", 1) for i in invoices
    ]
    assert await count(engine, m.BillingStep) == 0
    assert await count(engine, m.Notice) == 0
    assert await count(engine, m.BillingRun) == 0
    done = await runner(engine, clock).run(day)
    assert done.totals is not None and preview.totals is not None
    assert done.totals.reminders_by_step == preview.totals.reminders_by_step
    assert done.totals.emails_queued == preview.totals.emails_queued == 5
    again = await runner(engine, clock).run(day, dry_run=True)
    assert again.planned == []


async def test_a_failed_first_run_is_covered_by_the_next(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    invoices = await _five_families(stores)
    day = date(2026, 3, 18)
    clock.set(at_run_time(day))

    async def crash(_taken: int) -> None:
        raise Crash("disk full")

    with pytest.raises(Crash):
        await runner(engine, clock, batch_size=1, after_batch=crash).run(day)
    # Only the first invoice's reminder was claimed before the crash; the next day's run
    # stands in for the failed day and sends the rest (late by a day, not lost).
    await run_days(engine, clock, date(2026, 3, 19), date(2026, 3, 19))
    for invoice_id in invoices:
        assert [s for s, _d in await steps_of(engine, invoice_id)] == ["pre_due_14"]
    async with session_factory(engine)() as session:
        run = await session.get(m.BillingRun, date(2026, 3, 19))
    assert run is not None and run.covered_since == date(2026, 3, 17)


async def test_auto_cancel_tells_a_family_that_was_told_once(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    async with stores() as store:
        record = await store.settings.get()
        record.auto_cancel_enabled = True
        await store.commit()
    (student,), _ = await add_family(stores, "Okafor", guardians=2)
    invoice_id = await add_invoice(stores, student, created=JAN1, due=APR1)
    await run_days(engine, clock, JAN1, date(2026, 6, 29))
    async with session_factory(engine)() as session:
        # The worker delivered the reminders and notices meanwhile.
        await session.execute(
            m.Notice.__table__.update()
            .where(m.Notice.invoice_id == invoice_id)
            .values(status="sent", sent_at=clock.now())
        )
        await session.commit()

    cancel_day = date(2026, 6, 30)
    for _ in range(2):  # a rerun of the day tells nobody twice
        clock.set(at_run_time(cancel_day))
        await runner(engine, clock).run(cancel_day)

    assert (await invoice_row(engine, invoice_id)).status == "cancelled"
    async with session_factory(engine)() as session:
        updates = list(
            (
                await session.execute(
                    select(m.Notice).where(
                        m.Notice.invoice_id == invoice_id, m.Notice.template == "invoice_updated"
                    )
                )
            ).scalars()
        )
    assert len(updates) == 2  # one per guardian
    assert {
        (n.context["reason"], n.context["old_cents"], n.context["new_cents"]) for n in updates
    } == {("cancelled", 10_000, 0)}
