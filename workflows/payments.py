"""Recording payments against invoices: partial payments, methods, receipts, no overpayment."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from workflows.enrollment import on_invoice_settled
from workflows.errors import (
    ConflictError,
    DuplicateReference,
    OverpaymentError,
    ValidationError,
)
from workflows.i18n import _
from workflows.invoices import (
    InvoiceStatus,
    NoticeTemplate,
    balance_of,
    existing_invoice,
    settle_if_paid,
)
from workflows.labels import payment_method_label
from workflows.money import format_cents
from workflows.permissions import Actor, Permission, require
from workflows.ports import Context, InvoiceRecord, NewPayment, PaymentRecord

MAX_REFERENCE = 200


class PaymentMethod(StrEnum):
    CHECK = "check"
    CASH = "cash"
    CARD = "card"
    ONLINE = "online"


@dataclass(frozen=True)
class RecordPayment:
    invoice_id: int
    amount_cents: int
    method: PaymentMethod
    idempotency_key: str
    reference: str | None = None
    received_on: date | None = None


@dataclass(frozen=True)
class RecordedPayment:
    payment: PaymentRecord
    invoice: InvoiceRecord
    created: bool


_NOT_ALNUM = re.compile(r"[^0-9a-z]")
_CHECK_WORDS = re.compile(r"^(?:cheque|check|chk|ck|no|nr|num|number)+")


def reference_key(reference: str | None) -> str | None:
    """What identifies an external reference, however it was typed: "Check #01043", "ck 1043"
    and "1043" are one check; "RT-1001" and "rt 1001" one portal transaction. None without one.
    """
    text = _NOT_ALNUM.sub("", (reference or "").casefold())
    if not text:
        return None
    bare = _CHECK_WORDS.sub("", text)
    if bare.isdigit():
        return bare.lstrip("0") or "0"
    return text


def duplicate_reference_message(
    invoice: InvoiceRecord, earlier: PaymentRecord, reference: str
) -> str:
    method = payment_method_label(earlier.method).lower()
    return _(
        '"{reference}" is already recorded on invoice {number} ({amount} by {method}, received '
        "{received_on}); the same payment is recorded only once.",
        reference=reference,
        number=invoice.number,
        amount=format_cents(earlier.amount_cents),
        method=method,
        received_on=earlier.received_on.isoformat(),
    )


def remaining_balance(invoice: InvoiceRecord) -> int:
    return balance_of(invoice)


def check_payment(invoice: InvoiceRecord, amount_cents: int) -> None:
    """The rules a payment must pass before it touches an invoice."""
    if amount_cents <= 0:
        raise ValidationError(_("A payment must be more than $0.00."), field="amount")
    if invoice.status == InvoiceStatus.CANCELLED:
        raise ConflictError(
            _("Invoice {number} is cancelled; it takes no payments.", number=invoice.number)
        )
    balance = remaining_balance(invoice)
    if balance <= 0:
        raise OverpaymentError(
            _("Invoice {number} is already paid in full.", number=invoice.number), field="amount"
        )
    if amount_cents > balance:
        raise OverpaymentError(
            _(
                "{amount} is more than the {balance} still owed on invoice {number}.",
                amount=format_cents(amount_cents),
                balance=format_cents(balance),
                number=invoice.number,
            ),
            field="amount",
        )


async def record_payment(ctx: Context, actor: Actor, cmd: RecordPayment) -> RecordedPayment:
    require(actor, Permission.RECORD_PAYMENTS)
    store = ctx.store
    key = cmd.idempotency_key.strip()
    if not key:
        raise ValidationError(_("A payment needs an idempotency key."))
    # Lock the invoice first: a replayed payment then waits for the original and finds it.
    invoice = await existing_invoice(ctx, cmd.invoice_id, lock=True)
    existing = await store.payments.by_key(key)
    if existing is not None:
        if existing.invoice_id != cmd.invoice_id or existing.amount_cents != cmd.amount_cents:
            raise ConflictError(_("That payment reference was already used for another payment."))
        return RecordedPayment(existing, invoice, created=False)
    method = PaymentMethod(cmd.method)
    reference = (cmd.reference or "").strip() or None
    if reference and len(reference) > MAX_REFERENCE:
        raise ValidationError(_("The payment reference is too long."), field="reference")
    if method is PaymentMethod.CHECK and not reference:
        raise ValidationError(_("Enter the check number."), field="reference")
    received_on = cmd.received_on or ctx.today()
    if received_on > ctx.today():
        raise ValidationError(_("A payment can't be received in the future."), field="received_on")

    # The same check (or portal or Stripe payment) may arrive another way: by Slack, in a
    # portal file, in a parent's reply. Under the invoice lock, so of two at once one sees it.
    ref_key = reference_key(reference)
    if ref_key is not None:
        earlier = await store.payments.by_reference(invoice.id, ref_key)
        if earlier is not None:
            raise DuplicateReference(
                duplicate_reference_message(invoice, earlier, reference or ""), field="reference"
            )

    check_payment(invoice, cmd.amount_cents)

    before = {"paid_cents": invoice.paid_cents, "status": invoice.status}
    payment = await store.payments.add(
        NewPayment(
            invoice_id=invoice.id,
            amount_cents=cmd.amount_cents,
            method=method.value,
            reference=reference,
            received_on=received_on,
            recorded_by_id=actor.staff_id,
            idempotency_key=key,
            reference_key=ref_key,
        )
    )
    invoice.paid_cents += cmd.amount_cents
    settle_if_paid(invoice, ctx.now())
    await store.activity.log(
        actor,
        "invoice",
        invoice.id,
        "payment_recorded",
        before=before,
        after={
            "paid_cents": invoice.paid_cents,
            "status": invoice.status,
            "payment_id": payment.id,
            "amount_cents": cmd.amount_cents,
            "method": method.value,
        },
    )
    await store.outbox.queue_notice(
        NoticeTemplate.PAYMENT_RECEIPT,
        invoice.id,
        f"payment-receipt:{payment.id}",
        {"payment_id": payment.id},
    )
    # A premium paid in full starts its enrollment's coverage (nothing for other invoices).
    await on_invoice_settled(ctx, actor, invoice)
    return RecordedPayment(payment, invoice, created=True)
