"""Where every billed cent went: the split that reports and reconciliation checks rely on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from workflows.invoices import InvoiceStatus
from workflows.money import format_cents


class LedgerAmounts(Protocol):
    """An invoice's stored amounts: all the ledger rules need (every invoice record has them)."""

    @property
    def subtotal_cents(self) -> int: ...
    @property
    def insurance_cents(self) -> int: ...
    @property
    def total_cents(self) -> int: ...
    @property
    def paid_cents(self) -> int: ...
    @property
    def waived_cents(self) -> int: ...
    @property
    def refunded_cents(self) -> int: ...
    @property
    def status(self) -> str: ...


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


def split_money(invoice: LedgerAmounts) -> MoneySplit:
    # The balance as `workflows.invoices.balance_of` has it (total less paid and waived).
    balance = invoice.total_cents - invoice.paid_cents - invoice.waived_cents
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


def ledger_problems(invoice: LedgerAmounts) -> list[str]:
    """What is wrong with one invoice's own amounts (empty when they hold together).

    billed = covered + collected + waived + refunded + outstanding (+ cancelled), nothing owed
    below zero, and no more handed back than was paid. Whether each total matches its rows is
    for the store to check (`storage.reconcile`).
    """
    problems: list[str] = []
    split = split_money(invoice)
    if not split.adds_up():
        parts = (
            split.covered + split.collected + split.credited + split.outstanding + split.cancelled
        )
        problems.append(
            f"billed {format_cents(split.billed)} but covered + collected + waived + refunded "
            f"+ outstanding come to {format_cents(parts)}"
        )
    balance = invoice.total_cents - invoice.paid_cents - invoice.waived_cents
    if balance < 0:
        problems.append(f"overpaid: the balance is {format_cents(balance)}")
    if invoice.refunded_cents > invoice.paid_cents:
        problems.append(
            f"refunded {format_cents(invoice.refunded_cents)}, more than the "
            f"{format_cents(invoice.paid_cents)} paid"
        )
    for name in ("paid_cents", "waived_cents", "refunded_cents"):
        if getattr(invoice, name) < 0:
            problems.append(f"{name.removesuffix('_cents')} is negative")
    return problems
