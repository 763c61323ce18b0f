"""Waivers, their approval, and refunds on SQLite and PostgreSQL; after every scenario each
invoice's billed amount still splits into collected + covered + waived + refunded + outstanding.
"""

from __future__ import annotations

import asyncio
from datetime import date

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from storage import models as m
from storage.uow import UnitOfWorkFactory
from tests.builders import add_staff
from tests.integration.billing_helpers import TZ, add_family, add_invoice, runner
from workflows.clock import FixedClock
from workflows.errors import ConflictError, PermissionDenied, ValidationError
from workflows.ledger import split_money
from workflows.payments import PaymentMethod, RecordPayment, record_payment
from workflows.permissions import Actor
from workflows.ports import Context
from workflows.refunds import RefundPayment, refund_payment
from workflows.waivers import (
    WAIVER_DECIDED,
    WAIVER_REQUESTED,
    RequestWaiver,
    decide_waiver,
    request_waiver,
    withdraw_waiver,
)

JAN = date(2026, 1, 5)
DUE = date(2026, 3, 9)  # the clock's day (Mar 2) is 7 days before: a reminder day


async def one_invoice(stores: UnitOfWorkFactory, total_cents: int = 20_000) -> int:
    (student,), _ = await add_family(stores, "Okafor")
    return await add_invoice(stores, student, created=JAN, due=DUE, total_cents=total_cents)


async def invoice(stores: UnitOfWorkFactory, invoice_id: int) -> m.Invoice:
    async with stores() as store:
        found = await store.invoices.get(invoice_id)
        assert found is not None
        await store.commit()
        return found


async def assert_books_balance(stores: UnitOfWorkFactory) -> None:
    """Reconciliation: every invoice's billed amount adds up from its parts."""
    async with stores() as store:
        rows = (await store.session.execute(select(m.Invoice))).scalars().all()
        for row in rows:
            split = split_money(row)
            assert split.adds_up(), (row.number, split)
            assert split.collected >= 0 and split.outstanding >= 0
        await store.commit()


async def activity(stores: UnitOfWorkFactory, invoice_id: int) -> list[m.ActivityEntry]:
    async with stores() as store:
        result = await store.activity.for_entity("invoice", invoice_id)
        await store.commit()
        return result


async def outbox_kinds(stores: UnitOfWorkFactory) -> list[str]:
    async with stores() as store:
        rows = await store.session.execute(
            select(m.OutboxMessage.kind).order_by(m.OutboxMessage.id)
        )
        await store.commit()
        return list(rows.scalars())


async def waive(
    stores: UnitOfWorkFactory,
    clock: FixedClock,
    actor: Actor,
    invoice_id: int,
    cents: int,
    key: str | None = None,
    reason: str = "Family hardship",
):  # type: ignore[no-untyped-def]
    async with stores() as store:
        result = await request_waiver(
            Context(store, clock, TZ), actor, RequestWaiver(invoice_id, cents, reason, key)
        )
        await store.commit()
        return result


async def decide(
    stores: UnitOfWorkFactory, clock: FixedClock, actor: Actor, adjustment_id: int, approve: bool
):  # type: ignore[no-untyped-def]
    async with stores() as store:
        result = await decide_waiver(
            Context(store, clock, TZ), actor, adjustment_id, approve=approve, comment="ok"
        )
        await store.commit()
        return result


async def pay(
    stores: UnitOfWorkFactory,
    clock: FixedClock,
    actor: Actor,
    invoice_id: int,
    cents: int,
    key: str,
) -> int:
    async with stores() as store:
        recorded = await record_payment(
            Context(store, clock, TZ),
            actor,
            RecordPayment(
                invoice_id=invoice_id,
                amount_cents=cents,
                method=PaymentMethod.CHECK,
                reference="1043",
                idempotency_key=key,
            ),
        )
        await store.commit()
        return recorded.payment.id


async def refund(
    stores: UnitOfWorkFactory,
    clock: FixedClock,
    actor: Actor,
    payment_id: int,
    cents: int,
    key: str,
):  # type: ignore[no-untyped-def]
    async with stores() as store:
        result = await refund_payment(
            Context(store, clock, TZ),
            actor,
            RefundPayment(payment_id, cents, "Device found in the library", key),
        )
        await store.commit()
        return result


# --- waivers up to the approval amount -----------------------------------------------------------


