"""Where every billed cent went: the split that reports and reconciliation checks rely on."""

from __future__ import annotations

from dataclasses import dataclass

from workflows.invoices import InvoiceStatus, balance_of
from workflows.ports import InvoiceRecord


@dataclass(frozen=True)
class MoneySplit:
    """One invoice's billed amount, cut into parts that always add back up to it.

    `collected` is money kept (payments less refunds); `credited` is what the district gave up
    by waiver or refund; `cancelled` is what was still owed when the invoice was cancelled.
    """

    billed: int
    covered: int
    collected: int
    waived: int
    refunded: int
    outstanding: int
    cancelled: int

    @property
    def credited(self) -> int:
        return self.waived + self.refunded

    def adds_up(self) -> bool:
        return (
            self.collected + self.covered + self.credited + self.outstanding + self.cancelled
            == self.billed
        )


def split_money(invoice: InvoiceRecord) -> MoneySplit:
    balance = balance_of(invoice)
    cancelled = invoice.status == InvoiceStatus.CANCELLED
    return MoneySplit(
        billed=invoice.subtotal_cents,
        covered=invoice.insurance_cents,
        collected=invoice.paid_cents - invoice.refunded_cents,
        waived=invoice.waived_cents,
        refunded=invoice.refunded_cents,
        outstanding=0 if cancelled else balance,
        cancelled=balance if cancelled else 0,
    )
