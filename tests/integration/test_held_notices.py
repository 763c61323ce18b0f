"""An invoice whose first notice is held for a pending decision: the billing run leaves it
alone (no reminder, no status change) until the decision releases it (SQLite and PG)."""

from __future__ import annotations

import asyncio
from datetime import date
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from storage import models as m
from storage.uow import UnitOfWorkFactory
from tests.builders import add_district, add_policy, add_staff
from tests.integration.billing_helpers import (
    add_family,
    add_invoice,
    invoice_row,
    notices_of,
    run_days,
    steps_of,
)
from workflows.clock import FixedClock
from workflows.incidents import OpenIncident, open_incident
from workflows.invoices import (
    CreateInvoice,
    CustomLine,
    cancel_invoice,
    create_invoice_for_incident,
)
from workflows.overrides import decide_cap_override, request_cap_override
from workflows.ports import Context

JAN1, APR1 = date(2026, 1, 1), date(2026, 4, 1)
TZ = ZoneInfo("America/Chicago")


async def test_the_billing_run_skips_a_held_invoice_until_it_is_released(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    (student,), _ = await add_family(stores, "Rivera")
    held_id = await add_invoice(stores, student, created=JAN1, due=APR1)
    other_id = await add_invoice(stores, student, created=JAN1, due=APR1)
    async with stores() as store:
        invoice = await store.invoices.get(held_id)
        assert invoice is not None
        invoice.notice_hold = "cap_override:1"
        assert await store.outbox.queue_notice("invoice_issued", held_id, "issued", held=True) == 1
        rows = (await store.session.execute(select(m.Notice.status))).scalars().all()
        assert list(rows) == ["held"]
        # A held notice has no outbox row until it is released.
        outbox = (await store.session.execute(select(m.OutboxMessage.id))).scalars().all()
        assert list(outbox) == []
        await store.commit()

    await run_days(engine, clock, date(2026, 3, 15), date(2026, 4, 10))

    assert await steps_of(engine, held_id) == []
    assert (await invoice_row(engine, held_id)).status == "unpaid"
    assert [t for t, _s, _d in await notices_of(engine, held_id)] == ["invoice_issued"]
    assert len(await steps_of(engine, other_id)) >= 3  # the run itself went on

    async with stores() as store:
        invoice = await store.invoices.get(held_id)
        assert invoice is not None
        invoice.notice_hold = None
        assert await store.outbox.release_held(held_id) == 1
        assert await store.outbox.release_held(held_id) == 0
        notice_id = (
            await store.session.execute(select(m.Notice.id).where(m.Notice.invoice_id == held_id))
        ).scalar_one()
        keys = set((await store.session.execute(select(m.OutboxMessage.dedupe_key))).scalars())
        assert f"notice:{notice_id}" in keys
        await store.commit()
    await run_days(engine, clock, date(2026, 4, 11), date(2026, 4, 11))
    assert [s for s, _d in await steps_of(engine, held_id)] == ["first"]


@pytest.mark.parametrize("first", ["approve", "create"])
async def test_a_decision_racing_the_invoice_leaves_one_truthful_outcome(
    stores: UnitOfWorkFactory, clock: FixedClock, first: str
) -> None:
    """Approve and Create invoice at the same moment: whichever goes first, the invoice ends at
    the override's price and its first email is not left held."""
    d = await add_district(stores)
    await add_policy(
        stores,
        d.student_id,
        name="District Plan",
        copay_cents=2500,
        max_claims=1,
        allow_override=True,
    )
    tech = await add_staff(stores, "Technician")
    director = await add_staff(stores, "Finance Director")

    async def incident() -> int:
        async with stores() as store:
            opened = await open_incident(
                Context(store, clock, TZ),
                tech,
                OpenIncident(
                    device_id=d.device_id, occurred_on=date(2026, 2, 1), flags=("screen",)
                ),
            )
            await store.commit()
            return opened.incident.id

    async def invoice(incident_id: int) -> None:
        async with stores() as store:
            await create_invoice_for_incident(
                Context(store, clock, TZ),
                tech,
                CreateInvoice(incident_id, custom_lines=(CustomLine("Screen", 12500),)),
            )
            await store.commit()

    await invoice(await incident())  # takes the one claim
    incident_id = await incident()
    async with stores() as store:
        request = await request_cap_override(Context(store, clock, TZ), tech, incident_id)
        await store.commit()

    async def approve() -> None:
        if first == "create":
            await asyncio.sleep(0.01)
        async with stores() as store:
            await decide_cap_override(Context(store, clock, TZ), director, request.id, approve=True)
            await asyncio.sleep(0.05)  # hold the transaction open while the other tries
            await store.commit()

    async def create() -> None:
        if first == "approve":
            await asyncio.sleep(0.01)
        await invoice(incident_id)

    await asyncio.gather(approve(), create())

    async with stores() as store:
        [made] = await store.invoices.for_incident(incident_id)
        assert (made.total_cents, made.override_applied, made.notice_hold) == (2500, True, None)
        statuses = (
            await store.session.execute(
                select(m.Notice.status).where(m.Notice.invoice_id == made.id)
            )
        ).scalars()
        assert list(statuses) == ["queued"]
        decided = await store.insurance.override_request(request.id)
        assert decided is not None and decided.invoice_id == made.id
        await store.commit()


async def test_a_held_invoice_cancelled_before_the_decision_sends_nothing(
    stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    d = await add_district(stores)
    await add_policy(
        stores,
        d.student_id,
        name="District Plan",
        copay_cents=2500,
        max_claims=1,
        allow_override=True,
    )
    tech = await add_staff(stores, "Technician")
    clerk = await add_staff(stores, "Billing Clerk")
    director = await add_staff(stores, "Finance Director")
    incident_ids = []
    for _ in range(2):
        async with stores() as store:
            opened = await open_incident(
                Context(store, clock, TZ),
                tech,
                OpenIncident(
                    device_id=d.device_id, occurred_on=date(2026, 2, 1), flags=("screen",)
                ),
            )
            incident_ids.append(opened.incident.id)
            await store.commit()
    first, second = incident_ids
    lines = (CustomLine("Screen", 12500),)
    async with stores() as store:
        await create_invoice_for_incident(
            Context(store, clock, TZ), tech, CreateInvoice(first, custom_lines=lines)
        )
        await store.commit()
    async with stores() as store:
        request = await request_cap_override(Context(store, clock, TZ), tech, second)
        await store.commit()
    async with stores() as store:
        made = await create_invoice_for_incident(
            Context(store, clock, TZ), tech, CreateInvoice(second, custom_lines=lines)
        )
        await store.commit()
    async with stores() as store:
        await cancel_invoice(Context(store, clock, TZ), clerk, made.invoice.id, reason="Duplicate")
        await store.commit()
    async with stores() as store:
        await decide_cap_override(Context(store, clock, TZ), director, request.id, approve=True)
        await store.commit()
    async with stores() as store:
        rows = (
            await store.session.execute(
                select(m.Notice.template, m.Notice.status).where(
                    m.Notice.invoice_id == made.invoice.id
                )
            )
        ).all()
        assert [tuple(r) for r in rows] == [("invoice_issued", "withdrawn")]
        invoice = await store.invoices.get(made.invoice.id)
        assert invoice is not None and invoice.notice_hold is None
        await store.commit()


async def test_an_email_sent_while_the_hold_was_taken_gets_an_update(
    stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    """A worker was sending the first email as the override was requested: the hold found
    nothing left to hold, so the approval tells the family the new amount instead."""
    d = await add_district(stores)
    await add_policy(
        stores,
        d.student_id,
        name="District Plan",
        copay_cents=2500,
        max_claims=1,
        allow_override=True,
    )
    tech = await add_staff(stores, "Technician")
    director = await add_staff(stores, "Finance Director")
    invoice_ids = []
    for _ in range(2):
        async with stores() as store:
            ctx = Context(store, clock, TZ)
            opened = await open_incident(
                ctx,
                tech,
                OpenIncident(
                    device_id=d.device_id, occurred_on=date(2026, 2, 1), flags=("screen",)
                ),
            )
            made = await create_invoice_for_incident(
                ctx,
                tech,
                CreateInvoice(opened.incident.id, custom_lines=(CustomLine("Screen", 12500),)),
            )
            invoice_ids.append((opened.incident.id, made.invoice.id))
            await store.commit()
    incident_id, invoice_id = invoice_ids[1]
    async with stores() as store:
        request = await request_cap_override(Context(store, clock, TZ), tech, incident_id)
        invoice = await store.invoices.get(invoice_id)
        assert invoice is not None and invoice.notice_hold == f"cap_override:{request.id}"
        # ... while the worker that had it commits it as sent.
        notice = (
            await store.session.execute(select(m.Notice).where(m.Notice.invoice_id == invoice_id))
        ).scalar_one()
        notice.status, notice.sent_at = "sent", clock.now()
        await store.commit()
    async with stores() as store:
        await decide_cap_override(Context(store, clock, TZ), director, request.id, approve=True)
        await store.commit()
    async with stores() as store:
        rows = (
            await store.session.execute(
                select(m.Notice.template, m.Notice.status, m.Notice.context)
                .where(m.Notice.invoice_id == invoice_id)
                .order_by(m.Notice.id)
            )
        ).all()
        await store.commit()
    assert [(t, s) for t, s, _c in rows] == [
        ("invoice_issued", "sent"),
        ("invoice_updated", "queued"),
    ]
    assert rows[1][2]["old_cents"] == 12500 and rows[1][2]["new_cents"] == 2500
