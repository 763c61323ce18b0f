"""Payments parents report by email wait here until billing staff confirm or reject them.

Nothing a parent writes moves money by itself: a reported payment becomes a pending payment,
and only someone with Record Payments turns it into a payment (through `record_payment`, with
the idempotency key `pending-payment:<id>`, so a repeated click can never record it twice).
The first decision wins; every decision is in the activity log.

A payment reported against several invoices (a reply to a digest, or one naming invoices) is
split by `workflows.reply_split`; each invoice's part is recorded as its own payment (the first
invoice's with `pending-payment:<id>`, the others' with `pending-payment:<id>:<invoice id>`).
Staff may change the split (`edit_split`) or take the full balance (`use_full_balance`) before
confirming. Receipts for payments confirmed from a reply answer the family's email.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any, Protocol

from workflows.errors import ConflictError, NotFound, ValidationError
from workflows.i18n import _
from workflows.invoices import OPEN_STATUSES
from workflows.payments import MAX_REFERENCE, PaymentMethod, RecordPayment, record_payment
from workflows.permissions import Actor, Permission, require
from workflows.ports import Context, InvoiceRecord, PaymentRecord
from workflows.reply_split import OpenInvoice, Part, check_edited_split, full_balance_split


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
    amount_given: bool
    reply_thread: dict[str, Any] | None


class PendingPartRecord(Protocol):
    invoice_id: int
    position: int
    amount_cents: int
    payment_id: int | None


class InvoiceBalance(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def number(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def balance_cents(self) -> int: ...
    @property
    def due_date(self) -> date | None: ...


class PendingPayments(Protocol):
    async def get_pending_payment(
        self, pending_id: int, *, lock: bool = False
    ) -> PendingPaymentRecord | None: ...

    async def pending_parts(self, pending_id: int) -> Sequence[PendingPartRecord]: ...

    async def invoice_refs(self, invoice_ids: Sequence[int]) -> Mapping[int, InvoiceBalance]: ...

    async def thread_notices(self, dedupe_key: str, thread: dict[str, Any] | None) -> None: ...


@dataclass(frozen=True)
class PendingDecision:
    pending: PendingPaymentRecord
    payment: PaymentRecord | None
    invoice: InvoiceRecord | None
    changed: bool  # False: this decision had already been made (a repeated click)


def idempotency_key(pending_id: int, invoice_id: int | None = None) -> str:
    """The key of a reported payment's payment (of its part on `invoice_id`, when that isn't
    the pending payment's own invoice)."""
    base = f"pending-payment:{pending_id}"
    return base if invoice_id is None else f"{base}:{invoice_id}"


def receipt_key(payment_id: int) -> str:
    """The dedupe key `record_payment` queues a payment's receipt under."""
    return f"payment-receipt:{payment_id}"


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


async def _to_decide(
    pendings: PendingPayments,
    actor: Actor,
    pending_id: int,
    decision: PendingStatus,
    *,
    lock: bool = True,
) -> tuple[PendingPaymentRecord, bool]:
    """The reported payment, and whether it still waits for a decision. One already decided
    the same way is a replay (False); one decided the other way is refused."""
    require(actor, Permission.RECORD_PAYMENTS)
    pending = await pendings.get_pending_payment(pending_id, lock=lock)
    if pending is None:
        raise NotFound(_("That reported payment doesn't exist."))
    if pending.status == PendingStatus.PENDING:
        return pending, True
    if pending.status != decision:
        if pending.status == PendingStatus.CONFIRMED:
            raise ConflictError(_("This reported payment was already confirmed."))
        raise ConflictError(_("This reported payment was already marked not received."))
    return pending, False


def _decide(
    ctx: Context, actor: Actor, pending: PendingPaymentRecord, status: PendingStatus
) -> None:
    pending.status = status.value
    pending.decided_by_id = actor.staff_id
    pending.decided_at = ctx.now()


def _method(method: PaymentMethod | None, pending: PendingPaymentRecord) -> PaymentMethod:
    """The method staff chose, or the one the family named."""
    chosen = method or payment_method(pending.method)
    if chosen is None:
        raise ValidationError(_("Choose how the family paid."), field="method")
    return chosen


