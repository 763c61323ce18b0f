"""Invoices, insurance and payments through the real store (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from storage import models as m
from storage.uow import UnitOfWorkFactory
from tests.builders import add_district, add_policy, add_staff
from workflows.clock import FixedClock
from workflows.errors import ConflictError, OverpaymentError, PermissionDenied, ValidationError
from workflows.incidents import OpenIncident, open_incident
from workflows.invoices import (
    CreateInvoice,
    CustomLine,
    cancel_invoice,
    create_invoice_for_incident,
    restore_invoice,
    set_invoice_automation,
)
from workflows.overrides import decide_cap_override, request_cap_override
from workflows.payments import PaymentMethod, RecordPayment, record_payment
from workflows.permissions import Actor
from workflows.ports import Context

TZ = ZoneInfo("America/Chicago")


def ctx_for(store, clock: FixedClock) -> Context:  # type: ignore[no-untyped-def]
    return Context(store=store, clock=clock, tz=TZ)


async def _incident(
    stores: UnitOfWorkFactory,
    clock: FixedClock,
    actor: Actor,
    device_id: int,
    occurred: date = date(2026, 2, 20),
    key: str | None = None,
) -> int:
    async with stores() as store:
        opened = await open_incident(
            ctx_for(store, clock),
            actor,
            OpenIncident(
                device_id=device_id,
                occurred_on=occurred,
                flags=("screen",),
                description="Cracked screen",
                idempotency_key=key,
            ),
        )
        await store.commit()
        return opened.incident.id


async def _invoice(stores, clock, actor, incident_id, **kw):  # type: ignore[no-untyped-def]
    async with stores() as store:
        result = await create_invoice_for_incident(
            ctx_for(store, clock), actor, CreateInvoice(incident_id=incident_id, **kw)
        )
        await store.commit()
        return result


async def test_invoice_applies_copay_policy_and_keeps_snapshot(stores, clock) -> None:
    d = await add_district(stores)
    policy_id, enrollment_id = await add_policy(
        stores, d.student_id, name="AppleCare+", copay_cents=2900, max_claims=2
    )
    tech = await add_staff(stores, "Technician")
    incident_id = await _incident(stores, clock, tech, d.device_id)

    created = await _invoice(stores, clock, tech, incident_id, fee_item_ids=(d.fee_screen_id,))
    inv = created.invoice
    assert (inv.subtotal_cents, inv.insurance_cents, inv.total_cents) == (12500, 9600, 2900)
    assert inv.number == "INV-000001"
    assert inv.due_date == date(2026, 5, 31)  # 90 days after the district's local today
    assert inv.claim_enrollment_id == enrollment_id
    assert inv.insurance_snapshot["claim_number"] == 1
    assert created.notices == ("invoice_issued",)

    # Editing, then deleting, the policy changes nothing on the invoice.
    async with stores() as store:
        policy = await store.session.get(m.InsurancePolicy, policy_id)
        policy.copay_cents = 0
        policy.name = "Renamed"
        await store.session.flush()
        await store.session.delete(policy)
        await store.commit()
    async with stores() as store:
        again = await store.invoices.get(inv.id)
        assert again.total_cents == 2900
        assert again.insurance_snapshot["policy_name"] == "AppleCare+"
        assert again.insurance_snapshot["copay_cents"] == 2900
        assert again.claim_enrollment_id is None  # the enrollment went with the policy
        notices = (await store.session.execute(select(m.Notice))).scalars().all()
        assert [(n.template, n.to_address) for n in notices] == [
            ("invoice_issued", "maria@example.org")
        ]
        outbox = (await store.session.execute(select(m.OutboxMessage))).scalars().all()
        assert [o.payload for o in outbox] == [{"notice_id": notices[0].id}]
        await store.commit()


async def test_zero_balance_after_insurance_settles_the_invoice(stores, clock) -> None:
    d = await add_district(stores)
    await add_policy(stores, d.student_id, coverage_percent="100", cap_cents=25000)
    tech = await add_staff(stores, "Technician")
    incident_id = await _incident(stores, clock, tech, d.device_id)
    created = await _invoice(
        stores, clock, tech, incident_id, custom_lines=(CustomLine("Hinge repair", 10000),)
    )
    assert created.invoice.total_cents == 0
    assert created.invoice.status == "paid"
    assert created.invoice.paid_at == clock.now()
    assert created.notices == ()


async def test_claim_cap_then_cancel_frees_the_slot(stores, clock) -> None:
    d = await add_district(stores)
    await add_policy(stores, d.student_id, copay_cents=2500, cap_cents=25000, max_claims=1)
    tech = await add_staff(stores, "Technician")
    clerk = await add_staff(stores, "Billing Clerk")
    first = await _invoice(
        stores,
        clock,
        tech,
        await _incident(stores, clock, tech, d.device_id),
        custom_lines=(CustomLine("Screen", 30000),),
    )
    assert first.invoice.total_cents == 5000
    second_incident = await _incident(stores, clock, tech, d.device_id)
    second = await _invoice(
        stores, clock, tech, second_incident, custom_lines=(CustomLine("Screen", 30000),)
    )
    assert second.invoice.total_cents == 30000
    assert second.invoice.cap_reached and second.invoice.claim_enrollment_id is None
    assert "Claim cap reached (1 of 1 this term)" in second.decision.audit_lines[0]

    async with stores() as store:
        await cancel_invoice(ctx_for(store, clock), clerk, first.invoice.id, reason="Test invoice")
        await store.commit()
    third = await _invoice(
        stores,
        clock,
        tech,
        await _incident(stores, clock, tech, d.device_id),
        custom_lines=(CustomLine("Screen", 30000),),
    )
    assert third.invoice.total_cents == 5000  # the cancelled claim gave its slot back

    # Restoring the first now would exceed the cap.
    async with stores() as store:
        with pytest.raises(ConflictError, match="claim cap"):
            await restore_invoice(ctx_for(store, clock), clerk, first.invoice.id)
        await store.commit()


async def test_override_needs_policy_gate_and_permission(stores, clock) -> None:
    d = await add_district(stores)
    await add_policy(stores, d.student_id, copay_cents=2500, max_claims=1, allow_override=True)
    tech = await add_staff(stores, "Technician")
    director = await add_staff(stores, "Finance Director")
    await _invoice(
        stores,
        clock,
        tech,
        await _incident(stores, clock, tech, d.device_id),
        custom_lines=(CustomLine("Screen", 12500),),
    )
    incident_id = await _incident(stores, clock, tech, d.device_id)
    # A technician can't tick the override box.
    with pytest.raises(PermissionDenied):
        await _invoice(
            stores,
            clock,
            tech,
            incident_id,
            custom_lines=(CustomLine("Screen", 12500),),
            apply_override=True,
        )
    full = await _invoice(
        stores, clock, tech, incident_id, custom_lines=(CustomLine("Screen", 12500),)
    )
    assert full.invoice.total_cents == 12500

    async with stores() as store:
        request = await request_cap_override(
            ctx_for(store, clock), tech, incident_id, reason="Vendor goodwill claim #A-77"
        )
        request_id = request.id
        await store.commit()
    async with stores() as store:
        with pytest.raises(PermissionDenied):
            await decide_cap_override(ctx_for(store, clock), tech, request_id, approve=True)
        await store.commit()
    async with stores() as store:
        decision = await decide_cap_override(
            ctx_for(store, clock), director, request_id, approve=True
        )
        assert decision.changed
        inv = decision.invoice
        assert (inv.total_cents, inv.insurance_cents, inv.override_applied) == (2500, 10000, True)
        assert inv.override_approved_by_id == director.staff_id
        assert inv.insurance_snapshot["override_approved_by"] == director.name
        await store.commit()
    # A redelivered click changes nothing; the opposite click is refused.
    async with stores() as store:
        again = await decide_cap_override(ctx_for(store, clock), director, request_id, approve=True)
        assert not again.changed
        with pytest.raises(ConflictError):
            await decide_cap_override(ctx_for(store, clock), director, request_id, approve=False)
        log = await store.activity.for_entity("cap_override", request_id)
        assert [e.action for e in log] == ["requested", "approved"]
        assert log[1].actor_staff_id == director.staff_id
        await store.commit()


async def test_override_refused_when_policy_disallows(stores, clock) -> None:
    d = await add_district(stores)
    await add_policy(stores, d.student_id, copay_cents=2900, max_claims=1, allow_override=False)
    admin = await add_staff(stores, "Admin")
    await _invoice(
        stores,
        clock,
        admin,
        await _incident(stores, clock, admin, d.device_id),
        custom_lines=(CustomLine("Screen", 12500),),
    )
    incident_id = await _incident(stores, clock, admin, d.device_id)
    with pytest.raises(PermissionDenied, match="does not allow"):
        await _invoice(
            stores,
            clock,
            admin,
            incident_id,
            custom_lines=(CustomLine("Screen", 12500),),
            apply_override=True,
        )


async def test_payments_partial_full_overpayment_and_idempotency(stores, clock) -> None:
    d = await add_district(stores)
    tech = await add_staff(stores, "Technician")
    clerk = await add_staff(stores, "Billing Clerk")
    inv = (
        await _invoice(
            stores,
            clock,
            tech,
            await _incident(stores, clock, tech, d.device_id),
            fee_item_ids=(d.fee_screen_id,),
        )
    ).invoice

    async def pay(amount: int, key: str, method=PaymentMethod.CASH, ref=None):  # type: ignore[no-untyped-def]
        async with stores() as store:
            result = await record_payment(
                ctx_for(store, clock),
                clerk,
                RecordPayment(
                    invoice_id=inv.id,
                    amount_cents=amount,
                    method=method,
                    idempotency_key=key,
                    reference=ref,
                ),
            )
            await store.commit()
            return result

    first = await pay(5000, "p1")
    assert first.created and first.invoice.paid_cents == 5000 and first.invoice.status == "unpaid"
    again = await pay(5000, "p1")
    assert not again.created and again.invoice.paid_cents == 5000
    with pytest.raises(OverpaymentError, match=r"\$80.00 is more than the \$75.00 still owed"):
        await pay(8000, "p2")
    with pytest.raises(ValidationError, match="check number"):
        await pay(1000, "p3", method=PaymentMethod.CHECK)
    with pytest.raises(PermissionDenied):
        async with stores() as store:
            await record_payment(
                ctx_for(store, clock), tech, RecordPayment(inv.id, 100, PaymentMethod.CASH, "p4")
            )
            await store.commit()
    final = await pay(7500, "p5", method=PaymentMethod.CHECK, ref="1042")
    assert final.invoice.status == "paid" and final.invoice.balance_cents == 0
    async with stores() as store:
        templates = (
            (await store.session.execute(select(m.Notice.template).order_by(m.Notice.id)))
            .scalars()
            .all()
        )
        assert templates == ["invoice_issued", "payment_receipt", "payment_receipt"]
        assert await store.invoices.balance_by_student() == {d.student_id: 0}
        with pytest.raises(ConflictError):
            await cancel_invoice(ctx_for(store, clock), clerk, inv.id, reason="x")
        await store.commit()


async def test_balances_by_student_and_family(stores, clock) -> None:
    from tests.builders import add_student_with_device

    d = await add_district(stores)
    sibling, sibling_device = await add_student_with_device(
        stores, sis_id="S2", serial="SIB-1", household_id=d.household_id
    )
    tech = await add_staff(stores, "Technician")
    for device in (d.device_id, sibling_device):
        await _invoice(
            stores,
            clock,
            tech,
            await _incident(stores, clock, tech, device),
            fee_item_ids=(d.fee_charger_id,),
        )
    cancelled = await _invoice(
        stores,
        clock,
        tech,
        await _incident(stores, clock, tech, sibling_device),
        fee_item_ids=(d.fee_screen_id,),
    )
    admin = await add_staff(stores, "Admin")
    async with stores() as store:
        await cancel_invoice(ctx_for(store, clock), admin, cancelled.invoice.id, reason="dup")
        assert await store.invoices.balance_by_student() == {d.student_id: 3000, sibling: 3000}
        assert await store.invoices.balance_by_household() == {d.household_id: 6000}
        await store.commit()


async def test_automation_flag_needs_permission(stores, clock) -> None:
    d = await add_district(stores)
    tech = await add_staff(stores, "Technician")
    clerk = await add_staff(stores, "Billing Clerk")
    incident_id = await _incident(stores, clock, tech, d.device_id)
    with pytest.raises(PermissionDenied, match="Manage Invoice Automation"):
        await _invoice(
            stores,
            clock,
            tech,
            incident_id,
            fee_item_ids=(d.fee_screen_id,),
            automation_enabled=False,
        )
    inv = (
        await _invoice(
            stores,
            clock,
            clerk,
            incident_id,
            fee_item_ids=(d.fee_screen_id,),
            automation_enabled=False,
        )
    ).invoice
    assert inv.automation_enabled is False
    async with stores() as store:
        with pytest.raises(PermissionDenied):
            await set_invoice_automation(ctx_for(store, clock), tech, inv.id, True)
        await store.commit()
    async with stores() as store:
        await set_invoice_automation(ctx_for(store, clock), clerk, inv.id, True)
        log = await store.activity.for_entity("invoice", inv.id)
        assert log[-1].action == "automation_changed"
        assert log[-1].before == {"automation_enabled": False}
        await store.commit()


async def test_invoice_creation_is_idempotent_and_validates(stores, clock) -> None:
    d = await add_district(stores)
    tech = await add_staff(stores, "Technician")
    incident_id = await _incident(stores, clock, tech, d.device_id)
    a = await _invoice(
        stores,
        clock,
        tech,
        incident_id,
        fee_item_ids=(d.fee_screen_id,),
        idempotency_key="slack:evt1",
    )
    b = await _invoice(
        stores,
        clock,
        tech,
        incident_id,
        fee_item_ids=(d.fee_screen_id,),
        idempotency_key="slack:evt1",
    )
    assert a.invoice.id == b.invoice.id and not b.created
    with pytest.raises(ValidationError, match="at least one line"):
        await _invoice(stores, clock, tech, incident_id)
    with pytest.raises(ValidationError, match="due date"):
        await _invoice(
            stores,
            clock,
            tech,
            incident_id,
            fee_item_ids=(d.fee_screen_id,),
            due_date=date(2020, 1, 1),
        )
    two = await _invoice(
        stores,
        clock,
        tech,
        incident_id,
        fee_item_ids=(d.fee_keyboard_id, d.fee_keyboard_id, d.fee_charger_id),
    )
    lines = [(ln.description, ln.quantity, ln.amount_cents) for ln in two.invoice.lines]
    assert lines == [("Keyboard", 2, 9000), ("Lost charger", 1, 3000)]
    assert two.invoice.number == "INV-000002"


async def test_activity_log_is_append_only(stores, clock) -> None:
    d = await add_district(stores)
    tech = await add_staff(stores, "Technician")
    await _incident(stores, clock, tech, d.device_id)
    for statement in ("UPDATE activity_log SET action = 'x'", "DELETE FROM activity_log"):
        with pytest.raises((DBAPIError, IntegrityError)):
            async with stores() as store:
                await store.session.execute(text(statement))
                await store.commit()
