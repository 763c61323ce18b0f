"""Waivers people ask for: applied at once up to the district's approval amount, above it held
for a decision by someone with Approve Waivers (first decision wins, audited either way).

The money itself moves only in `workflows.adjustments.apply_waiver`; this module decides who
may ask, when an approval is needed, and records the request and its decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from workflows.adjustments import (
    AdjustmentKind,
    AdjustmentStatus,
    apply_waiver,
    check_waiver,
    clean_reason,
)
from workflows.approvals import (
    ApprovalOutbox,
    ApprovalRules,
    Decision,
    announce_decision,
    announce_request,
    decide,
)
from workflows.approvals import check_comment as check_comment  # where callers have found it
from workflows.enrollment import on_invoice_settled
from workflows.errors import ConflictError, NotFound, PermissionDenied, ValidationError
from workflows.i18n import N_, _
from workflows.invoices import balance_of, existing_invoice
from workflows.money import format_cents
from workflows.permissions import Actor, Permission, require
from workflows.ports import AdjustmentRecord, Context, InvoiceRecord, NewAdjustment

# Outbox kinds the Slack side delivers: the approval request, and its decision.
WAIVER_REQUESTED = "slack.waiver_requested"
WAIVER_DECIDED = "slack.waiver_decided"
WAIVER_OUTBOX = ApprovalOutbox(
    name="waiver",
    id_field="adjustment_id",
    requested=WAIVER_REQUESTED,
    decided={
        AdjustmentStatus.APPLIED.value: WAIVER_DECIDED,
        AdjustmentStatus.DENIED.value: WAIVER_DECIDED,
    },
)
WITHDRAWN_COMMENT = "Withdrawn by the requester."


@dataclass(frozen=True)
class RequestWaiver:
    invoice_id: int
    amount_cents: int
    reason: str
    idempotency_key: str | None = None


@dataclass(frozen=True)
class WaiverOutcome:
    adjustment: AdjustmentRecord
    invoice: InvoiceRecord
    created: bool  # False: a replay found the waiver the first request made

    @property
    def applied(self) -> bool:
        return self.adjustment.status == AdjustmentStatus.APPLIED

    @property
    def pending(self) -> bool:
        return self.adjustment.status == AdjustmentStatus.PENDING


WaiverDecision = Decision[AdjustmentRecord]


def needs_approval(amount_cents: int, approval_cents: int, actor: Actor) -> bool:
    """Above the district's amount, a waiver waits for someone who may approve waivers; a person
    who holds Approve Waivers is that someone, so their own waiver applies at once."""
    return amount_cents > approval_cents and not actor.can(Permission.APPROVE_WAIVERS)


def local_when(at: datetime, tz: ZoneInfo) -> str:
    """ "Mar 2, 2026 9:00 AM CST", as people read times in messages."""
    local = at.astimezone(tz)
    hour = local.hour % 12 or 12
    return f"{local:%b} {local.day}, {local.year} {hour}:{local:%M} {local:%p} {local.tzname()}"


async def _pending_waiver(ctx: Context, invoice_id: int) -> AdjustmentRecord | None:
    for adjustment in await ctx.store.payments.adjustments_for(invoice_id):
        if (
            adjustment.kind == AdjustmentKind.WAIVER
            and adjustment.status == AdjustmentStatus.PENDING
        ):
            return adjustment
    return None


async def _replayed(
    ctx: Context, key: str | None, invoice: InvoiceRecord, amount_cents: int
) -> AdjustmentRecord | None:
    if not key:
        return None
    existing = await ctx.store.payments.adjustment_by_key(key)
    if existing is None:
        return None
    if (
        existing.invoice_id != invoice.id
        or existing.amount_cents != amount_cents
        or existing.kind != AdjustmentKind.WAIVER
    ):
        raise ConflictError(
            _("That form was already used for another waiver; nothing was changed.")
        )
    return existing


async def check_waiver_request(ctx: Context, actor: Actor, cmd: RequestWaiver) -> None:
    """The rules `request_waiver` applies, checked without locking or writing: a form shows a
    broken rule next to its field, then asks once it has answered."""
    require(actor, Permission.WAIVE_CHARGES)
    invoice = await existing_invoice(ctx, cmd.invoice_id)
    key = (cmd.idempotency_key or "").strip() or None
    if await _replayed(ctx, key, invoice, cmd.amount_cents) is not None:
        return
    clean_reason(cmd.reason)
    check_waiver(invoice, cmd.amount_cents)
    waiting = await _pending_waiver(ctx, invoice.id)
    if waiting is not None:
        raise _already_waiting(waiting, invoice)


def _already_waiting(waiting: AdjustmentRecord, invoice: InvoiceRecord) -> ConflictError:
    return ConflictError(
        _(
            "A waiver of {amount} on invoice {number} is already awaiting approval; wait for the "
            "decision (or withdraw it) first.",
            amount=format_cents(waiting.amount_cents),
            number=invoice.number,
        )
    )


async def request_waiver(ctx: Context, actor: Actor, cmd: RequestWaiver) -> WaiverOutcome:
    """Waive part or all of what is owed, or ask for approval when the amount needs it."""
    require(actor, Permission.WAIVE_CHARGES)
    store = ctx.store
    key = (cmd.idempotency_key or "").strip() or None
    # Lock the invoice first: a replay, a payment or another waiver waits for this one.
    invoice = await existing_invoice(ctx, cmd.invoice_id, lock=True)
    existing = await _replayed(ctx, key, invoice, cmd.amount_cents)
    if existing is not None:
        return WaiverOutcome(existing, invoice, created=False)
    reason = clean_reason(cmd.reason)
    check_waiver(invoice, cmd.amount_cents)
    waiting = await _pending_waiver(ctx, invoice.id)
    if waiting is not None:
        raise _already_waiting(waiting, invoice)
    settings = await store.settings.get()
    if not needs_approval(cmd.amount_cents, settings.waiver_approval_cents, actor):
        adjustment = await apply_waiver(
            ctx, actor, invoice, cmd.amount_cents, reason, idempotency_key=key
        )
        await on_invoice_settled(ctx, actor, invoice)
        return WaiverOutcome(adjustment, invoice, created=True)

    adjustment = await store.payments.add_adjustment(
        NewAdjustment(
            invoice_id=invoice.id,
            kind=AdjustmentKind.WAIVER,
            amount_cents=cmd.amount_cents,
            reason=reason,
            status=AdjustmentStatus.PENDING,
            requested_by_id=actor.staff_id,
            idempotency_key=key,
        )
    )
    await store.activity.log(
        actor,
        "invoice",
        invoice.id,
        "waiver_requested",
        after={
            "adjustment_id": adjustment.id,
            "amount_cents": cmd.amount_cents,
            "balance_cents": balance_of(invoice),
            "approval_cents": settings.waiver_approval_cents,
        },
        comment=reason,
    )
    await announce_request(ctx, WAIVER_OUTBOX, adjustment.id)
    return WaiverOutcome(adjustment, invoice, created=True)


def decision_word(adjustment: AdjustmentRecord) -> str:
    """ "approved", "denied" or "withdrawn" for a decided request; "pending" otherwise."""
    if adjustment.status == AdjustmentStatus.APPLIED:
        return _("approved")
    if adjustment.status == AdjustmentStatus.DENIED:
        if adjustment.decision_comment == WITHDRAWN_COMMENT:
            return _("withdrawn")
        return _("denied")
    return str(adjustment.status)


async def _already_decided(ctx: Context, adjustment: AdjustmentRecord) -> ConflictError:
    who = None
    if adjustment.decided_by_id is not None:
        who = await ctx.store.people.staff_name(adjustment.decided_by_id)
    decision = decision_word(adjustment)
    who = who or _("someone")
    if adjustment.decided_at is None:
        return ConflictError(
            _(
                "This waiver was already {decision} by {who}. Nothing was changed.",
                decision=decision,
                who=who,
            )
        )
    return ConflictError(
        _(
            "This waiver was already {decision} by {who} on {when}. Nothing was changed.",
            decision=decision,
            who=who,
            when=local_when(adjustment.decided_at, ctx.tz),
        )
    )


async def decide_waiver(
    ctx: Context, actor: Actor, adjustment_id: int, *, approve: bool, comment: str | None = None
) -> WaiverDecision:
    """Approve (the waiver is applied now, if it still fits the balance) or deny a request."""
    return await decide(ctx, actor, WAIVER_RULES, adjustment_id, approve=approve, comment=comment)


async def _locked(ctx: Context, adjustment_id: int) -> AdjustmentRecord | None:
    adjustment = await ctx.store.payments.adjustment(adjustment_id, lock=True)
    if adjustment is None or adjustment.kind != AdjustmentKind.WAIVER:
        return None
    return adjustment


async def _check(
    ctx: Context, actor: Actor, adjustment: AdjustmentRecord, approve: bool
) -> InvoiceRecord:
    """The invoice, locked; an approval needs the waiver to still fit its balance."""
    invoice = await ctx.store.invoices.get(adjustment.invoice_id, lock=True)
    if invoice is None:
        raise NotFound(_("The invoice behind this waiver request no longer exists."))
    if approve:
        try:
            check_waiver(invoice, adjustment.amount_cents)
        except (ValidationError, ConflictError) as exc:
            raise ConflictError(
                _(
                    "{message} The request can't be approved as it stands (payments may have "
                    "come in since it was made); deny it and ask for a new one. Nothing was "
                    "changed.",
                    message=exc.message,
                )
            ) from None
    return invoice


async def _apply(
    ctx: Context,
    actor: Actor,
    adjustment: AdjustmentRecord,
    approve: bool,
    invoice: InvoiceRecord,
    comment: str | None,
) -> InvoiceRecord:
    if approve:
        await apply_waiver(
            ctx, actor, invoice, adjustment.amount_cents, adjustment.reason, pending=adjustment
        )
        # A waived premium starts the coverage it paid for, as a payment would.
        await on_invoice_settled(ctx, actor, invoice)
    else:
        await ctx.store.activity.log(
            actor,
            "invoice",
            invoice.id,
            "waiver_denied",
            after={"adjustment_id": adjustment.id, "amount_cents": adjustment.amount_cents},
            comment=comment,
        )
    adjustment.decision_comment = comment
    return invoice


WAIVER_RULES: ApprovalRules[AdjustmentRecord, InvoiceRecord] = ApprovalRules(
    permission=Permission.APPROVE_WAIVERS,
    approved=AdjustmentStatus.APPLIED.value,
    denied=AdjustmentStatus.DENIED.value,
    audit_entity="invoice_adjustment",
    outbox=WAIVER_OUTBOX,
    missing=N_("That waiver request doesn't exist."),
    locked=_locked,
    already_decided=_already_decided,
    check=_check,
    apply=_apply,
    # The invoice's own entries (the waiver applied or denied) come first, then the request's.
    audit_first=False,
    audit_facts=lambda adjustment: {"invoice_id": adjustment.invoice_id},
)


async def withdraw_waiver(ctx: Context, actor: Actor, adjustment_id: int) -> WaiverDecision:
    """The person who asked takes a waiting request back; it is closed as denied, and says so."""
    store = ctx.store
    adjustment = await _locked(ctx, adjustment_id)
    if adjustment is None:
        raise NotFound(_(WAIVER_RULES.missing))
    if actor.staff_id is None or adjustment.requested_by_id != actor.staff_id:
        raise PermissionDenied(_("Only the person who asked for a waiver can withdraw it."))
    if adjustment.status != AdjustmentStatus.PENDING:
        raise await _already_decided(ctx, adjustment)
    adjustment.status = AdjustmentStatus.DENIED
    adjustment.decided_by_id = actor.staff_id
    adjustment.decided_at = ctx.now()
    adjustment.decision_comment = WITHDRAWN_COMMENT
    await store.activity.log(
        actor,
        "invoice",
        adjustment.invoice_id,
        "waiver_withdrawn",
        after={"adjustment_id": adjustment.id, "amount_cents": adjustment.amount_cents},
    )
    await announce_decision(ctx, WAIVER_OUTBOX, adjustment.id, adjustment.status)
    return WaiverDecision(adjustment, None, changed=True)