async def test_a_small_waiver_applies_at_once_and_leaves_the_billed_amount(
    stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    clerk = await add_staff(stores, "Billing Clerk")
    invoice_id = await one_invoice(stores)

    outcome = await waive(stores, clock, clerk, invoice_id, 2_500, key="form-1")
    assert outcome.applied and outcome.created

    row = await invoice(stores, invoice_id)
    assert (row.subtotal_cents, row.total_cents) == (20_000, 20_000)  # billed stays billed
    assert (row.waived_cents, row.balance_cents, row.status) == (2_500, 17_500, "unpaid")
    [entry] = [e for e in await activity(stores, invoice_id) if e.action == "waiver_applied"]
    assert entry.comment == "Family hardship" and entry.actor_staff_id == clerk.staff_id
    assert entry.after is not None and entry.after["amount_cents"] == 2_500

    # The same form again (a redelivery) finds the first waiver.
    again = await waive(stores, clock, clerk, invoice_id, 2_500, key="form-1")
    assert not again.created and again.adjustment.id == outcome.adjustment.id
    assert (await invoice(stores, invoice_id)).waived_cents == 2_500
    assert WAIVER_REQUESTED not in await outbox_kinds(stores)
    await assert_books_balance(stores)


async def test_waiving_everything_settles_the_invoice_and_stops_reminders(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    director = await add_staff(stores, "Finance Director")
    waived_id = await one_invoice(stores)
    (other_student,), _ = await add_family(stores, "Nguyen")
    control_id = await add_invoice(stores, other_student, created=JAN, due=DUE)

    await waive(stores, clock, director, waived_id, 20_000)  # an approver: applies at once
    row = await invoice(stores, waived_id)
    assert (row.status, row.balance_cents, row.paid_at) == ("paid", 0, clock.now())

    result = await runner(engine, clock).run(date(2026, 3, 2))
    assert result.ran
    async with stores() as store:
        notices = (await store.session.execute(select(m.Notice))).scalars().all()
        reminded = {n.invoice_id for n in notices if n.template == "due_reminder"}
        await store.commit()
    assert reminded == {control_id}
    await assert_books_balance(stores)


async def test_waiver_input_is_checked_and_changes_nothing(
    stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    clerk = await add_staff(stores, "Billing Clerk")
    tech = await add_staff(stores, "Technician")
    invoice_id = await one_invoice(stores, total_cents=5_000)

    with pytest.raises(ValidationError, match="more than the \\$50.00 still owed"):
        await waive(stores, clock, clerk, invoice_id, 5_001)
    with pytest.raises(ValidationError, match="more than \\$0.00"):
        await waive(stores, clock, clerk, invoice_id, 0)
    with pytest.raises(ValidationError, match="Say why"):
        await waive(stores, clock, clerk, invoice_id, 100, reason="   ")
    with pytest.raises(PermissionDenied, match="Waive Charges"):
        await waive(stores, clock, tech, invoice_id, 100)
    row = await invoice(stores, invoice_id)
    assert row.waived_cents == 0
    async with stores() as store:
        assert await store.payments.adjustments_for(invoice_id) == []
        await store.commit()
    await assert_books_balance(stores)


# --- waivers that need approval ------------------------------------------------------------------


async def requested(stores: UnitOfWorkFactory, clock: FixedClock, cents: int = 15_000):  # type: ignore[no-untyped-def]
    clerk = await add_staff(stores, "Billing Clerk")
    invoice_id = await one_invoice(stores)
    outcome = await waive(stores, clock, clerk, invoice_id, cents, key="big-1")
    return clerk, invoice_id, outcome


async def test_a_large_waiver_waits_for_approval(
    stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    clerk, invoice_id, outcome = await requested(stores, clock)

    assert outcome.pending and outcome.adjustment.requested_by_id == clerk.staff_id
    row = await invoice(stores, invoice_id)
    assert (row.waived_cents, row.balance_cents) == (0, 20_000)
    assert await outbox_kinds(stores) == [WAIVER_REQUESTED]
    [entry] = [e for e in await activity(stores, invoice_id) if e.action == "waiver_requested"]
    assert entry.after is not None and entry.after["approval_cents"] == 10_000

    # One request at a time per invoice; a small waiver waits for it too.
    with pytest.raises(ConflictError, match="already awaiting approval"):
        await waive(stores, clock, clerk, invoice_id, 1_000)
    await assert_books_balance(stores)


async def test_approval_applies_the_waiver_and_the_first_decision_wins(
    stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    _clerk, invoice_id, outcome = await requested(stores, clock)
    director = await add_staff(stores, "Finance Director")
    admin = await add_staff(stores, "Admin")

    decision = await decide(stores, clock, director, outcome.adjustment.id, True)
    assert decision.changed
    row = await invoice(stores, invoice_id)
    assert (row.waived_cents, row.balance_cents) == (15_000, 5_000)
    async with stores() as store:
        adjustment = await store.payments.adjustment(outcome.adjustment.id)
        assert adjustment is not None
        assert (adjustment.status, adjustment.decided_by_id) == ("applied", director.staff_id)
        assert (adjustment.decided_at, adjustment.decision_comment) == (clock.now(), "ok")
        decisions = await store.activity.for_entity("invoice_adjustment", outcome.adjustment.id)
        await store.commit()
    assert [d.action for d in decisions] == ["approved"]
    assert (await outbox_kinds(stores))[-1] == WAIVER_DECIDED

    with pytest.raises(ConflictError, match="already approved by Finance Director Person"):
        await decide(stores, clock, admin, outcome.adjustment.id, False)
    # The approver's own click redelivered changes nothing and says so quietly.
    assert not (await decide(stores, clock, director, outcome.adjustment.id, True)).changed
    assert (await invoice(stores, invoice_id)).waived_cents == 15_000
    await assert_books_balance(stores)


async def test_denial_changes_nothing_on_the_invoice(
    stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    _clerk, invoice_id, outcome = await requested(stores, clock)
    director = await add_staff(stores, "Finance Director")

    await decide(stores, clock, director, outcome.adjustment.id, False)
    row = await invoice(stores, invoice_id)
    assert (row.waived_cents, row.balance_cents) == (0, 20_000)
    async with stores() as store:
        adjustment = await store.payments.adjustment(outcome.adjustment.id)
        assert adjustment is not None and adjustment.status == "denied"
        await store.commit()
    actions = [e.action for e in await activity(stores, invoice_id)]
    assert "waiver_denied" in actions and "waiver_applied" not in actions
    await assert_books_balance(stores)


async def test_only_approvers_decide(stores: UnitOfWorkFactory, clock: FixedClock) -> None:
    clerk, invoice_id, outcome = await requested(stores, clock)

    with pytest.raises(PermissionDenied, match="Approve Waivers"):
        await decide(stores, clock, clerk, outcome.adjustment.id, True)
    async with stores() as store:
        adjustment = await store.payments.adjustment(outcome.adjustment.id)
        assert adjustment is not None and adjustment.status == "pending"
        await store.commit()
    assert (await invoice(stores, invoice_id)).waived_cents == 0


async def test_approval_after_a_payment_shrank_the_balance_is_refused(
    stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    clerk, invoice_id, outcome = await requested(stores, clock)
    director = await add_staff(stores, "Finance Director")
    await pay(stores, clock, clerk, invoice_id, 10_000, "pay-1")  # $100 left, waiver is $150

    with pytest.raises(ConflictError, match="can't be approved as it stands"):
        await decide(stores, clock, director, outcome.adjustment.id, True)
    row = await invoice(stores, invoice_id)
    assert (row.waived_cents, row.balance_cents) == (0, 10_000)
    async with stores() as store:
        adjustment = await store.payments.adjustment(outcome.adjustment.id)
        assert adjustment is not None and adjustment.status == "pending"
        await store.commit()
    # Denying it is still possible.
    await decide(stores, clock, director, outcome.adjustment.id, False)
    await assert_books_balance(stores)


async def test_the_requester_may_withdraw_a_waiting_request(
    stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    clerk, invoice_id, outcome = await requested(stores, clock)
    other = await add_staff(stores, "Billing Clerk", "other.clerk@district.org")
    async with stores() as store:
        with pytest.raises(PermissionDenied):
            await withdraw_waiver(Context(store, clock, TZ), other, outcome.adjustment.id)
        await store.commit()
    async with stores() as store:
        await withdraw_waiver(Context(store, clock, TZ), clerk, outcome.adjustment.id)
        await store.commit()
    assert "waiver_withdrawn" in [e.action for e in await activity(stores, invoice_id)]
    director = await add_staff(stores, "Finance Director")
    with pytest.raises(ConflictError, match="already withdrawn"):
        await decide(stores, clock, director, outcome.adjustment.id, True)
    assert (await invoice(stores, invoice_id)).waived_cents == 0


async def test_two_approvers_at_once_record_exactly_one_decision(
    stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    _clerk, invoice_id, outcome = await requested(stores, clock)
    director = await add_staff(stores, "Finance Director")
    admin = await add_staff(stores, "Admin")

    results = await asyncio.gather(
        decide(stores, clock, director, outcome.adjustment.id, True),
        decide(stores, clock, admin, outcome.adjustment.id, False),
        return_exceptions=True,
    )
    wins = [r for r in results if not isinstance(r, BaseException)]
    losses = [r for r in results if isinstance(r, BaseException)]
    assert len(wins) == 1 and len(losses) == 1
    assert isinstance(losses[0], ConflictError) and "already" in losses[0].message
    async with stores() as store:
        decisions = await store.activity.for_entity("invoice_adjustment", outcome.adjustment.id)
        adjustment = await store.payments.adjustment(outcome.adjustment.id)
        await store.commit()
    assert len(decisions) == 1 and adjustment is not None
    row = await invoice(stores, invoice_id)
    assert row.waived_cents == (15_000 if adjustment.status == "applied" else 0)
    await assert_books_balance(stores)


# --- refunds -------------------------------------------------------------------------------------


async def test_refunds_partial_then_full_with_receipts(
    stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    clerk = await add_staff(stores, "Billing Clerk")
    director = await add_staff(stores, "Finance Director")
    invoice_id = await one_invoice(stores, total_cents=10_000)
    payment_id = await pay(stores, clock, clerk, invoice_id, 6_000, "pay-1")

    first = await refund(stores, clock, director, payment_id, 2_000, "refund-1")
    assert first.created and first.adjustment.kind == "refund"
    row = await invoice(stores, invoice_id)
    assert (row.paid_cents, row.refunded_cents, row.balance_cents) == (6_000, 2_000, 4_000)
    [entry] = [e for e in await activity(stores, invoice_id) if e.action == "refund_issued"]
    assert entry.comment == "Device found in the library"
    assert entry.after is not None and entry.after["reference"] == "1043"
    async with stores() as store:
        notices = (
            (
                await store.session.execute(
                    select(m.Notice).where(m.Notice.template == "refund_receipt")
                )
            )
            .scalars()
            .all()
        )
        await store.commit()
    assert len(notices) == 1
    context = notices[0].context or {}
    assert context["amount_cents"] == 2_000 and context["balance_cents"] == 4_000
    assert (context["method"], context["reference"]) == ("check", "1043")
    assert context["reason"] == "Device found in the library"

    again = await refund(stores, clock, director, payment_id, 2_000, "refund-1")
    assert not again.created and again.adjustment.id == first.adjustment.id
    with pytest.raises(ValidationError, match="more than the \\$40.00 left to refund"):
        await refund(stores, clock, director, payment_id, 4_001, "refund-2")
    await refund(stores, clock, director, payment_id, 4_000, "refund-3")
    with pytest.raises(ValidationError, match="already been refunded in full"):
        await refund(stores, clock, director, payment_id, 100, "refund-4")
    row = await invoice(stores, invoice_id)
    assert (row.refunded_cents, row.balance_cents, row.status) == (6_000, 4_000, "unpaid")
    split = split_money(row)
    assert (split.collected, split.refunded, split.outstanding) == (0, 6_000, 4_000)
    await assert_books_balance(stores)


async def test_a_paid_invoice_refunded_stays_settled(
    stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    clerk = await add_staff(stores, "Billing Clerk")
    director = await add_staff(stores, "Finance Director")
    invoice_id = await one_invoice(stores, total_cents=30_000)
    payment_id = await pay(stores, clock, clerk, invoice_id, 30_000, "pay-lost")

    with pytest.raises(PermissionDenied, match="Issue Refunds"):
        await refund(stores, clock, clerk, payment_id, 30_000, "refund-clerk")
    await refund(stores, clock, director, payment_id, 30_000, "refund-found")
    row = await invoice(stores, invoice_id)
    assert (row.status, row.balance_cents, row.refunded_cents) == ("paid", 0, 30_000)
    await assert_books_balance(stores)
