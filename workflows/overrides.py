"""Claim-cap overrides: a one-off request to apply insurance past the cap, and its decision."""

from __future__ import annotations

from enum import StrEnum

from workflows.approvals import (
    ApprovalOutbox,
    ApprovalRules,
    Decision,
    announce_request,
    decide,
)
from workflows.errors import ConflictError, ValidationError
from workflows.i18n import N_, _
from workflows.incidents import existing_incident
from workflows.insurance import CoverageContext, decide_claim, invoice_claim_key
from workflows.invoice_updates import (
    INVOICE_ISSUED,
    UpdateReason,
    amount_of,
    hold_key,
    notify_amount_change,
    release_after_decision,
)
from workflows.invoices import (
    InvoiceStatus,
    check_override_gates,
    insurance_snapshot,
    settle_if_paid,
)
from workflows.permissions import Actor, Permission, require
from workflows.ports import Context, InvoiceRecord, NewOverrideRequest, OverrideRequestRecord


class OverrideStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"


OverrideDecision = Decision[OverrideRequestRecord]

# Slack posts the request, then redraws it with the decision; each decision has its own kind.
OVERRIDE_OUTBOX = ApprovalOutbox(
    name="override",
    id_field="request_id",
    requested="slack.override_requested",
    decided={
        s.value: f"slack.override_{s.value}"
        for s in (OverrideStatus.APPROVED, OverrideStatus.DENIED)
    },
)


async def request_cap_override(
    ctx: Context, actor: Actor, incident_id: int, *, reason: str | None = None
) -> OverrideRequestRecord:
    """Ask an approver to apply insurance past the cap for this incident (one pending at a time)."""
    require(actor, Permission.CREATE_INVOICES)
    store = ctx.store
    incident = await existing_incident(ctx, incident_id)
    pending = await store.insurance.pending_override_for(incident_id)
    if pending is not None:
        return pending
    if incident.student_id is None:
        raise ValidationError(_("This incident has no student."))
    coverage = await store.insurance.coverage_on(
        incident.student_id, incident.occurred_on, device_id=incident.device_id
    )
    if coverage is None:
        raise ConflictError(_("The student had no insurance on the incident date."))
    if not coverage.allow_override:
        raise ConflictError(
            _("{policy_name} does not allow claim-cap overrides.", policy_name=coverage.policy_name)
        )
    used = await store.insurance.count_claims(coverage.claim_key)
    invoice_id = None
    for invoice in await store.invoices.for_incident(incident_id):
        if invoice.status != InvoiceStatus.CANCELLED and invoice.cap_reached:
            invoice_id = invoice.id
        elif invoice.status != InvoiceStatus.CANCELLED and invoice_claim_key(invoice):
            raise ConflictError(_("This incident's invoice already has insurance applied."))
    if coverage.max_claims is None or (used < coverage.max_claims and invoice_id is None):
        raise ConflictError(_("The claim cap hasn't been reached; no override is needed."))
    request = await store.insurance.add_override_request(
        NewOverrideRequest(
            incident_id=incident_id,
            enrollment_id=coverage.enrollment_id,
            invoice_id=invoice_id,
            requested_by_id=actor.staff_id,
            reason=(reason or "").strip() or None,
        )
    )
    await store.activity.log(
        actor,
        "cap_override",
        request.id,
        "requested",
        after={"incident_id": incident_id, "invoice_id": invoice_id},
    )
    if invoice_id is not None:
        await _hold_first_notice(ctx, invoice_id, request.id)
    await announce_request(ctx, OVERRIDE_OUTBOX, request.id)
    return request


async def decide_cap_override(
    ctx: Context, actor: Actor, request_id: int, *, approve: bool
) -> OverrideDecision:
    """Approve or deny. Approving an override on a full-price invoice re-prices it at once."""
    return await decide(ctx, actor, OVERRIDE_RULES, request_id, approve=approve)


async def _locked(ctx: Context, request_id: int) -> OverrideRequestRecord | None:
    return await ctx.store.insurance.override_request(request_id, lock=True)


async def _already_decided(ctx: Context, request: OverrideRequestRecord) -> ConflictError:
    return ConflictError(_("This request was already {status}.", status=request.status))


