"""Payment plans against the store (SQLite and PostgreSQL): setting, replacing and clearing a
plan, and the billing run following the installments and flagging missed ones once."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from storage import models as m
from storage.db import session_factory
from storage.payment_plans import PlanRows, plan_view
from storage.uow import UnitOfWorkFactory
from tests.builders import add_staff
from tests.integration.billing_helpers import (
    TZ,
    add_family,
    add_invoice,
    at_run_time,
    invoice_row,
    run_days,
    runner,
    steps_of,
)
from workflows.clock import FixedClock
from workflows.errors import ConflictError, PermissionDenied, ValidationError
from workflows.payment_plans import (
    PLAN_POSTED,
    PlanOutcome,
    SetPaymentPlan,
    clear_payment_plan,
    set_payment_plan,
)
from workflows.payments import PaymentMethod, RecordPayment, record_payment
from workflows.permissions import Actor
from workflows.ports import Context

JAN5, JAN10 = date(2026, 1, 5), date(2026, 1, 10)
FEB1, MAR1, APR1 = date(2026, 2, 1), date(2026, 3, 1), date(2026, 4, 1)


async def set_plan(
    stores: UnitOfWorkFactory,
    clock: FixedClock,
    actor: Actor,
    invoice_id: int,
    *,
    count: int = 3,
    first_due: date = FEB1,
    note: str = "",
) -> PlanOutcome:
    async with stores() as store:
        result = await set_payment_plan(
            Context(store, clock, TZ),
            PlanRows(store.session, clock),
            actor,
            SetPaymentPlan(invoice_id, count=count, first_due=first_due, note=note),
        )
        await store.commit()
        return result


async def clear_plan(
    stores: UnitOfWorkFactory, clock: FixedClock, actor: Actor, invoice_id: int
) -> PlanOutcome:
    async with stores() as store:
        result = await clear_payment_plan(
            Context(store, clock, TZ), PlanRows(store.session, clock), actor, invoice_id
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
) -> None:
    async with stores() as store:
        await record_payment(
            Context(store, clock, TZ),
            actor,
            RecordPayment(invoice_id, cents, PaymentMethod.CASH, idempotency_key=key),
        )
        await store.commit()


async def rows(engine: AsyncEngine, model: Any, *where: Any, order: Any = None) -> list[Any]:
    async with session_factory(engine)() as session:
        stmt = select(model).where(*where).order_by(order if order is not None else model.id)
        return list((await session.execute(stmt)).scalars())


async def test_setting_a_plan_writes_installments_audit_email_and_thread_message(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    clock.set(at_run_time(JAN10))
    clerk = await add_staff(stores, "Billing Clerk")
    (student,), _ = await add_family(stores, "Rivera", guardians=2)
    invoice_id = await add_invoice(stores, student, created=JAN5, due=APR1, total_cents=10_000)

    done = await set_plan(stores, clock, clerk, invoice_id, note="As agreed  by phone")
    assert done.changed and done.notices == 2  # one per guardian
    installments = await rows(engine, m.Installment, order=m.Installment.position)
    assert [(i.position, i.due_on, i.amount_cents) for i in installments] == [
        (1, FEB1, 3_334),
        (2, MAR1, 3_333),
        (3, APR1, 3_333),
    ]
    [entry] = await rows(engine, m.ActivityEntry, m.ActivityEntry.action == "payment_plan_set")
    assert entry.actor_staff_id == clerk.staff_id and entry.comment == "As agreed by phone"
    notices = await rows(engine, m.Notice, m.Notice.template == "payment_plan_confirmation")
    assert {n.dedupe_key for n in notices} == {f"payment-plan:{invoice_id}:{done.version}"}
    assert notices[0].context == {
        "installments": [
            {"due_on": "2026-02-01", "amount_cents": 3_334},
            {"due_on": "2026-03-01", "amount_cents": 3_333},
            {"due_on": "2026-04-01", "amount_cents": 3_333},
        ],
        "note": "As agreed by phone",
    }
    [posted] = await rows(engine, m.OutboxMessage, m.OutboxMessage.kind == PLAN_POSTED)
    assert posted.payload["event"] == "set" and posted.payload["invoice_id"] == invoice_id

    # The same plan again (a redelivered form): nothing new anywhere.
    again = await set_plan(stores, clock, clerk, invoice_id, note="As agreed by phone")
    assert not again.changed and again.version == done.version
    assert len(await rows(engine, m.Installment)) == 3
    assert len(await rows(engine, m.Notice)) == 2
    assert len(await rows(engine, m.OutboxMessage, m.OutboxMessage.kind == PLAN_POSTED)) == 1

    # Nothing paid yet: a new plan replaces it, as a new version with its own email.
    replaced = await set_plan(stores, clock, clerk, invoice_id, count=4)
    assert replaced.changed and replaced.version != done.version
    assert [i.amount_cents for i in await rows(engine, m.Installment)] == [2_500] * 4
    assert len(await rows(engine, m.Notice)) == 4

    # Once money is paid towards it, it can't be replaced; it can be cleared.
    await pay(stores, clock, clerk, invoice_id, 1_000, "cash-1")
    with pytest.raises(ConflictError, match=r"\$10\.00 has already been paid towards"):
        await set_plan(stores, clock, clerk, invoice_id, count=2)
    assert len(await rows(engine, m.Installment)) == 4
    async with session_factory(engine)() as session:
        view = await plan_view(session, invoice_id)
    assert view is not None and view.plan_paid_cents == 1_000
    assert view.current is not None and view.current.open_cents == 1_500

    cleared = await clear_plan(stores, clock, clerk, invoice_id)
    assert cleared.changed and await rows(engine, m.Installment) == []
    assert not (await clear_plan(stores, clock, clerk, invoice_id)).changed
    actions = [e.action for e in await rows(engine, m.ActivityEntry)]
    assert actions.count("payment_plan_cleared") == 1
    posts = await rows(engine, m.OutboxMessage, m.OutboxMessage.kind == PLAN_POSTED)
    assert [(o.payload["event"], o.payload["version"]) for o in posts] == [
        ("set", 1),
        ("set", 2),
        ("cleared", 2),
    ]

    # A new plan for what is left: $90.00 in two.
    await set_plan(stores, clock, clerk, invoice_id, count=2)
    assert [i.amount_cents for i in await rows(engine, m.Installment)] == [4_500, 4_500]


async def test_bad_plans_and_roles_without_record_payments_change_nothing(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    clock.set(at_run_time(JAN10))
    clerk = await add_staff(stores, "Billing Clerk")
    tech = await add_staff(stores, "Technician")
    (student,), _ = await add_family(stores, "Nguyen")
    invoice_id = await add_invoice(stores, student, created=JAN5, due=APR1, total_cents=10_000)

    with pytest.raises(PermissionDenied, match="Record Payments"):
        await set_plan(stores, clock, tech, invoice_id)
    with pytest.raises(ValidationError) as err:
        await set_plan(stores, clock, clerk, invoice_id, first_due=JAN10 - timedelta(days=1))
    assert err.value.field == "first_due"
    with pytest.raises(ValidationError) as err:
        await set_plan(stores, clock, clerk, invoice_id, count=25)
    assert err.value.field == "count"
    with pytest.raises(ValidationError, match="note"):
        await set_plan(stores, clock, clerk, invoice_id, note="x" * 501)
    await set_plan(stores, clock, clerk, invoice_id)
    with pytest.raises(PermissionDenied):
        await clear_plan(stores, clock, tech, invoice_id)
    assert len(await rows(engine, m.Installment)) == 3
    assert [e.action for e in await rows(engine, m.ActivityEntry)] == ["payment_plan_set"]


async def test_a_plan_covers_what_was_left_when_it_was_set(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    clock.set(at_run_time(JAN10))
    clerk = await add_staff(stores, "Billing Clerk")
    (student,), _ = await add_family(stores, "Okafor")
    invoice_id = await add_invoice(
        stores, student, created=JAN5, due=APR1, total_cents=30_000, paid_cents=10_000
    )
    await set_plan(stores, clock, clerk, invoice_id, count=2)
    assert [i.amount_cents for i in await rows(engine, m.Installment)] == [10_000, 10_000]
    async with session_factory(engine)() as session:
        view = await plan_view(session, invoice_id)
    assert view is not None and view.plan_paid_cents == 0 and view.current is not None
    assert view.current.position == 1


async def test_the_billing_run_follows_the_installments(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    clock.set(at_run_time(JAN10))
    clerk = await add_staff(stores, "Billing Clerk")
    (student,), _ = await add_family(stores, "Rivera")
    # Due June 30 on its own; the plan's installments fall on Feb 1, Mar 1 and Apr 1.
    invoice_id = await add_invoice(
        stores, student, created=JAN5, due=date(2026, 6, 30), total_cents=15_000
    )
    await set_plan(stores, clock, clerk, invoice_id)

    async def each(day: date, _result: Any) -> None:
        if day == date(2026, 1, 20):
            await pay(stores, clock, clerk, invoice_id, 5_000, "cash-jan")

    await run_days(engine, clock, JAN10, date(2026, 2, 14), each=each)
    # The dry run sees the plan invoice's next step too.
    clock.set(at_run_time(date(2026, 2, 15)))
    preview = await runner(engine, clock).run(date(2026, 2, 15), dry_run=True)
    assert [(p.invoice_id, p.step) for p in preview.planned] == [(invoice_id, "pre_due_14")]
    await run_days(engine, clock, date(2026, 2, 15), date(2026, 3, 10))

    assert await steps_of(engine, invoice_id) == [
        ("pre_due_14", date(2026, 1, 18)),  # installment 1 (Feb 1); paid on Jan 20
        ("pre_due_14", date(2026, 2, 15)),  # installment 2 (Mar 1) from here on
        ("pre_due_7", date(2026, 2, 22)),
        ("pre_due_1", date(2026, 2, 28)),
        ("first", date(2026, 3, 8)),  # 7 days after the missed installment
    ]
    async with session_factory(engine)() as session:
        due_dates = (
            await session.execute(
                select(m.BillingStep.due_date).where(m.BillingStep.invoice_id == invoice_id)
            )
        ).scalars()
        assert sorted(set(due_dates)) == [FEB1, MAR1]
    reminders = await rows(engine, m.Notice, m.Notice.template == "due_reminder")
    assert reminders[-1].context == {
        "step": "pre_due_1",
        "installment": {
            "position": 2,
            "count": 3,
            "due_on": "2026-03-01",
            "amount_cents": 5_000,
            "due_cents": 5_000,
        },
    }
    assert all(n.status == "queued" for n in reminders)

    installments = await rows(engine, m.Installment, order=m.Installment.position)
    assert [i.missed_on for i in installments] == [None, date(2026, 3, 2), None]
    [missed] = await rows(engine, m.Notice, m.Notice.template == "installment_missed")
    assert missed.dedupe_key == f"installment-missed:{installments[1].id}"
    assert missed.context["installment"]["due_cents"] == 5_000
    alerts = [
        o.payload
        for o in await rows(engine, m.OutboxMessage, m.OutboxMessage.kind == PLAN_POSTED)
        if o.payload["event"] == "missed"
    ]
    assert alerts == [
        {
            "invoice_id": invoice_id,
            "event": "missed",
            "installment_id": installments[1].id,
            "position": 2,
            "count": 3,
            "due_on": "2026-03-01",
            "due_cents": 5_000,
        }
    ]
    invoice = await invoice_row(engine, invoice_id)
    assert invoice.status == "first"
    assert [n.template for n in await rows(engine, m.Notice, m.Notice.template == "overdue_first")]

    # Rerunning the day the installment was found missed flags nothing twice.
    clock.set(at_run_time(date(2026, 3, 10)))
    await runner(engine, clock).run(date(2026, 3, 2))
    await runner(engine, clock).run(date(2026, 3, 10))
    assert len(await rows(engine, m.Notice, m.Notice.template == "installment_missed")) == 1
    assert len(await steps_of(engine, invoice_id)) == 5
    entries = await rows(engine, m.ActivityEntry, m.ActivityEntry.action == "installment_missed")
    assert len(entries) == 1 and entries[0].after["installment"] == 2


async def test_clearing_the_plan_hands_reminders_back_to_the_due_date(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    clock.set(at_run_time(JAN10))
    clerk = await add_staff(stores, "Billing Clerk")
    (student,), _ = await add_family(stores, "Smith")
    invoice_id = await add_invoice(stores, student, created=JAN5, due=FEB1, total_cents=9_000)
    await set_plan(stores, clock, clerk, invoice_id, first_due=date(2026, 3, 1))
    # Jan 18 would be the invoice's 14-day reminder: on the plan, nothing is due that day.
    await run_days(engine, clock, JAN10, date(2026, 1, 18))
    assert await steps_of(engine, invoice_id) == []
    await clear_plan(stores, clock, clerk, invoice_id)
    await run_days(engine, clock, date(2026, 1, 19), date(2026, 1, 25))
    assert await steps_of(engine, invoice_id) == [("pre_due_7", date(2026, 1, 25))]
