"""The demo district supports the whole flow: incident, covered invoice, payments."""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

from sqlalchemy import select

from storage import models as m
from storage.db import session_factory
from storage.demo import load_demo
from tests.builders import add_staff
from workflows.incidents import OpenIncident, incident_coverage_badge, open_incident
from workflows.invoices import CreateInvoice, create_invoice_for_incident
from workflows.payments import PaymentMethod, RecordPayment, record_payment
from workflows.ports import Context

TZ = ZoneInfo("America/Chicago")


async def test_demo_district_end_to_end(engine, stores, clock) -> None:
    async with session_factory(engine)() as session:
        assert (await load_demo(session, clock, "America/Chicago")).created
        await session.commit()
        assert not (await load_demo(session, clock, "America/Chicago")).created
    admin = await add_staff(stores, "Admin")
    async with stores() as store:
        device = await store.devices.by_serial("DEMO-SN1001")
        screen = (
            await store.session.execute(select(m.FeeItem).where(m.FeeItem.code == "demo-screen"))
        ).scalar_one()
        ctx = Context(store, clock, TZ)
        opened = await open_incident(
            ctx,
            admin,
            OpenIncident(
                device_id=device.id,
                occurred_on=date(2026, 2, 27),
                flags=("screen", "physical_damage"),
            ),
        )
        badge = await incident_coverage_badge(ctx, opened.incident.id)
        assert badge.state == "active" and badge.detail == "Claim 1 of 2 this term"
        created = await create_invoice_for_incident(
            ctx, admin, CreateInvoice(incident_id=opened.incident.id, fee_item_ids=(screen.id,))
        )
        # District plan: $25 co-pay, $250 cap -> a $125 screen costs the family $25.
        assert (created.invoice.total_cents, created.invoice.insurance_cents) == (2500, 10000)
        paid = await record_payment(
            ctx,
            admin,
            RecordPayment(
                invoice_id=created.invoice.id,
                amount_cents=2500,
                method=PaymentMethod.CASH,
                idempotency_key="front-desk-1",
            ),
        )
        assert paid.invoice.status == "paid"
        await store.commit()
