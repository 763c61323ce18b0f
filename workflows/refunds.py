"""Refunds: handing back part or all of a payment (a device found after it was billed as lost).

A refund is an applied adjustment tied to the payment. It gives the money back and credits the
charge by the same amount, so the balance stays where it was (see `workflows.ledger`). The
family gets a receipt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from workflows.adjustments import AdjustmentKind, AdjustmentStatus, clean_reason
from workflows.errors import ConflictError, NotFound, ValidationError
from workflows.i18n import _
from workflows.invoice_updates import UpdateReason, amount_of, notify_amount_change
from workflows.invoices import NoticeTemplate, balance_of
from workflows.labels import payment_method_label
from workflows.money import format_cents
from workflows.permissions import Actor, Permission, require
from workflows.ports import AdjustmentRecord, Context, InvoiceRecord, NewAdjustment, PaymentRecord


@dataclass(frozen=True)
class RefundPayment:
    payment_id: int
    amount_cents: int
    reason: str
    idempotency_key: str


@dataclass(frozen=True)
class IssuedRefund:
    adjustment: AdjustmentRecord
    invoice: InvoiceRecord
    payment: PaymentRecord
    created: bool  # False: a replay found the refund the first request made


def refundable(payment: PaymentRecord, already_refunded: int) -> int:
    """What is left to hand back from one payment."""
    return max(payment.amount_cents - already_refunded, 0)


def payment_label(payment: PaymentRecord) -> str:
    """ "check #1043 of $50.00" / "cash of $20.00", for messages."""
    amount = format_cents(payment.amount_cents)
    if payment.method == "check" and payment.reference:
        return _("check #{reference} of {amount}", reference=payment.reference, amount=amount)
    method = payment_method_label(payment.method).lower()
    if payment.reference:
        return _(
            "{method} ({reference}) of {amount}",
            method=method,
            reference=payment.reference,
            amount=amount,
        )
    return _("{method} of {amount}", method=method, amount=amount)


def check_refund(payment: PaymentRecord, already_refunded: int, amount_cents: int) -> None:
    if amount_cents <= 0:
        raise ValidationError(_("A refund must be more than $0.00."), field="amount")
    left = refundable(payment, already_refunded)
    if left == 0:
        raise ValidationError(
            _(
                "The {payment_label} has already been refunded in full.",
                payment_label=payment_label(payment),
            ),
            field="amount",
        )
    if amount_cents > left:
        raise ValidationError(
            _(
                "{amount} is more than the {left} left to refund on the {payment_label}.",
                amount=format_cents(amount_cents),
                left=format_cents(left),
                payment_label=payment_label(payment),
            ),
            field="amount",
        )


def receipt_context(
    adjustment: AdjustmentRecord, payment: PaymentRecord, invoice: InvoiceRecord
) -> dict[str, Any]:
    """What the refund receipt shows (templates read it as `extra`); JSON-safe values."""
    return {
        "payment_id": payment.id,
        "adjustment_id": adjustment.id,
        "amount_cents": adjustment.amount_cents,
        "reason": adjustment.reason,
        "method": payment.method,
        "reference": payment.reference,
        "received_on": payment.received_on.isoformat(),
        "payment_cents": payment.amount_cents,
        "refunded_cents": invoice.refunded_cents,
        "balance_cents": balance_of(invoice),
    }


async def _key_and_payment(ctx: Context, cmd: RefundPayment) -> tuple[str, PaymentRecord]:
    """The form's idempotency key and the payment it refunds (unlocked)."""
    key = cmd.idempotency_key.strip()
    if not key:
        raise ValidationError(_("A refund needs an idempotency key."))
    payment = await ctx.store.payments.get(cmd.payment_id)
    if payment is None:
        raise NotFound(_("Payment #{payment_id} doesn't exist.", payment_id=cmd.payment_id))
    return key, payment


async def _made_before(
    ctx: Context, key: str, payment: PaymentRecord, cmd: RefundPayment
) -> AdjustmentRecord | None:
    """The refund this form already made, or None; a key used for another refund is refused."""
    existing = await ctx.store.payments.adjustment_by_key(key)
    if existing is not None and (
        existing.payment_id != payment.id or existing.amount_cents != cmd.amount_cents
    ):
        raise ConflictError(_("That form was already used for another refund; nothing changed."))
    return existing


async def check_refund_request(ctx: Context, actor: Actor, cmd: RefundPayment) -> None:
    """The rules `refund_payment` applies, checked without locking or writing: a form shows a
    broken rule next to its field, then refunds once it has answered."""
    require(actor, Permission.ISSUE_REFUNDS)
    key, payment = await _key_and_payment(ctx, cmd)
    if await _made_before(ctx, key, payment, cmd) is not None:
        return
    clean_reason(cmd.reason)
    check_refund(payment, await ctx.store.payments.refunded_on(payment.id), cmd.amount_cents)


async def refund_payment(ctx: Context, actor: Actor, cmd: RefundPayment) -> IssuedRefund:
    require(actor, Permission.ISSUE_REFUNDS)
    store = ctx.store
    key, found = await _key_and_payment(ctx, cmd)
    # The invoice first, as payments and waivers lock it: a replay waits for the original.
    invoice = await store.invoices.get(found.invoice_id, lock=True)
    payment = await store.payments.get(cmd.payment_id, lock=True)
    if invoice is None or payment is None:
        raise NotFound(_("Payment #{payment_id} doesn't exist.", payment_id=cmd.payment_id))
    existing = await _made_before(ctx, key, payment, cmd)
    if existing is not None:
        return IssuedRefund(existing, invoice, payment, created=False)
    reason = clean_reason(cmd.reason)
    check_refund(payment, await store.payments.refunded_on(payment.id), cmd.amount_cents)

    adjustment = await store.payments.add_adjustment(
        NewAdjustment(
            invoice_id=invoice.id,
            kind=AdjustmentKind.REFUND,
            amount_cents=cmd.amount_cents,
            reason=reason,
            status=AdjustmentStatus.APPLIED,
            requested_by_id=actor.staff_id,
            payment_id=payment.id,
            idempotency_key=key,
        )
    )
    before = {"refunded_cents": invoice.refunded_cents, "status": invoice.status}
    old_amount = amount_of(invoice)
    invoice.refunded_cents += cmd.amount_cents
    await store.activity.log(
        actor,
        "invoice",
        invoice.id,
        "refund_issued",
        before=before,
        after={
            "refunded_cents": invoice.refunded_cents,
            "status": invoice.status,
            "adjustment_id": adjustment.id,
            "payment_id": payment.id,
            "amount_cents": cmd.amount_cents,
            "method": payment.method,
            "reference": payment.reference,
        },
        comment=reason,
    )
    await store.outbox.queue_notice(
        NoticeTemplate.REFUND_RECEIPT,
        invoice.id,
        f"refund-receipt:{adjustment.id}",
        receipt_context(adjustment, payment, invoice),
    )
    await notify_amount_change(
        ctx,
        invoice,
        old_cents=old_amount,
        reason=UpdateReason.REFUND,
        cause=f"refund:{adjustment.id}",
        note=reason,
    )
    return IssuedRefund(adjustment, invoice, payment, created=True)
