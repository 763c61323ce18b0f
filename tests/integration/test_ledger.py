"""Invoices that don't come from incidents, waivers, and the check that every total matches its
rows (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, text

from storage import models as m
from storage.reconcile import discrepancies
from storage.uow import UnitOfWorkFactory
from tests.builders import add_district, add_policy, add_staff
from workflows.adjustments import apply_waiver
from workflows.clock import FixedClock
from workflows.errors import ConflictError, NotFound, ValidationError
from workflows.incidents import OpenIncident, open_incident
from workflows.invoices import (
    CreateInvoice,
    InvoiceKind,
    IssueInvoice,
    cancel_invoice,
    create_invoice_for_incident,
    issue_invoice,
)
from workflows.ledger import split_money
from workflows.payments import PaymentMethod, RecordPayment, record_payment
from workflows.ports import Context, InvoiceLineSpec

TZ = ZoneInfo("America/Chicago")
LINE = InvoiceLineSpec(description="Technology fee 2025-2026", kind="fee", unit_cents=2500)


def ctx_for(store, clock: FixedClock) -> Context:  # type: ignore[no-untyped-def]
    return Context(store=store, clock=clock, tz=TZ)


async def _all_invoices(stores: UnitOfWorkFactory) -> list[m.Invoice]:
    async with stores() as store:
        result = list((await store.session.execute(select(m.Invoice))).scalars())
        await store.commit()
        return result


async def assert_ledger_holds(stores: UnitOfWorkFactory) -> None:
    """Every invoice splits back into what was billed, and every total matches its rows."""
    for invoice in await _all_invoices(stores):
        assert split_money(invoice).adds_up(), invoice.number
    async with stores() as store:
        found = await discrepancies(store.session)
        await store.commit()
    assert [d.describe() for d in found] == []


async def test_issue_invoice_bills_a_student_and_emails_the_family(stores, clock) -> None:
    d = await add_district(stores)
    clerk = await add_staff(stores, "Billing Clerk")
    async with stores() as store:
        created = await issue_invoice(
            ctx_for(store, clock),
            clerk,
            IssueInvoice(
                student_id=d.student_id,
                kind=InvoiceKind.FEE,
                lines=(LINE,),
                idempotency_key="fee:1",
            ),
        )
        invoice_id = created.invoice.id
        await store.commit()
    assert created.created and created.notices == ("invoice_issued",)
    async with stores() as store:
        inv = await store.invoices.get(invoice_id)
        assert inv is not None
        assert (inv.kind, inv.subtotal_cents, inv.total_cents, inv.status) == (
            "fee",
            2500,
            2500,
            "unpaid",
        )
        assert inv.due_date == date(2026, 5, 31)
        notices = (
            await store.session.execute(select(m.Notice).where(m.Notice.invoice_id == invoice_id))
        ).scalars()
        assert [n.template for n in notices] == ["invoice_issued"]
        again = await issue_invoice(
            ctx_for(store, clock),
            clerk,
            IssueInvoice(
                student_id=d.student_id,
                kind=InvoiceKind.FEE,
                lines=(LINE,),
                idempotency_key="fee:1",
            ),
        )
        assert not again.created and again.invoice.id == invoice_id
        await store.commit()
    await assert_ledger_holds(stores)


async def test_issue_invoice_refuses_bad_input(stores, clock) -> None:
    d = await add_district(stores)
    clerk = await add_staff(stores, "Billing Clerk")
    bad = [
        (IssueInvoice(student_id=d.student_id, kind=InvoiceKind.FEE, lines=()), ValidationError),
        (
            IssueInvoice(
                student_id=d.student_id,
                kind=InvoiceKind.FEE,
                lines=(InvoiceLineSpec(description=" ", kind="fee", unit_cents=100),),
            ),
            ValidationError,
        ),
        (
            IssueInvoice(
                student_id=d.student_id,
                kind=InvoiceKind.FEE,
                lines=(LINE,),
                due_date=date(2020, 1, 1),
            ),
            ValidationError,
        ),
        (IssueInvoice(student_id=999_999, kind=InvoiceKind.FEE, lines=(LINE,)), NotFound),
    ]
    for cmd, error in bad:
        with pytest.raises(error):
            async with stores() as store:
                await issue_invoice(ctx_for(store, clock), clerk, cmd)
                await store.commit()
    assert await _all_invoices(stores) == []


async def test_waivers_payments_and_cancellations_keep_the_ledger(stores, clock) -> None:
    d = await add_district(stores)
    await add_policy(stores, d.student_id, name="District plan", copay_cents=2900)
    tech = await add_staff(stores, "Technician")
    clerk = await add_staff(stores, "Billing Clerk")
    async with stores() as store:
        ctx = ctx_for(store, clock)
        opened = await open_incident(
            ctx,
            tech,
            OpenIncident(device_id=d.device_id, occurred_on=date(2026, 2, 20), flags=("screen",)),
        )
        damage = await create_invoice_for_incident(
            ctx,
            tech,
            CreateInvoice(incident_id=opened.incident.id, fee_item_ids=(d.fee_screen_id,)),
        )
        fee = await issue_invoice(
            ctx, clerk, IssueInvoice(student_id=d.student_id, kind=InvoiceKind.FEE, lines=(LINE,))
        )
        spare = await issue_invoice(
            ctx, clerk, IssueInvoice(student_id=d.student_id, kind=InvoiceKind.FEE, lines=(LINE,))
        )
        damage_id, fee_id, spare_id = damage.invoice.id, fee.invoice.id, spare.invoice.id
        await store.commit()
    await assert_ledger_holds(stores)

    async with stores() as store:
        ctx = ctx_for(store, clock)
        await record_payment(
            ctx,
            clerk,
            RecordPayment(damage_id, 900, PaymentMethod.CASH, idempotency_key="cash-1"),
        )
        damage_inv = await store.invoices.get(damage_id, lock=True)
        assert damage_inv is not None
        await apply_waiver(ctx, clerk, damage_inv, 2000, "Hardship, approved by principal")
        assert (damage_inv.status, damage_inv.waived_cents) == ("paid", 2000)
        # The billed amounts never change; the waiver explains the difference.
        assert (damage_inv.subtotal_cents, damage_inv.total_cents) == (12500, 2900)

        fee_inv = await store.invoices.get(fee_id, lock=True)
        assert fee_inv is not None
        await apply_waiver(ctx, clerk, fee_inv, 1000, "  Sibling   discount ")
        assert fee_inv.balance_cents == 1500 and fee_inv.status == "unpaid"
        with pytest.raises(ValidationError, match=r"more than the \$15.00 still owed"):
            await apply_waiver(ctx, clerk, fee_inv, 1501, "too much")
        with pytest.raises(ValidationError, match="Say why"):
            await apply_waiver(ctx, clerk, fee_inv, 100, "   ")
        await cancel_invoice(ctx, clerk, spare_id, reason="Billed twice")
        spare_inv = await store.invoices.get(spare_id, lock=True)
        assert spare_inv is not None
        with pytest.raises(ConflictError, match="only open invoices"):
            await apply_waiver(ctx, clerk, spare_inv, 100, "late")
        await store.commit()
    await assert_ledger_holds(stores)

    splits = {inv.id: split_money(inv) for inv in await _all_invoices(stores)}
    assert splits[damage_id].collected == 900 and splits[damage_id].waived == 2000
    assert splits[damage_id].covered == 9600 and splits[damage_id].outstanding == 0
    assert splits[fee_id].outstanding == 1500 and splits[fee_id].waived == 1000
    assert splits[spare_id].cancelled == 2500 and splits[spare_id].outstanding == 0
    async with stores() as store:
        adjustments = await store.payments.adjustments_for(fee_id)
        assert [(a.kind, a.amount_cents, a.reason, a.status) for a in adjustments] == [
            ("waiver", 1000, "Sibling discount", "applied")
        ]
        entries = (
            await store.session.execute(
                select(m.ActivityEntry.action, m.ActivityEntry.comment).where(
                    m.ActivityEntry.entity_id == fee_id, m.ActivityEntry.action == "waiver_applied"
                )
            )
        ).all()
        assert entries == [("waiver_applied", "Sibling discount")]
        await store.commit()


async def test_the_check_finds_totals_that_drift_from_their_rows(stores, clock) -> None:
    d = await add_district(stores)
    clerk = await add_staff(stores, "Billing Clerk")
    async with stores() as store:
        fee = await issue_invoice(
            ctx_for(store, clock),
            clerk,
            IssueInvoice(student_id=d.student_id, kind=InvoiceKind.FEE, lines=(LINE,)),
        )
        number = fee.invoice.number
        await store.commit()
    await assert_ledger_holds(stores)
    async with stores() as store:
        # Money written straight into the total, with no payment row behind it.
        await store.session.execute(text("UPDATE invoices SET paid_cents = 500"))
        await store.commit()
    async with stores() as store:
        found = await discrepancies(store.session)
        await store.commit()
    assert [x.describe() for x in found] == [f"{number}: paid 500 but payments add to 0"]
