"""Billing-run test set-up: invoices placed straight in the store, a day-by-day driver."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.billing_run import BillingRunner, RunResult
from storage import models as m
from storage.db import session_factory
from storage.uow import UnitOfWorkFactory
from workflows.clock import FixedClock

TZ = ZoneInfo("America/Chicago")
RUN_AT = time(6, 0)


def at_run_time(day: date) -> datetime:
    """06:00 district time on `day`, as an aware UTC instant."""
    return datetime.combine(day, RUN_AT, tzinfo=TZ).astimezone(UTC)


async def add_family(
    stores: UnitOfWorkFactory, name: str, *, guardians: int = 1, students: int = 1
) -> tuple[list[int], list[int]]:
    """Students sharing the same guardians; returns (student ids, guardian ids)."""
    async with stores() as store:
        s = store.session
        household = m.Household(name=f"{name} family")
        s.add(household)
        await s.flush()
        student_rows = [
            m.Student(
                sis_id=f"S-{name}-{i}",
                first_name=f"Kid{i}",
                last_name=name,
                grade="6",
                household_id=household.id,
            )
            for i in range(students)
        ]
        guardian_rows = [
            m.Guardian(
                sis_id=f"G-{name}-{i}",
                first_name=f"Parent{i}",
                last_name=name,
                email=f"{name.lower()}{i}@example.org",
                household_id=household.id,
            )
            for i in range(guardians)
        ]
        s.add_all([*student_rows, *guardian_rows])
        await s.flush()
        for st in student_rows:
            for g in guardian_rows:
                s.add(m.Guardianship(guardian_id=g.id, student_id=st.id))
        await store.commit()
        return [st.id for st in student_rows], [g.id for g in guardian_rows]


async def add_invoice(
    stores: UnitOfWorkFactory,
    student_id: int,
    *,
    created: date,
    due: date | None,
    total_cents: int = 10_000,
    paid_cents: int = 0,
    automation: bool = True,
    status: str = "unpaid",
) -> int:
    async with stores() as store:
        s = store.session
        number = await store.invoices.next_number("INV")
        invoice = m.Invoice(
            number=number,
            student_id=student_id,
            status=status,
            subtotal_cents=total_cents,
            insurance_cents=0,
            total_cents=total_cents,
            paid_cents=paid_cents,
            due_date=due,
            automation_enabled=automation,
            created_at=datetime.combine(created, time(10, 0), tzinfo=TZ).astimezone(UTC),
        )
        s.add(invoice)
        await s.flush()
        await store.commit()
        return invoice.id


def runner(engine: AsyncEngine, clock: FixedClock, **kwargs: Any) -> BillingRunner:
    return BillingRunner(
        engine, session_factory(engine), clock, TZ, mail_domain="district.test", **kwargs
    )


async def run_days(
    engine: AsyncEngine,
    clock: FixedClock,
    first: date,
    last: date,
    *,
    each: Callable[[date, RunResult], Awaitable[None]] | None = None,
) -> None:
    """Run the billing day for every day from `first` to `last`, the clock at 06:00 each."""
    day = first
    r = runner(engine, clock)
    while day <= last:
        clock.set(at_run_time(day))
        result = await r.run(day)
        if each is not None:
            await each(day, result)
        day += timedelta(days=1)


async def steps_of(engine: AsyncEngine, invoice_id: int) -> list[tuple[str, date]]:
    """(step, run day) for an invoice, in order."""
    async with session_factory(engine)() as session:
        rows = (
            await session.execute(
                select(m.BillingStep.step, m.BillingStep.run_day)
                .where(m.BillingStep.invoice_id == invoice_id)
                .order_by(m.BillingStep.id)
            )
        ).all()
        return [(r.step, r.run_day) for r in rows]


async def notices_of(engine: AsyncEngine, invoice_id: int) -> list[tuple[str, str, date | None]]:
    """(template, status, run day) of an invoice's notices, in order."""
    async with session_factory(engine)() as session:
        rows = (
            await session.execute(
                select(m.Notice.template, m.Notice.status, m.Notice.run_day)
                .where(m.Notice.invoice_id == invoice_id)
                .order_by(m.Notice.id)
            )
        ).all()
        return [(r.template, r.status, r.run_day) for r in rows]


async def invoice_row(engine: AsyncEngine, invoice_id: int) -> m.Invoice:
    async with session_factory(engine)() as session:
        invoice = await session.get(m.Invoice, invoice_id)
        assert invoice is not None
        return invoice


async def count(engine: AsyncEngine, model: Any, *where: Any) -> int:
    async with session_factory(engine)() as session:
        return int(
            (
                await session.execute(select(func.count()).select_from(model).where(*where))
            ).scalar_one()
        )
