"""Invoices: numbering, reads (plain or locked for a change of money), new ones, balances."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import lazyload

from storage import models as m
from storage.repositories.base import SqlRepository
from workflows.ports import InvoiceLineSpec


class SqlInvoiceRepository(SqlRepository):
    async def next_number(self, prefix: str) -> str:
        stmt = (
            update(m.Counter)
            .where(m.Counter.name == "invoice")
            .values(value=m.Counter.value + 1)
            .returning(m.Counter.value)
        )
        value = (await self.session.execute(stmt)).scalar_one_or_none()
        if value is None:
            self.session.add(m.Counter(name="invoice", value=1))
            await self.session.flush()
            value = 1
        return f"{prefix}-{value:06d}"

    async def get(self, invoice_id: int, *, lock: bool = False) -> m.Invoice | None:
        if lock:
            return await self.lock(invoice_id)
        return await self._get(m.Invoice, invoice_id, lock)

    async def lock(self, invoice_id: int, *, lines: bool = True) -> m.Invoice | None:
        """The invoice, locked and read fresh: every path that writes money on an invoice
        (payments, replies confirmed, portal rows, Stripe, plans, waivers, refunds) takes this
        lock before it reads the balance, so they queue on one another. Without `lines`, its
        lines are left unloaded (the webhook path doesn't need them)."""
        stmt = select(m.Invoice).where(m.Invoice.id == invoice_id)
        if not lines:
            stmt = stmt.options(lazyload(m.Invoice.lines))
        return (await self.session.execute(self.locking(stmt))).scalar_one_or_none()

    async def by_number(self, number: str) -> m.Invoice | None:
        stmt = select(m.Invoice).where(func.upper(m.Invoice.number) == number.strip().upper())
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def by_key(self, key: str) -> m.Invoice | None:
        stmt = select(m.Invoice).where(m.Invoice.idempotency_key == key)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def for_incident(self, incident_id: int) -> list[m.Invoice]:
        stmt = select(m.Invoice).where(m.Invoice.incident_id == incident_id).order_by(m.Invoice.id)
        return list((await self.session.execute(stmt)).scalars())

    async def add(
        self,
        *,
        number: str,
        student_id: int,
        incident_id: int | None,
        device_id: int | None,
        lines: Sequence[InvoiceLineSpec],
        subtotal_cents: int,
        insurance_cents: int,
        due_date: date | None,
        automation_enabled: bool,
        status: str,
        claim_enrollment_id: int | None,
        cap_reached: bool,
        override_applied: bool,
        override_approved_by_id: int | None,
        insurance_snapshot: dict[str, Any] | None,
        created_by_id: int | None,
        idempotency_key: str | None,
        claim_device_coverage_id: int | None = None,
        kind: str = "incident",
        annual_fee_id: int | None = None,
        collection_id: int | None = None,
        premium_enrollment_id: int | None = None,
    ) -> m.Invoice:
        invoice = m.Invoice(
            kind=kind,
            annual_fee_id=annual_fee_id,
            collection_id=collection_id,
            premium_enrollment_id=premium_enrollment_id,
            waived_cents=0,
            refunded_cents=0,
            number=number,
            student_id=student_id,
            incident_id=incident_id,
            device_id=device_id,
            status=str(status),
            subtotal_cents=subtotal_cents,
            insurance_cents=insurance_cents,
            total_cents=subtotal_cents - insurance_cents,
            paid_cents=0,
            due_date=due_date,
            automation_enabled=automation_enabled,
            auto_cancelled=False,
            claim_enrollment_id=claim_enrollment_id,
            claim_device_coverage_id=claim_device_coverage_id,
            cap_reached=cap_reached,
            override_applied=override_applied,
            override_approved_by_id=override_approved_by_id,
            insurance_snapshot=insurance_snapshot,
            created_by_id=created_by_id,
            created_at=self._now(),
            idempotency_key=idempotency_key,
            lines=[
                m.InvoiceLine(
                    position=i,
                    description=line.description,
                    kind=line.kind,
                    fee_item_id=line.fee_item_id,
                    quantity=line.quantity,
                    unit_cents=line.unit_cents,
                    amount_cents=line.amount_cents,
                )
                for i, line in enumerate(lines, start=1)
            ],
        )
        return await self._added(invoice)

    async def balance_by_student(self) -> dict[int, int]:
        """Open balance per student, summed in SQL."""
        stmt = (
            select(m.Invoice.student_id, func.sum(m.invoice_balance()))
            .where(m.Invoice.status != "cancelled")
            .group_by(m.Invoice.student_id)
        )
        return {sid: int(total) for sid, total in (await self.session.execute(stmt)).all()}

    async def balance_by_household(self) -> dict[int, int]:
        stmt = (
            select(m.Student.household_id, func.sum(m.invoice_balance()))
            .join(m.Student, m.Student.id == m.Invoice.student_id)
            .where(m.Invoice.status != "cancelled", m.Student.household_id.is_not(None))
            .group_by(m.Student.household_id)
        )
        rows = (await self.session.execute(stmt)).all()
        return {hid: int(total) for hid, total in rows if hid is not None}