def _no_amount() -> ValidationError:
    return ValidationError(
        _(
            "The family didn't say how much they paid: enter the amount received first "
            "(Enter amount)."
        ),
        field="amount",
    )


async def check_confirmation(
    pendings: PendingPayments,
    actor: Actor,
    pending_id: int,
    *,
    method: PaymentMethod | None = None,
    reference: str | None = None,
) -> None:
    """What `confirm_pending_payment` needs before it records anything, checked without
    locking or writing (a form shows a missing detail next to its field). A confirmation
    already made passes: confirming again changes nothing."""
    pending, waiting = await _to_decide(
        pendings, actor, pending_id, PendingStatus.CONFIRMED, lock=False
    )
    if not waiting:
        return
    chosen = _method(method, pending)
    ref = ((reference if reference is not None else pending.reference) or "").strip()
    if len(ref) > MAX_REFERENCE:
        raise ValidationError(_("The payment reference is too long."), field="reference")
    if chosen is PaymentMethod.CHECK and not ref:
        raise ValidationError(_("Enter the check number."), field="reference")
    if not pending.amount_given:
        raise _no_amount()


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
    pending, waiting = await _to_decide(pendings, actor, pending_id, PendingStatus.CONFIRMED)
    if not waiting:
        return PendingDecision(pending, None, None, changed=False)
    chosen = _method(method, pending)
    ref = (reference if reference is not None else pending.reference) or None
    today = ctx.today()
    received_on = pending.paid_on if pending.paid_on and pending.paid_on <= today else today
    parts = list(await pendings.pending_parts(pending.id))
    shares: list[tuple[PendingPartRecord | None, int, int]] = (
        [(p, p.invoice_id, p.amount_cents) for p in parts if p.amount_cents > 0]
        if parts
        else [(None, pending.invoice_id, pending.amount_cents)]
    )
    if not shares or not pending.amount_given:
        raise _no_amount()
    first: tuple[PaymentRecord, InvoiceRecord] | None = None
    recorded_parts: list[dict[str, int]] = []
    for part, invoice_id, amount in shares:
        recorded = await record_payment(
            ctx,
            actor,
            RecordPayment(
                invoice_id=invoice_id,
                amount_cents=amount,
                method=chosen,
                idempotency_key=idempotency_key(
                    pending.id, None if invoice_id == pending.invoice_id else invoice_id
                ),
                reference=ref,
                received_on=received_on,
            ),
        )
        if part is not None:
            part.payment_id = recorded.payment.id
        # The receipt answers the family's email, as the acknowledgement did.
        await pendings.thread_notices(receipt_key(recorded.payment.id), pending.reply_thread)
        first = first or (recorded.payment, recorded.invoice)
        recorded_parts.append(
            {"invoice_id": invoice_id, "amount_cents": amount, "payment_id": recorded.payment.id}
        )
    assert first is not None
    before = {"status": pending.status}
    _decide(ctx, actor, pending, PendingStatus.CONFIRMED)
    pending.payment_id = first[0].id
    pending.method = chosen.value
    pending.reference = ref
    after: dict[str, Any] = {
        "status": pending.status,
        "payment_id": first[0].id,
        "invoice_id": pending.invoice_id,
        "amount_cents": sum(p["amount_cents"] for p in recorded_parts),
    }
    if len(recorded_parts) > 1 or parts:
        after["parts"] = recorded_parts
    await ctx.store.activity.log(
        actor, "pending_payment", pending.id, PendingStatus.CONFIRMED.value,
        before=before, after=after,
    )  # fmt: skip
    return PendingDecision(pending, first[0], first[1], changed=True)


