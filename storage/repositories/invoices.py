"""Invoices: numbering, reads (plain or locked for a change of money), new ones, balances."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import lazyload

from storage import models as m
from storage.repositories.base import SqlRepository, columns
from workflows.ports import NewInvoice


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
        return await self._find(m.Invoice, func.upper(m.Invoice.number) == number.strip().upper())

    async def by_key(self, key: str) -> m.Invoice | None:
        return await self._find(m.Invoice, m.Invoice.idempotency_key == key)

    async def for_incident(self, incident_id: int) -> list[m.Invoice]:
        stmt = select(m.Invoice).where(m.Invoice.incident_id == incident_id).order_by(m.Invoice.id)
        return await self._list(stmt)

    async def add(self, invoice: NewInvoice) -> m.Invoice:
        lines = [
            m.InvoiceLine(
                position=i,
                description=line.description,
                kind=line.kind,
                fee_item_id=line.fee_item_id,
                quantity=line.quantity,
                unit_cents=line.unit_cents,
                amount_cents=line.amount_cents,
            )
            for i, line in enumerate(invoice.lines, start=1)
        ]
        row = m.Invoice(
            **columns(
                invoice,
                status=str(invoice.status),
                total_cents=invoice.subtotal_cents - invoice.insurance_cents,
                paid_cents=0,
                waived_cents=0,
                refunded_cents=0,
                auto_cancelled=False,
                created_at=self._now(),
                lines=lines,
            )
        )
        return await self._added(row)

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
