"""Waivers: lowering what a family owes without editing what was billed.

This module holds the core every waiver goes through (a person's waiver, a premium waiver for
an eligible family, an approved request). Who may ask, and when an admin must approve, is
decided by the callers.
"""

from __future__ import annotations

from enum import StrEnum

from workflows.errors import ConflictError, ValidationError
from workflows.i18n import _
from workflows.invoice_updates import UpdateReason, amount_of, notify_amount_change
from workflows.invoices import OPEN_STATUSES, balance_of, settle_if_paid
from workflows.money import format_cents
from workflows.permissions import Actor
from workflows.ports import AdjustmentRecord, Context, InvoiceRecord, NewAdjustment
from workflows.text import required_line

MAX_REASON = 500


class AdjustmentKind(StrEnum):
    WAIVER = "waiver"
    REFUND = "refund"


class AdjustmentStatus(StrEnum):
    PENDING = "pending"  # waiting for an admin's decision
    APPLIED = "applied"
    DENIED = "denied"


def clean_reason(reason: str) -> str:
    too_long = _("Keep the reason under {max} characters.", max=MAX_REASON)
    return required_line(reason, MAX_REASON, "reason", _("Say why."), too_long)


def check_waiver(invoice: InvoiceRecord, amount_cents: int) -> None:
    """A waiver needs an open invoice and may not exceed what is still owed."""
    if amount_cents <= 0:
        raise ValidationError(_("A waiver must be more than $0.00."), field="amount")
    if invoice.status not in OPEN_STATUSES:
        raise ConflictError(
            _(
                "Invoice {number} is {status}; only open invoices can be waived.",
                number=invoice.number,
                status=invoice.status,
            )
        )
    balance = balance_of(invoice)
    if amount_cents > balance:
        raise ValidationError(
            _(
                "{amount} is more than the {balance} still owed on invoice {number}.",
                amount=format_cents(amount_cents),
                balance=format_cents(balance),
                number=invoice.number,
            ),
            field="amount",
        )


async def apply_waiver(
    ctx: Context,
    actor: Actor,
    invoice: InvoiceRecord,
    amount_cents: int,
    reason: str,
    *,
    pending: AdjustmentRecord | None = None,
    idempotency_key: str | None = None,
) -> AdjustmentRecord:
    """Waive `amount_cents` on a locked invoice; settles it when nothing is left.

    With `pending`, that request is the one applied (its decision is recorded by the caller);
    otherwise a new applied adjustment is written. Either way one activity entry explains it.
    """
    text = clean_reason(reason)
    check_waiver(invoice, amount_cents)
    if pending is None:
        adjustment = await ctx.store.payments.add_adjustment(
            NewAdjustment(
                invoice_id=invoice.id,
                kind=AdjustmentKind.WAIVER,
                amount_cents=amount_cents,
                reason=text,
                status=AdjustmentStatus.APPLIED,
                requested_by_id=actor.staff_id,
                idempotency_key=idempotency_key,
            )
        )
    else:
        adjustment = pending
        adjustment.status = AdjustmentStatus.APPLIED
    before = {"waived_cents": invoice.waived_cents, "status": invoice.status}
    old_amount = amount_of(invoice)
    invoice.waived_cents += amount_cents
    settle_if_paid(invoice, ctx.now())
    await ctx.store.activity.log(
        actor,
        "invoice",
        invoice.id,
        "waiver_applied",
        before=before,
        after={
            "waived_cents": invoice.waived_cents,
            "status": invoice.status,
            "adjustment_id": adjustment.id,
            "amount_cents": amount_cents,
        },
        comment=text,
    )
    await notify_amount_change(
        ctx,
        invoice,
        old_cents=old_amount,
        reason=UpdateReason.WAIVER,
        cause=f"waiver:{adjustment.id}",
        note=text,
    )
    return adjustment
