"""Installments in the store: an invoice's plan, replacing and clearing it, and what the billing
run needs (every plan of a batch of invoices in one query; flagging missed installments once)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage import models as m
from storage.notices import queue_notice
from storage.outbox import new_message
from storage.session_of import Db, session_of
from workflows.clock import Clock
from workflows.invoices import NoticeTemplate
from workflows.payment_plans import (
    PLAN_POSTED,
    PLAN_SET_ACTION,
    InstallmentState,
    PlanEvent,
    PlannedInstallment,
    current_installment,
    installment_notice_facts,
    plan_paid_cents,
    plan_progress,
    schedule_of,
)

AUTOMATION_LABEL = "DeviceCare automation"


async def installments_of(session: AsyncSession, invoice_id: int) -> list[m.Installment]:
    stmt = (
        select(m.Installment)
        .where(m.Installment.invoice_id == invoice_id)
        .order_by(m.Installment.position)
    )
    return list((await session.execute(stmt)).scalars())


class PlanRows:
    """`workflows.payment_plans.PlanStore` over the store's session (the same transaction)."""

    def __init__(self, db: Db, clock: Clock) -> None:
        session = session_of(db)
        self.session = session
        self.clock = clock

    async def installments_of(self, invoice_id: int) -> list[m.Installment]:
        return await installments_of(self.session, invoice_id)

    async def replace_installments(
        self, invoice_id: int, schedule: Sequence[PlannedInstallment]
    ) -> list[m.Installment]:
        await self.clear_installments(invoice_id)
        now = self.clock.now()
        rows = [
            m.Installment(
                invoice_id=invoice_id,
                position=position,
                due_on=item.due_on,
                amount_cents=item.amount_cents,
                created_at=now,
            )
            for position, item in enumerate(schedule, start=1)
        ]
        self.session.add_all(rows)
        await self.session.flush()
        return rows

    async def plans_set(self, invoice_id: int) -> int:
        # Counted in the append-only activity log: installment ids are reused on SQLite.
        stmt = select(func.count()).where(
            m.ActivityEntry.entity_type == "invoice",
            m.ActivityEntry.entity_id == invoice_id,
            m.ActivityEntry.action == PLAN_SET_ACTION,
        )
        return int((await self.session.execute(stmt)).scalar_one())

    async def clear_installments(self, invoice_id: int) -> None:
        # A statement, not ORM deletes: the new rows reuse the (invoice, position) pairs.
        await self.session.execute(
            delete(m.Installment).where(m.Installment.invoice_id == invoice_id)
        )


@dataclass(frozen=True)
class PlanView:
    """An invoice's plan as Slack and the family page show it."""

    invoice_id: int
    states: tuple[InstallmentState, ...]
    missed_on: tuple[date | None, ...]
    plan_paid_cents: int

    @property
    def total_cents(self) -> int:
        return self.states[-1].running_cents if self.states else 0

    @property
    def current(self) -> InstallmentState | None:
        return next((s for s in self.states if not s.settled), None)


async def plan_view(db: Db, invoice_id: int) -> PlanView | None:
    """The invoice's plan with what is paid on each installment; None without a plan."""
    session = session_of(db)
    invoice = await session.get(m.Invoice, invoice_id)
    if invoice is None:
        return None
    rows = await installments_of(session, invoice_id)
    if not rows:
        return None
    schedule = schedule_of(rows)
    paid = plan_paid_cents(
        sum(i.amount_cents for i in schedule),
        invoice.total_cents,
        invoice.paid_cents + invoice.waived_cents,
    )
    return PlanView(
        invoice_id,
        plan_progress(schedule, paid),
        tuple(r.missed_on for r in rows),
        paid,
    )


# --- the billing run ---------------------------------------------------------------------------


async def plans_of(
    session: AsyncSession, invoice_ids: Sequence[int]
) -> dict[int, list[m.Installment]]:
    """invoice id -> its installments in order, for a batch of invoices in one query."""
    found: dict[int, list[m.Installment]] = defaultdict(list)
    if not invoice_ids:
        return found
    stmt = (
        select(m.Installment)
        .where(m.Installment.invoice_id.in_(sorted(set(invoice_ids))))
        .order_by(m.Installment.invoice_id, m.Installment.position)
    )
    for row in (await session.execute(stmt)).scalars():
        found[row.invoice_id].append(row)
    return found


def plan_paid_for(invoice: Any, rows: Sequence[m.Installment]) -> int:
    """`plan_paid_cents` for an invoice row (ORM or Core) and its installments."""
    return plan_paid_cents(
        sum(r.amount_cents for r in rows),
        invoice.total_cents,
        invoice.paid_cents + invoice.waived_cents,
    )


def current_notice_facts(invoice: Any, rows: Sequence[m.Installment]) -> dict[str, Any] | None:
    """The `installment` a reminder about this invoice stores: its current installment."""
    schedule = schedule_of(rows)
    paid = plan_paid_for(invoice, rows)
    state = current_installment(schedule, paid)
    return None if state is None else installment_notice_facts(state, len(schedule), paid)


async def flag_missed(
    session: AsyncSession,
    *,
    invoice: Any,
    installment: m.Installment,
    state: InstallmentState,
    rows: Sequence[m.Installment],
    day: date,
    now: datetime,
    mail_domain: str,
) -> bool:
    """Mark one installment missed, once: its notice to the family, the Slack alert and the
    activity entry go with the mark. False when it was marked before."""
    marked = await session.execute(
        update(m.Installment)
        .where(m.Installment.id == installment.id, m.Installment.missed_on.is_(None))
        .values(missed_on=day)
    )
    if getattr(marked, "rowcount", 0) != 1:
        return False
    paid = plan_paid_for(invoice, rows)
    facts = installment_notice_facts(state, len(rows), paid)
    await queue_notice(
        session,
        now,
        template=NoticeTemplate.INSTALLMENT_MISSED.value,
        invoice_id=invoice.id,
        dedupe_key=f"installment-missed:{installment.id}",
        context={
            "installment": facts,
            "installments": [
                {"due_on": r.due_on.isoformat(), "amount_cents": r.amount_cents} for r in rows
            ],
        },
        mail_domain=mail_domain,
    )
    session.add(
        new_message(
            PLAN_POSTED,
            f"installment-missed:{installment.id}",
            {
                "invoice_id": invoice.id,
                "event": PlanEvent.MISSED.value,
                "installment_id": installment.id,
                "position": state.position,
                "count": len(rows),
                "due_on": state.due_on.isoformat(),
                "due_cents": facts["due_cents"],
            },
            now,
        )
    )
    session.add(
        m.ActivityEntry(
            at=now,
            actor_staff_id=None,
            actor_label=AUTOMATION_LABEL,
            entity_type="invoice",
            entity_id=invoice.id,
            action="installment_missed",
            before=None,
            after={
                "installment": state.position,
                "due_on": state.due_on.isoformat(),
                "amount_cents": state.amount_cents,
                "behind_cents": facts["due_cents"],
            },
            comment=None,
        )
    )
    return True
