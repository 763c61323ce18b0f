"""How a payment a family reports by email is spread over the invoices it is about.

The rule (the README, "Email replies", states it for staff):

1. The invoices the reply is about are the invoice it routes to, the invoices of the digest it
   answers, and the invoices it names by number — only the family's own (an invoice number of
   another family is ignored).
2. They are taken in this order: the invoices named in the reply, in the order named; then the
   others, oldest due date first (an invoice without a due date last; ties by number).
3. The reported amount is given to each in turn, each at most its balance, until it runs out.
4. What is left over (the family reported more than it owes on them) is not given to any
   invoice: the reply is flagged as an overpayment and staff choose what to do.

Staff may change the split before confirming; `check_edited_split` is the rule for that:
every amount parses, none is above its invoice's balance, and they add up to the total
received (the reported amount, or the new total staff enter).

Pure functions over int cents; nothing here reads the store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from workflows.errors import ValidationError
from workflows.i18n import _
from workflows.money import format_cents, parse_amount


@dataclass(frozen=True)
class OpenInvoice:
    """What the split needs of one invoice."""

    id: int
    number: str
    balance_cents: int
    due_date: date | None


@dataclass(frozen=True)
class Part:
    invoice_id: int
    amount_cents: int


@dataclass(frozen=True)
class Split:
    """A reported payment over its invoices, in split order (every invoice, 0 for none)."""

    parts: tuple[Part, ...]
    reported_cents: int | None  # None: the family didn't say how much
    owed_cents: int  # what the family owes on these invoices

    @property
    def allocated_cents(self) -> int:
        return sum(p.amount_cents for p in self.parts)

    @property
    def over_cents(self) -> int:
        """How much more than the family owes they reported (0 when not more)."""
        if self.reported_cents is None:
            return 0
        return max(self.reported_cents - self.owed_cents, 0)


def split_order(invoices: Sequence[OpenInvoice], named: Sequence[str]) -> list[OpenInvoice]:
    """The invoices named (in the order named), then the rest, oldest due date first."""
    by_number = {i.number.upper(): i for i in invoices}
    first: list[OpenInvoice] = []
    for number in named:
        found = by_number.get(number.strip().upper())
        if found is not None and found not in first:
            first.append(found)
    rest = sorted(
        (i for i in invoices if i not in first),
        key=lambda i: (i.due_date is None, i.due_date or date.max, i.number, i.id),
    )
    return [*first, *rest]


def split_payment(
    amount_cents: int | None, invoices: Sequence[OpenInvoice], named: Sequence[str] = ()
) -> Split:
    """The reported amount over the invoices by the rule above."""
    ordered = split_order(invoices, named)
    left = max(amount_cents or 0, 0)
    parts: list[Part] = []
    for invoice in ordered:
        take = min(left, max(invoice.balance_cents, 0))
        left -= take
        parts.append(Part(invoice.id, take))
    owed = sum(max(i.balance_cents, 0) for i in ordered)
    return Split(tuple(parts), amount_cents, owed)


def full_balance_split(invoices: Sequence[OpenInvoice], named: Sequence[str] = ()) -> Split:
    """Every invoice paid in full (staff confirming "the amount owed")."""
    owed = sum(max(i.balance_cents, 0) for i in invoices)
    return split_payment(owed, invoices, named)


def amount_field(invoice_id: int) -> str:
    """The form field an invoice's amount is entered in (errors name it)."""
    return f"amount:{invoice_id}"


TOTAL_FIELD = "total"


def check_edited_split(
    total_text: str, amounts: Mapping[int, str], invoices: Sequence[OpenInvoice]
) -> tuple[int, tuple[Part, ...]]:
    """(the total received, the parts) from what staff typed, or ValidationError naming the
    field at fault. `amounts` is the text typed for each invoice id; a blank amount is $0.00.
    Every invoice of the reported payment must be there, and no other."""
    known = {i.id: i for i in invoices}
    unknown = set(amounts) - set(known)
    if unknown or not invoices:
        raise ValidationError(_("That split names an invoice this payment isn't about."))
    total = parse_amount(total_text, field=TOTAL_FIELD)
    if total <= 0:
        raise ValidationError(_("The total received must be more than $0.00."), field=TOTAL_FIELD)
    parts: list[Part] = []
    for invoice in invoices:
        text = (amounts.get(invoice.id) or "").strip()
        field = amount_field(invoice.id)
        cents = 0 if not text else parse_amount(text, field=field)
        if cents > max(invoice.balance_cents, 0):
            raise ValidationError(
                _(
                    "{cents} is more than the {balance} still owed on {number}.",
                    cents=format_cents(cents),
                    balance=format_cents(invoice.balance_cents),
                    number=invoice.number,
                ),
                field=field,
            )
        parts.append(Part(invoice.id, cents))
    given = sum(p.amount_cents for p in parts)
    if given != total:
        raise ValidationError(
            _(
                "The amounts add up to {given}, not the {total} received. Change an amount or "
                "the total.",
                given=format_cents(given),
                total=format_cents(total),
            ),
            field=TOTAL_FIELD,
        )
    return total, tuple(parts)
