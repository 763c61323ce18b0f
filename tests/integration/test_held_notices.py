"""An invoice whose first notice is held for a pending decision: the billing run leaves it
alone (no reminder, no status change) until the decision releases it (SQLite and PG)."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from storage import models as m
from storage.store import StoreFactory
from tests.integration.billing_helpers import (
    add_family,
    add_invoice,
    invoice_row,
    notices_of,
    run_days,
    steps_of,
)
from workflows.clock import FixedClock

JAN1, APR1 = date(2026, 1, 1), date(2026, 4, 1)


async def test_the_billing_run_skips_a_held_invoice_until_it_is_released(
    engine: AsyncEngine, stores: StoreFactory, clock: FixedClock
) -> None:
    (student,), _ = await add_family(stores, "Rivera")
    held_id = await add_invoice(stores, student, created=JAN1, due=APR1)
    other_id = await add_invoice(stores, student, created=JAN1, due=APR1)
    async with stores() as store:
        invoice = await store.get_invoice(held_id)
        assert invoice is not None
        invoice.notice_hold = "cap_override:1"
        assert await store.queue_notice("invoice_issued", held_id, "issued", held=True) == 1
        rows = (await store.session.execute(select(m.Notice.status))).scalars().all()
        assert list(rows) == ["held"]
        # A held notice has no outbox row until it is released.
        outbox = (await store.session.execute(select(m.OutboxMessage.id))).scalars().all()
        assert list(outbox) == []

    await run_days(engine, clock, date(2026, 3, 15), date(2026, 4, 10))

    assert await steps_of(engine, held_id) == []
    assert (await invoice_row(engine, held_id)).status == "unpaid"
    assert [t for t, _s, _d in await notices_of(engine, held_id)] == ["invoice_issued"]
    assert len(await steps_of(engine, other_id)) >= 3  # the run itself went on

    async with stores() as store:
        invoice = await store.get_invoice(held_id)
        assert invoice is not None
        invoice.notice_hold = None
        assert await store.release_held_notices(held_id) == 1
        assert await store.release_held_notices(held_id) == 0
        notice_id = (
            await store.session.execute(select(m.Notice.id).where(m.Notice.invoice_id == held_id))
        ).scalar_one()
        keys = set((await store.session.execute(select(m.OutboxMessage.dedupe_key))).scalars())
        assert f"notice:{notice_id}" in keys
    await run_days(engine, clock, date(2026, 4, 11), date(2026, 4, 11))
    assert [s for s, _d in await steps_of(engine, held_id)] == ["first"]
