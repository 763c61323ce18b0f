"""Do the invoices' stored amounts agree with the rows behind them?

An invoice keeps running totals (paid, waived, refunded) so balances are cheap to read; the
payments, adjustments and lines are the record those totals must match. This check finds any
invoice where they drift apart, in SQL over the whole store, for tests after every scenario and
for `devicecare ledger check`. The rules about one invoice's own amounts (billed splits back
into its parts, nothing owed below zero) are `workflows.ledger.ledger_problems`; the query
finds the same invoices in SQL so a whole district is checked in one pass.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, func, or_, select
from sqlalchemy.sql.selectable import Subquery

from storage import models as m
from storage.session_of import Db, session_of
from workflows.i18n import _
from workflows.ledger import ledger_problems


@dataclass(frozen=True)
class Discrepancy:
    invoice_id: int
    number: str
    subtotal_cents: int
    lines_cents: int
    insurance_cents: int
    total_cents: int
    paid_cents: int
    payments_cents: int
    waived_cents: int
    waivers_cents: int
    refunded_cents: int
    refunds_cents: int
    status: str
    balance_cents: int

    def describe(self) -> str:
        return f"{self.number}: " + "; ".join(self.problems())  # the problems are translated

    def problems(self) -> list[str]:
        """Each thing wrong with this invoice, in words."""
        parts = []
        if self.subtotal_cents != self.lines_cents:
            parts.append(
                _(
                    "subtotal {stored} but lines add to {counted}",
                    stored=self.subtotal_cents,
                    counted=self.lines_cents,
                )
            )
        if self.paid_cents != self.payments_cents:
            parts.append(
                _(
                    "paid {stored} but payments add to {counted}",
                    stored=self.paid_cents,
                    counted=self.payments_cents,
                )
            )
        if self.waived_cents != self.waivers_cents:
            parts.append(
                _(
                    "waived {stored} but waivers add to {counted}",
                    stored=self.waived_cents,
                    counted=self.waivers_cents,
                )
            )
        if self.refunded_cents != self.refunds_cents:
            parts.append(
                _(
                    "refunded {stored} but refunds add to {counted}",
                    stored=self.refunded_cents,
                    counted=self.refunds_cents,
                )
            )
        if self.status == "paid" and self.balance_cents != 0:
            parts.append(_("marked paid with {owed} still owed", owed=self.balance_cents))
        parts.extend(ledger_problems(self))
        return parts


def _applied(kind: str) -> Subquery:
    adj = m.InvoiceAdjustment
    return (
        select(adj.invoice_id, func.sum(adj.amount_cents).label("cents"))
        .where(adj.kind == kind, adj.status == "applied")
        .group_by(adj.invoice_id)
        .subquery()
    )


async def discrepancies(db: Db, *, limit: int | None = 100) -> list[Discrepancy]:
    """Invoices whose subtotal, paid, waived or refunded amount disagrees with its rows, or
    whose own amounts break the ledger's rules (`workflows.ledger.ledger_problems`)."""
    session = session_of(db)
    inv = m.Invoice
    lines = (
        select(m.InvoiceLine.invoice_id, func.sum(m.InvoiceLine.amount_cents).label("cents"))
        .group_by(m.InvoiceLine.invoice_id)
        .subquery()
    )
    payments = (
        select(m.Payment.invoice_id, func.sum(m.Payment.amount_cents).label("cents"))
        .group_by(m.Payment.invoice_id)
        .subquery()
    )
    waivers = _applied("waiver")
    refunds = _applied("refund")
    lines_c = func.coalesce(lines.c.cents, 0)
    paid_c = func.coalesce(payments.c.cents, 0)
    waived_c = func.coalesce(waivers.c.cents, 0)
    refunded_c = func.coalesce(refunds.c.cents, 0)
    stmt = (
        select(
            inv.id,
            inv.number,
            inv.subtotal_cents,
            lines_c,
            inv.insurance_cents,
            inv.total_cents,
            inv.paid_cents,
            paid_c,
            inv.waived_cents,
            waived_c,
            inv.refunded_cents,
            refunded_c,
            inv.status,
            m.invoice_balance(),
        )
        .outerjoin(lines, lines.c.invoice_id == inv.id)
        .outerjoin(payments, payments.c.invoice_id == inv.id)
        .outerjoin(waivers, waivers.c.invoice_id == inv.id)
        .outerjoin(refunds, refunds.c.invoice_id == inv.id)
        .where(
            or_(
                inv.subtotal_cents != lines_c,
                inv.paid_cents != paid_c,
                inv.waived_cents != waived_c,
                inv.refunded_cents != refunded_c,
                # A settled invoice must owe nothing, an open one something.
                and_(inv.status == "paid", m.invoice_balance() != 0),
                # The same invoices `ledger_problems` finds, so none is missed or listed bare.
                inv.total_cents != inv.subtotal_cents - inv.insurance_cents,
                m.invoice_balance() < 0,
                inv.refunded_cents > inv.paid_cents,
                inv.paid_cents < 0,
                inv.waived_cents < 0,
                inv.refunded_cents < 0,
            )
        )
        .order_by(inv.id)
        .limit(limit)
    )
    return [Discrepancy(*row) for row in (await session.execute(stmt)).all()]


async def invoice_count(db: Db) -> int:
    """How many invoices the ledger check looks at."""
    found = await session_of(db).execute(select(func.count(m.Invoice.id)))
    return int(found.scalar_one())
