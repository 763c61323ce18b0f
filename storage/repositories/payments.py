"""Payments on invoices and the adjustments made to them (waivers, refunds)."""

from __future__ import annotations

from sqlalchemy import func, select

from storage import models as m
from storage.repositories.base import SqlRepository, columns
from workflows.ports import NewAdjustment, NewPayment


class SqlPaymentRepository(SqlRepository):
    async def by_key(self, key: str) -> m.Payment | None:
        return await self._find(m.Payment, m.Payment.idempotency_key == key)

    async def by_reference(self, invoice_id: int, reference_key: str) -> m.Payment | None:
        return await self._find(
            m.Payment, m.Payment.invoice_id == invoice_id, m.Payment.reference_key == reference_key
        )

    async def add(self, payment: NewPayment) -> m.Payment:
        return await self._added(m.Payment(**columns(payment, recorded_at=self._now())))

    async def get(self, payment_id: int, *, lock: bool = False) -> m.Payment | None:
        return await self._get(m.Payment, payment_id, lock)

    async def add_adjustment(self, adjustment: NewAdjustment) -> m.InvoiceAdjustment:
        row = m.InvoiceAdjustment(**columns(adjustment, requested_at=self._now()))
        return await self._added(row)

    async def adjustment(
        self, adjustment_id: int, *, lock: bool = False
    ) -> m.InvoiceAdjustment | None:
        return await self._get(m.InvoiceAdjustment, adjustment_id, lock)

    async def adjustment_by_key(self, key: str) -> m.InvoiceAdjustment | None:
        return await self._find(m.InvoiceAdjustment, m.InvoiceAdjustment.idempotency_key == key)

    async def adjustments_for(self, invoice_id: int) -> list[m.InvoiceAdjustment]:
        stmt = (
            select(m.InvoiceAdjustment)
            .where(m.InvoiceAdjustment.invoice_id == invoice_id)
            .order_by(m.InvoiceAdjustment.id)
        )
        return await self._list(stmt)

    async def refunded_on(self, payment_id: int) -> int:
        """Cents already refunded from one payment (applied refunds only)."""
        stmt = select(func.coalesce(func.sum(m.InvoiceAdjustment.amount_cents), 0)).where(
            m.InvoiceAdjustment.payment_id == payment_id,
            m.InvoiceAdjustment.kind == "refund",
            m.InvoiceAdjustment.status == "applied",
        )
        return await self._int(stmt)

    async def for_invoice(self, invoice_id: int) -> list[m.Payment]:
        stmt = select(m.Payment).where(m.Payment.invoice_id == invoice_id).order_by(m.Payment.id)
        return await self._list(stmt)