async def _check(
    ctx: Context, actor: Actor, request: OverrideRequestRecord, approve: bool
) -> CoverageContext | None:
    """The enrollment behind the request, locked; approving needs it and its gates."""
    store = ctx.store
    incident = await store.incidents.get(request.incident_id)
    assert incident is not None and incident.student_id is not None
    coverage = await store.insurance.coverage_on(
        incident.student_id, incident.occurred_on, device_id=incident.device_id, lock=True
    )
    if approve:
        if coverage is None:
            raise ConflictError(_("The enrollment behind this request no longer exists."))
        check_override_gates(actor, coverage)
    return coverage


async def _apply(
    ctx: Context,
    actor: Actor,
    request: OverrideRequestRecord,
    approve: bool,
    coverage: CoverageContext | None,
    comment: str | None,
) -> InvoiceRecord | None:
    store = ctx.store
    invoice = None
    about = (
        None
        if request.invoice_id is None
        else await store.invoices.get(request.invoice_id, lock=True)
    )
    old_amount = None if about is None else amount_of(about)
    if approve and request.invoice_id is not None and coverage is not None:
        invoice = await _reprice_with_override(ctx, actor, request.invoice_id, coverage, request.id)
    if about is not None and not approve:
        await store.activity.log(
            actor,
            "invoice",
            about.id,
            "claim_cap_override_denied",
            after={"total_cents": about.total_cents, "request_id": request.id},
        )
    if about is not None and old_amount is not None:
        # Held: the first email goes out now, with the amount that stands. Already told: one
        # "your invoice was updated" email, when the amount changed.
        if not await release_after_decision(ctx, about, hold_key(request.id)) and approve:
            await notify_amount_change(
                ctx,
                about,
                old_cents=old_amount,
                reason=UpdateReason.OVERRIDE_APPROVED,
                cause=f"override:{request.id}",
                by=actor.name,
            )
    return invoice


async def _reprice_with_override(
    ctx: Context, actor: Actor, invoice_id: int, coverage: CoverageContext, request_id: int
) -> InvoiceRecord | None:
    store = ctx.store
    invoice = await store.invoices.get(invoice_id, lock=True)
    if invoice is None or invoice.status == InvoiceStatus.CANCELLED:
        return invoice
    used = await store.insurance.count_claims(coverage.claim_key)
    decision = decide_claim(invoice.subtotal_cents, coverage, used, override=True)
    new_total = decision.split.client_cents
    if invoice.paid_cents + invoice.waived_cents > new_total:
        raise ConflictError(
            _(
                "Invoice {number} already has more paid than it would owe with insurance; record "
                "a refund first.",
                number=invoice.number,
            )
        )
    before = {
        "insurance_cents": invoice.insurance_cents,
        "total_cents": invoice.total_cents,
        "status": invoice.status,
    }
    invoice.insurance_cents = decision.split.policy_cents
    invoice.total_cents = new_total
    invoice.claim_enrollment_id = coverage.enrollment_id
    invoice.claim_device_coverage_id = coverage.device_coverage_id
    invoice.override_applied = True
    invoice.override_approved_by_id = actor.staff_id
    invoice.insurance_snapshot = insurance_snapshot(
        coverage, decision, approver=actor, approved_at=ctx.now()
    )
    settle_if_paid(invoice, ctx.now())
    await store.activity.log(
        actor,
        "invoice",
        invoice.id,
        "claim_cap_override_applied",
        before=before,
        after={
            "insurance_cents": invoice.insurance_cents,
            "total_cents": invoice.total_cents,
            "status": invoice.status,
            "request_id": request_id,
        },
    )
    return invoice


OVERRIDE_RULES: ApprovalRules[OverrideRequestRecord, CoverageContext | None] = ApprovalRules(
    permission=Permission.OVERRIDE_CLAIM_CAP,
    approved=OverrideStatus.APPROVED.value,
    denied=OverrideStatus.DENIED.value,
    audit_entity="cap_override",
    outbox=OVERRIDE_OUTBOX,
    missing=N_("That override request doesn't exist."),
    locked=_locked,
    already_decided=_already_decided,
    check=_check,
    apply=_apply,
)


async def _hold_first_notice(ctx: Context, invoice_id: int, request_id: int) -> None:
    """An override asked for on an invoice whose first email hasn't gone out yet: hold that
    email until the decision, so the family is told the amount that stands."""
    invoice = await ctx.store.invoices.get(invoice_id, lock=True)
    if invoice is None or invoice.notice_hold is not None:
        return
    if await ctx.store.outbox.hold_unsent(invoice_id, INVOICE_ISSUED):
        invoice.notice_hold = hold_key(request_id)
