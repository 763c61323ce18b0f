"""The billing run leaves out a pre-due reminder that would come within three days of the
invoice's own notice (SQLite and PostgreSQL), and a re-run of a day changes nothing."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from storage import models as m
from storage.uow import UnitOfWorkFactory
from tests.integration.billing_helpers import (
    TZ,
    add_family,
    add_invoice,
    at_run_time,
    notices_of,
    run_days,
    runner,
    steps_of,
)
from workflows.clock import FixedClock

DUE = date(2026, 5, 1)


async def _issued_notice(
    stores: UnitOfWorkFactory,
    invoice_id: int,
    guardian_id: int,
    *,
    queued: datetime,
    sent: datetime | None,
) -> None:
    async with stores() as store:
        store.session.add(
            m.Notice(
                invoice_id=invoice_id,
                guardian_id=guardian_id,
                template="invoice_issued",
                dedupe_key=f"invoice-issued:{invoice_id}",
                to_address="parent@example.org",
                message_id=f"<issued-{invoice_id}@district.test>",
                context={},
                status="sent" if sent is not None else "queued",
                created_at=queued,
                sent_at=sent,
            )
        )
        await store.commit()


def _local(day: date, hour: int) -> datetime:
    return datetime.combine(day, time(hour, 0), tzinfo=TZ).astimezone(UTC)


async def test_reminders_keep_three_days_from_the_invoice_notice(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    students, guardians = await add_family(stores, "Quiet", students=4)
    a, b, c, d = students
    (guardian,) = guardians

    # Issued on the 14-day reminder's day: that reminder is skipped, the 7- and 1-day go.
    on_14 = DUE - timedelta(days=14)
    inv_a = await add_invoice(stores, a, created=on_14, due=DUE)
    await _issued_notice(stores, inv_a, guardian, queued=_local(on_14, 10), sent=_local(on_14, 10))
    # Issued ten days before the due date: no 14-day reminder at all (it was before).
    on_10 = DUE - timedelta(days=10)
    inv_b = await add_invoice(stores, b, created=on_10, due=DUE)
    await _issued_notice(stores, inv_b, guardian, queued=_local(on_10, 10), sent=_local(on_10, 10))
    # Issued two days before the 1-day reminder: nothing at all before the due date.
    on_3 = DUE - timedelta(days=3)
    inv_c = await add_invoice(stores, c, created=on_3, due=DUE)
    await _issued_notice(stores, inv_c, guardian, queued=_local(on_3, 10), sent=_local(on_3, 10))
    # Made 20 days before due, but its notice waited (queued) until 16 days before and was sent
    # 15 days before: the 14-day reminder comes a day after it and is left out.
    created_d = DUE - timedelta(days=20)
    inv_d = await add_invoice(stores, d, created=created_d, due=DUE)
    await _issued_notice(
        stores,
        inv_d,
        guardian,
        queued=_local(DUE - timedelta(days=16), 9),
        sent=_local(DUE - timedelta(days=15), 9),
    )

    await run_days(engine, clock, created_d, DUE - timedelta(days=1))

    seven_and_one = [
        ("pre_due_7", DUE - timedelta(days=7)),
        ("pre_due_1", DUE - timedelta(days=1)),
    ]
    assert await steps_of(engine, inv_a) == seven_and_one
    assert await steps_of(engine, inv_b) == seven_and_one
    assert await steps_of(engine, inv_c) == []
    assert await steps_of(engine, inv_d) == seven_and_one
    assert [t for t, _s, _d in await notices_of(engine, inv_c)] == ["invoice_issued"]

    # Running the last day again (a re-run) adds nothing.
    last = DUE - timedelta(days=1)
    clock.set(at_run_time(last))
    await runner(engine, clock).run(last)
    assert await steps_of(engine, inv_a) == seven_and_one
    assert await steps_of(engine, inv_c) == []


async def test_a_queued_notice_counts_from_the_day_it_was_queued(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    (student,), (guardian,) = await add_family(stores, "Waiting")
    created = DUE - timedelta(days=30)
    invoice_id = await add_invoice(stores, student, created=created, due=DUE)
    # Still queued (not sent) when the 7-day reminder's day comes; queued two days before it.
    await _issued_notice(
        stores, invoice_id, guardian, queued=_local(DUE - timedelta(days=9), 8), sent=None
    )
    await run_days(engine, clock, DUE - timedelta(days=9), DUE - timedelta(days=1))
    assert await steps_of(engine, invoice_id) == [("pre_due_1", DUE - timedelta(days=1))]
