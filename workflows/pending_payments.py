"""Payments parents report by email wait here until billing staff confirm or reject them.

Nothing a parent writes moves money by itself: a reported payment becomes a pending payment,
and only someone with Record Payments turns it into a payment (through `record_payment`, with
the idempotency key `pending-payment:<id>`, so a repeated click can never record it twice).
The first decision wins; every decision is in the activity log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Protocol

from workflows.errors import ConflictError, NotFound, ValidationError
from workflows.payments import PaymentMethod, RecordPayment, record_payment
from workflows.permissions import Actor, Permission, require
from workflows.ports import Context, InvoiceRecord, PaymentRecord


class PendingStatus(StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"


class PendingPaymentRecord(Protocol):
    id: int
    invoice_id: int
    inbound_message_id: int | None
    amount_cents: int
    method: str
    reference: str | None
    paid_on: date | None
    status: str
    decided_by_id: int | None
    decided_at: datetime | None
    payment_id: int | None


class PendingPayments(Protocol):
    async def get_pending_payment(
        self, pending_id: int, *, lock: bool = False
    ) -> PendingPaymentRecord | None: ...


@dataclass(frozen=True)
class PendingDecision:
    pending: PendingPaymentRecord
    payment: PaymentRecord | None
    invoice: InvoiceRecord | None
    changed: bool  # False: this decision had already been made (a repeated click)


def idempotency_key(pending_id: int) -> str:
    return f"pending-payment:{pending_id}"


def payment_method(method: str | None) -> PaymentMethod | None:
    """The method a parent named, if it is one DeviceCare records."""
    try:
        return PaymentMethod((method or "").strip().lower())
    except ValueError:
        return None


def missing_details(pending: PendingPaymentRecord) -> list[str]:
    """What staff must add before the payment can be recorded ("method", "check number")."""
    method = payment_method(pending.method)
    if method is None:
        return ["method"]
    if method is PaymentMethod.CHECK and not (pending.reference or "").strip():
        return ["check number"]
    return []


async def _pending(
    ctx: Context, pendings: PendingPayments, pending_id: int
) -> PendingPaymentRecord:
    pending = await pendings.get_pending_payment(pending_id, lock=True)
    if pending is None:
        raise NotFound("That reported payment doesn't exist.")
    return pending


def _already(pending: PendingPaymentRecord, wanted: PendingStatus) -> None:
    """Refuse a decision that contradicts the one already made."""
    if pending.status != wanted:
        word = "confirmed" if pending.status == PendingStatus.CONFIRMED else "marked not received"
        raise ConflictError(f"This reported payment was already {word}.")


async def confirm_pending_payment(
    ctx: Context,
    pendings: PendingPayments,
    actor: Actor,
    pending_id: int,
    *,
    method: PaymentMethod | None = None,
    reference: str | None = None,
) -> PendingDecision:
    """Record the reported payment on its invoice (which queues the receipt)."""
    require(actor, Permission.RECORD_PAYMENTS)
    pending = await _pending(ctx, pendings, pending_id)
    if pending.status != PendingStatus.PENDING:
        _already(pending, PendingStatus.CONFIRMED)
        return PendingDecision(pending, None, None, changed=False)
    chosen = method or payment_method(pending.method)
    if chosen is None:
        raise ValidationError("Choose how the family paid.", field="method")
    ref = (reference if reference is not None else pending.reference) or None
    today = ctx.today()
    received_on = pending.paid_on if pending.paid_on and pending.paid_on <= today else today
    recorded = await record_payment(
        ctx,
        actor,
        RecordPayment(
            invoice_id=pending.invoice_id,
            amount_cents=pending.amount_cents,
            method=chosen,
            idempotency_key=idempotency_key(pending.id),
            reference=ref,
            received_on=received_on,
        ),
    )
    before = {"status": pending.status}
    pending.status = PendingStatus.CONFIRMED.value
    pending.decided_by_id = actor.staff_id
    pending.decided_at = ctx.now()
    pending.payment_id = recorded.payment.id
    pending.method = chosen.value
    pending.reference = ref
    await ctx.store.log(
        actor,
        "pending_payment",
        pending.id,
        PendingStatus.CONFIRMED.value,
        before=before,
        after={
            "status": pending.status,
            "payment_id": recorded.payment.id,
            "invoice_id": pending.invoice_id,
            "amount_cents": pending.amount_cents,
        },
    )
    return PendingDecision(pending, recorded.payment, recorded.invoice, changed=True)


async def reject_pending_payment(
    ctx: Context,
    pendings: PendingPayments,
    actor: Actor,
    pending_id: int,
    *,
    reason: str | None = None,
) -> PendingDecision:
    """The money never arrived: nothing is recorded; the decision is kept."""
    require(actor, Permission.RECORD_PAYMENTS)
    pending = await _pending(ctx, pendings, pending_id)
    if pending.status != PendingStatus.PENDING:
        _already(pending, PendingStatus.REJECTED)
        return PendingDecision(pending, None, None, changed=False)
    pending.status = PendingStatus.REJECTED.value
    pending.decided_by_id = actor.staff_id
    pending.decided_at = ctx.now()
    await ctx.store.log(
        actor,
        "pending_payment",
        pending.id,
        PendingStatus.REJECTED.value,
        before={"status": PendingStatus.PENDING.value},
        after={"status": pending.status},
        comment=(reason or "").strip() or None,
    )
    return PendingDecision(pending, None, None, changed=True)
