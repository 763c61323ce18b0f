"""Concurrent invoices must never take more claims than the policy allows."""

from __future__ import annotations

import asyncio
from datetime import date
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from storage import models as m
from tests.builders import add_district, add_policy, add_staff
from workflows.incidents import OpenIncident, open_incident
from workflows.invoices import CreateInvoice, CustomLine, create_invoice_for_incident
from workflows.ports import Context

TZ = ZoneInfo("America/Chicago")
RACERS = 4


async def test_racing_invoices_take_exactly_the_last_claim(stores, clock) -> None:
    d = await add_district(stores)
    _, enrollment_id = await add_policy(stores, d.student_id, copay_cents=2500, max_claims=1)
    tech = await add_staff(stores, "Technician")
    incident_ids = []
    for _ in range(RACERS):
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

    start = asyncio.Event()

    async def create(incident_id: int) -> int:
        await start.wait()
        # Each racer has its own session, so its own database connection and transaction.
        async with stores() as store:
            created = await create_invoice_for_incident(
                Context(store, clock, TZ),
                tech,
                CreateInvoice(incident_id=incident_id, custom_lines=(CustomLine("Screen", 12500),)),
            )
            await asyncio.sleep(0.05)  # hold the transaction open while the others try
            await store.commit()
            return created.invoice.total_cents

    tasks = [asyncio.create_task(create(i)) for i in incident_ids]
    await asyncio.sleep(0.01)
    start.set()
    totals = await asyncio.gather(*tasks)

    assert sorted(totals) == [2500] + [12500] * (RACERS - 1)
    async with stores() as store:
        claims = (
            await store.session.execute(
                select(func.count()).where(m.Invoice.claim_enrollment_id == enrollment_id)
            )
        ).scalar_one()
        numbers = (await store.session.execute(select(m.Invoice.number))).scalars().all()
        await store.commit()
    assert claims == 1
    assert len(set(numbers)) == RACERS


async def test_redelivered_requests_racing_each_other_happen_once(stores, clock) -> None:
    """A Slack retry can arrive while the original is still being handled."""
    from workflows.payments import PaymentMethod, RecordPayment, record_payment

    d = await add_district(stores)
    clerk = await add_staff(stores, "Billing Clerk")
    tech = await add_staff(stores, "Technician")

    async def open_once() -> int:
        async with stores() as store:
            opened = await open_incident(
                Context(store, clock, TZ),
                tech,
                OpenIncident(
                    device_id=d.device_id,
                    occurred_on=date(2026, 2, 1),
                    flags=("screen",),
                    idempotency_key="slack:Ev1",
                ),
            )
            await asyncio.sleep(0.05)
            await store.commit()
            return opened.incident.id

    ids = await asyncio.gather(*(open_once() for _ in range(RACERS)))
    assert len(set(ids)) == 1
    async with stores() as store:
        created = await create_invoice_for_incident(
            Context(store, clock, TZ),
            tech,
            CreateInvoice(incident_id=ids[0], custom_lines=(CustomLine("Screen", 12500),)),
        )
        invoice_id = created.invoice.id
        await store.commit()

    async def pay_once() -> bool:
        async with stores() as store:
            paid = await record_payment(
                Context(store, clock, TZ),
                clerk,
                RecordPayment(
                    invoice_id=invoice_id,
                    amount_cents=12500,
                    method=PaymentMethod.CARD,
                    idempotency_key="stripe:evt_1",
                ),
            )
            await asyncio.sleep(0.05)
            await store.commit()
            return paid.created

    created_flags = await asyncio.gather(*(pay_once() for _ in range(RACERS)))
    assert sorted(created_flags) == [False] * (RACERS - 1) + [True]
    async with stores() as store:
        assert (await store.session.execute(select(func.count(m.Incident.id)))).scalar_one() == 1
        assert (await store.session.execute(select(func.count(m.Payment.id)))).scalar_one() == 1
        invoice = await store.invoices.get(invoice_id)
        assert (invoice.paid_cents, invoice.status) == (12500, "paid")
        await store.commit()