async def _open_pending(
    pendings: PendingPayments, actor: Actor, pending_id: int, *, lock: bool = True
) -> tuple[PendingPaymentRecord, list[PendingPartRecord], list[OpenInvoice]]:
    """A reported payment still waiting, its parts, and their invoices as they are now."""
    require(actor, Permission.RECORD_PAYMENTS)
    pending = await pendings.get_pending_payment(pending_id, lock=lock)
    if pending is None:
        raise NotFound(_("That reported payment doesn't exist."))
    if pending.status != PendingStatus.PENDING:
        if pending.status == PendingStatus.CONFIRMED:
            raise ConflictError(
                _("This reported payment was already confirmed; its split can't change.")
            )
        raise ConflictError(
            _("This reported payment was already marked not received; its split can't change.")
        )
    parts = list(await pendings.pending_parts(pending.id))
    if not parts:
        raise ConflictError(_("This reported payment has no split to change."))
    refs = await pendings.invoice_refs([p.invoice_id for p in parts])
    # A closed invoice (paid, cancelled) takes nothing more, whatever its columns say.
    invoices = [
        OpenInvoice(r.id, r.number, r.balance_cents if r.status in OPEN_STATUSES else 0, r.due_date)
        for r in (refs.get(p.invoice_id) for p in parts)
        if r is not None
    ]
    return pending, parts, invoices


async def _set_split(
    ctx: Context,
    actor: Actor,
    pending: PendingPaymentRecord,
    parts: Sequence[PendingPartRecord],
    total_cents: int,
    split: Sequence[Part],
    how: str,
) -> None:
    before = {
        "amount_cents": pending.amount_cents,
        "parts": {str(p.invoice_id): p.amount_cents for p in parts},
    }
    wanted = {p.invoice_id: p.amount_cents for p in split}
    for part in parts:
        part.amount_cents = wanted.get(part.invoice_id, 0)
    pending.amount_cents = total_cents
    pending.amount_given = True
    await ctx.store.activity.log(
        actor,
        "pending_payment",
        pending.id,
        "split_changed",
        before=before,
        after={"amount_cents": total_cents, "parts": {str(k): v for k, v in wanted.items()}},
        comment=how,
    )


async def check_split(
    pendings: PendingPayments,
    actor: Actor,
    pending_id: int,
    *,
    total: str,
    amounts: Mapping[int, str],
) -> None:
    """The rules `edit_split` applies, checked without locking or writing: a form shows a
    broken rule next to its field, then changes the split once it has answered."""
    _pending, _row, invoices = await _open_pending(pendings, actor, pending_id, lock=False)
    check_edited_split(total, amounts, invoices)


async def edit_split(
    ctx: Context,
    pendings: PendingPayments,
    actor: Actor,
    pending_id: int,
    *,
    total: str,
    amounts: Mapping[int, str],
) -> PendingPaymentRecord:
    """Staff's own split of a reported payment (what they typed, checked by
    `reply_split.check_edited_split`); nothing is recorded until it is confirmed."""
    pending, parts, invoices = await _open_pending(pendings, actor, pending_id)
    total_cents, split = check_edited_split(total, amounts, invoices)
    await _set_split(ctx, actor, pending, parts, total_cents, split, "edited")
    return pending


async def use_full_balance(
    ctx: Context, pendings: PendingPayments, actor: Actor, pending_id: int
) -> PendingPaymentRecord:
    """Split the payment as every invoice's full balance now: "I paid it online" with no
    amount on one invoice, or an amount above what is owed ("confirm the amount owed")."""
    pending, parts, invoices = await _open_pending(pendings, actor, pending_id)
    split = full_balance_split(invoices)
    if split.allocated_cents <= 0:
        raise ConflictError(_("Nothing is owed on these invoices any more."))
    await _set_split(ctx, actor, pending, parts, split.allocated_cents, split.parts, "balance")
    return pending


async def reject_pending_payment(
    ctx: Context,
    pendings: PendingPayments,
    actor: Actor,
    pending_id: int,
    *,
    reason: str | None = None,
) -> PendingDecision:
    """The money never arrived: nothing is recorded; the decision is kept."""
    pending, waiting = await _to_decide(pendings, actor, pending_id, PendingStatus.REJECTED)
    if not waiting:
        return PendingDecision(pending, None, None, changed=False)
    _decide(ctx, actor, pending, PendingStatus.REJECTED)
    await ctx.store.activity.log(
        actor,
        "pending_payment",
        pending.id,
        PendingStatus.REJECTED.value,
        before={"status": PendingStatus.PENDING.value},
        after={"status": pending.status},
        comment=(reason or "").strip() or None,
    )
    return PendingDecision(pending, None, None, changed=True)
