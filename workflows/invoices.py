"""Use cases for invoices: create from an incident with insurance, cancel, restore, automation."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any

from workflows.errors import ConflictError, NotFound, PermissionDenied, ValidationError
from workflows.fee_kinds import FeeKind, require_kind
from workflows.i18n import _
from workflows.incidents import existing_incident
from workflows.insurance import ClaimDecision, CoverageContext, decide_claim, invoice_claim_key
from workflows.invoice_updates import UpdateReason, amount_of, hold_key, notify_amount_change
from workflows.labels import INVOICE_KINDS, INVOICE_STATUSES
from workflows.permissions import Actor, Permission, require
from workflows.ports import Context, FeeItemRecord, InvoiceLineSpec, InvoiceRecord, NewInvoice

MAX_LINES = 50
MAX_LINE_CENTS = 100_000_00
MAX_DUE_DAYS = 3 * 366


class InvoiceStatus(StrEnum):
    UNPAID = "unpaid"
    FIRST = "first"
    SECOND = "second"
    FINAL = "final"
    COLLECTIONS = "collections"
    PAID = "paid"
    CANCELLED = "cancelled"

    @property
    def label(self) -> str:
        return _(INVOICE_STATUSES[self.value])


class InvoiceKind(StrEnum):
    """What an invoice bills for; reports split recovered money by it."""

    INCIDENT = "incident"  # damage or loss, from an incident
    PREMIUM = "premium"  # an insurance enrollment's premium
    FEE = "fee"  # a bulk fee such as the annual technology fee
    COLLECTION = "collection"  # what was missing or damaged when a device was collected

    @property
    def label(self) -> str:
        return _(INVOICE_KINDS[self.value])


class NoticeTemplate(StrEnum):
    """The emails DeviceCare sends families; each is a template pair under templates/email/."""

    INVOICE_ISSUED = "invoice_issued"
    DUE_REMINDER = "due_reminder"
    OVERDUE_FIRST = "overdue_first"
    OVERDUE_SECOND = "overdue_second"
    OVERDUE_FINAL = "overdue_final"
    PAYMENT_RECEIPT = "payment_receipt"
    PENDING_PAYMENT_ACK = "pending_payment_ack"
    PAYMENT_PLAN_CONFIRMATION = "payment_plan_confirmation"
    ENROLLMENT_CONFIRMATION = "enrollment_confirmation"
    COVERAGE_EXPIRING = "coverage_expiring"
    REFUND_RECEIPT = "refund_receipt"
    FAMILY_LINK = "family_link"  # a fresh link to the family's invoice page, on request
    INSTALLMENT_MISSED = "installment_missed"
    INVOICE_UPDATED = "invoice_updated"  # the amount of an invoice the family knew changed


OPEN_STATUSES = frozenset(
    {
        InvoiceStatus.UNPAID,
        InvoiceStatus.FIRST,
        InvoiceStatus.SECOND,
        InvoiceStatus.FINAL,
        InvoiceStatus.COLLECTIONS,
    }
)


@dataclass(frozen=True)
class CustomLine:
    description: str
    amount_cents: int
    quantity: int = 1


@dataclass(frozen=True)
class CreateInvoice:
    incident_id: int
    fee_item_ids: tuple[int, ...] = ()
    custom_lines: tuple[CustomLine, ...] = ()
    due_date: date | None = None
    automation_enabled: bool | None = None
    apply_override: bool = False
    idempotency_key: str | None = None


@dataclass(frozen=True)
class CreatedInvoice:
    invoice: InvoiceRecord
    decision: ClaimDecision | None
    created: bool = True
    notices: tuple[str, ...] = field(default=())


def applicable_fees(
    items: Iterable[FeeItemRecord],
    device_model: str,
    flags: Iterable[str],
    kind: FeeKind = FeeKind.DAMAGE,
) -> list[FeeItemRecord]:
    """Fees to offer for an incident: damage fees, general ones plus those for its model or its
    flags. Collection uses the same model rule for its own kind."""
    flag_set = set(flags)
    model = device_model.casefold()
    return [
        item
        for item in items
        if item.active
        and item.kind == kind
        and (item.device_model is None or item.device_model.casefold() == model)
        and (item.incident_flag is None or item.incident_flag in flag_set)
    ]


def build_lines(
    fee_items: Sequence[Any], requested_ids: tuple[int, ...], custom: tuple[CustomLine, ...]
) -> list[InvoiceLineSpec]:
    """Lines from the fee schedule (a repeated id is a quantity) plus custom lines. An incident
    invoice bills damage fees only, so an id of another kind (a forged or stale form) is refused."""
    by_id = {item.id: item for item in fee_items}
    lines: list[InvoiceLineSpec] = []
    counts: dict[int, int] = {}
    for fee_id in requested_ids:
        counts[fee_id] = counts.get(fee_id, 0) + 1
    for fee_id, quantity in counts.items():
        item = by_id.get(fee_id)
        if item is None or not item.active:
            raise ValidationError(_("One of the chosen fees no longer exists."), field="fee_items")
        require_kind((item,), FeeKind.DAMAGE, what=_("an incident's invoice"), field="fee_items")
        lines.append(
            InvoiceLineSpec(
                description=item.name,
                kind=item.kind,
                unit_cents=item.price_cents,
                quantity=quantity,
                fee_item_id=item.id,
            )
        )
    for line in custom:
        description = line.description.strip()
        if not description:
            raise ValidationError(_("Each custom line needs a description."), field="custom_lines")
        if line.quantity < 1:
            raise ValidationError(_("Quantities must be at least 1."), field="custom_lines")
        if not 0 <= line.amount_cents <= MAX_LINE_CENTS:
            raise ValidationError(_("A line amount is out of range."), field="custom_lines")
        lines.append(
            InvoiceLineSpec(
                description=description[:300],
                kind="custom",
                unit_cents=line.amount_cents,
                quantity=line.quantity,
            )
        )
    if not lines:
        raise ValidationError(_("Add at least one line to the invoice."), field="fee_items")
    if len(lines) > MAX_LINES:
        raise ValidationError(
            _("An invoice holds at most {max} lines.", max=MAX_LINES), field="fee_items"
        )
    return lines


def insurance_snapshot(
    coverage: CoverageContext | None,
    decision: ClaimDecision,
    *,
    approver: Actor | None = None,
    approved_at: datetime | None = None,
) -> dict[str, Any] | None:
    """Everything the invoice must keep showing even if the policy is later edited or deleted."""
    if coverage is None:
        return None
    terms = coverage.terms
    return {
        "enrollment_id": coverage.enrollment_id,
        "device_coverage_id": coverage.device_coverage_id,
        "policy_id": coverage.policy_id,
        "policy_name": coverage.policy_name,
        "term_label": coverage.term_label,
        "term_start": coverage.term_start.isoformat(),
        "term_end": coverage.term_end.isoformat(),
        "copay_cents": terms.copay_cents,
        "coverage_percent": (
            None if terms.coverage_percent is None else str(terms.coverage_percent)
        ),
        "cap_cents": terms.cap_cents,
        "max_claims": coverage.max_claims,
        "allow_override": coverage.allow_override,
        "claim_number": decision.claim_number,
        "absorbed_cents": decision.split.policy_cents,
        "coverage_applied": decision.coverage_applied,
        "cap_reached": decision.cap_reached,
        "override_applied": decision.override_applied,
        "override_approved_by": None if approver is None else approver.name,
        "override_approved_by_id": None if approver is None else approver.staff_id,
        "override_approved_at": None if approved_at is None else approved_at.isoformat(),
        "audit_lines": list(decision.audit_lines),
    }


def balance_of(invoice: InvoiceRecord) -> int:
    """What is still owed: the total less payments and waivers (refunds leave it unchanged)."""
    return invoice.total_cents - invoice.paid_cents - invoice.waived_cents


def settle_if_paid(invoice: InvoiceRecord, now: datetime) -> bool:
    """An invoice with nothing left to pay is Paid; returns True when this call settled it."""
    if balance_of(invoice) != 0 or invoice.status == InvoiceStatus.PAID:
        return False
    invoice.status = InvoiceStatus.PAID
    invoice.paid_at = now
    return True


def default_due_date(today: date, due_days: int) -> date:
    return today + timedelta(days=due_days)


def check_due_date(today: date, chosen: date | None, default_days: int) -> date:
    """The chosen due date, or the district's default; refused outside today..three years."""
    due = chosen or default_due_date(today, default_days)
    if due < today or due > today + timedelta(days=MAX_DUE_DAYS):
        raise ValidationError(
            _("The due date must be between today and three years out."), field="due_date"
        )
    return due


def check_lines(lines: Sequence[InvoiceLineSpec]) -> None:
    """Lines built by other flows (fees, collections, premiums) pass the same limits."""
    if not lines:
        raise ValidationError(_("Add at least one line to the invoice."), field="lines")
    if len(lines) > MAX_LINES:
        raise ValidationError(
            _("An invoice holds at most {max} lines.", max=MAX_LINES), field="lines"
        )
    for line in lines:
        if not line.description.strip():
            raise ValidationError(_("Each line needs a description."), field="lines")
        if line.quantity < 1 or not 0 <= line.unit_cents <= MAX_LINE_CENTS:
            raise ValidationError(_("A line amount is out of range."), field="lines")


@dataclass(frozen=True)
class IssueInvoice:
    """An invoice that does not come from an incident: a premium, a fee, a collection."""

    student_id: int
    kind: InvoiceKind
    lines: tuple[InvoiceLineSpec, ...]
    due_date: date | None = None
    device_id: int | None = None
    annual_fee_id: int | None = None
    collection_id: int | None = None
    premium_enrollment_id: int | None = None
    automation_enabled: bool | None = None
    idempotency_key: str | None = None
    send_notice: bool = True


async def issue_invoice(ctx: Context, actor: Actor, cmd: IssueInvoice) -> CreatedInvoice:
    """Create, log and (unless nothing is owed) email an invoice built by another flow.

    The caller checks the permission for its kind of charge (Manage Fees, Collect Devices,
    Manage Enrollments); this checks only the automation switch, which needs its own.
    """
    store = ctx.store
    if cmd.idempotency_key:
        existing = await store.invoices.by_key(cmd.idempotency_key)
        if existing is not None:
            return CreatedInvoice(existing, decision=None, created=False)
    if await store.people.student(cmd.student_id) is None:
        raise NotFound(_("Student #{student_id} doesn't exist.", student_id=cmd.student_id))
    check_lines(cmd.lines)
    settings = await store.settings.get()
    automation = settings.automation_default
    if cmd.automation_enabled is not None and cmd.automation_enabled != automation:
        require(actor, Permission.MANAGE_INVOICE_AUTOMATION)
        automation = cmd.automation_enabled
    due = check_due_date(ctx.today(), cmd.due_date, settings.default_due_days)
    subtotal = sum(line.amount_cents for line in cmd.lines)
    invoice = await store.invoices.add(
        NewInvoice(
            number=await store.invoices.next_number(settings.invoice_prefix),
            student_id=cmd.student_id,
            device_id=cmd.device_id,
            lines=cmd.lines,
            subtotal_cents=subtotal,
            due_date=due,
            automation_enabled=automation,
            status=InvoiceStatus.UNPAID,
            created_by_id=actor.staff_id,
            idempotency_key=cmd.idempotency_key,
            kind=cmd.kind.value,
            annual_fee_id=cmd.annual_fee_id,
            collection_id=cmd.collection_id,
            premium_enrollment_id=cmd.premium_enrollment_id,
        )
    )
    settled = settle_if_paid(invoice, ctx.now())
    await store.activity.log(
        actor,
        "invoice",
        invoice.id,
        "created",
        after=_money_state(invoice)
        | {"kind": cmd.kind.value, "lines": len(cmd.lines), "due_date": due.isoformat()},
    )
    notices: tuple[str, ...] = ()
    if cmd.send_notice and not settled:
        await store.outbox.queue_notice(
            NoticeTemplate.INVOICE_ISSUED, invoice.id, f"invoice-issued:{invoice.id}"
        )
        notices = (NoticeTemplate.INVOICE_ISSUED,)
    return CreatedInvoice(invoice, decision=None, notices=notices)


async def check_invoice_for_incident(ctx: Context, actor: Actor, cmd: CreateInvoice) -> None:
    """The rules `create_invoice_for_incident` applies to a request, checked without locking or
    writing: a form shows a broken rule next to its field, then creates the invoice once it has
    answered. Keep in step with `create_invoice_for_incident`."""
    require(actor, Permission.CREATE_INVOICES)
    store = ctx.store
    incident = await existing_incident(ctx, cmd.incident_id)
    if cmd.idempotency_key and await store.invoices.by_key(cmd.idempotency_key):
        return  # a redelivery: the invoice is made already
    if incident.student_id is None:
        raise ValidationError(
            _("This incident has no student, so there is nobody to invoice."), field="student"
        )
    settings = await store.settings.get()
    if cmd.automation_enabled is not None and cmd.automation_enabled != settings.automation_default:
        require(actor, Permission.MANAGE_INVOICE_AUTOMATION)
    check_due_date(ctx.today(), cmd.due_date, settings.default_due_days)
    build_lines(await store.fee_items.by_ids(cmd.fee_item_ids), cmd.fee_item_ids, cmd.custom_lines)
    coverage = await store.insurance.coverage_on(
        incident.student_id, incident.occurred_on, device_id=incident.device_id
    )
    if coverage is not None and coverage.max_claims is not None:
        at_cap = await store.insurance.count_claims(coverage.claim_key) >= coverage.max_claims
        if at_cap and cmd.apply_override:
            require(actor, Permission.OVERRIDE_CLAIM_CAP)
    elif cmd.apply_override:
        raise ValidationError(
            _("The claim cap hasn't been reached; no override is needed."), field="apply_override"
        )


async def create_invoice_for_incident(
    ctx: Context, actor: Actor, cmd: CreateInvoice
) -> CreatedInvoice:
    require(actor, Permission.CREATE_INVOICES)
    store = ctx.store
    # Lock the incident first so a redelivered request waits for the original and then finds it.
    incident = await existing_incident(ctx, cmd.incident_id, lock=True)
    if cmd.idempotency_key:
        existing = await store.invoices.by_key(cmd.idempotency_key)
        if existing is not None:
            return CreatedInvoice(existing, decision=None, created=False)
    if incident.student_id is None:
        raise ValidationError(
            _("This incident has no student, so there is nobody to invoice."), field="student"
        )
    settings = await store.settings.get()
    automation = settings.automation_default
    if cmd.automation_enabled is not None and cmd.automation_enabled != automation:
        require(actor, Permission.MANAGE_INVOICE_AUTOMATION)
        automation = cmd.automation_enabled
    due = check_due_date(ctx.today(), cmd.due_date, settings.default_due_days)

    lines = build_lines(
        await store.fee_items.by_ids(cmd.fee_item_ids), cmd.fee_item_ids, cmd.custom_lines
    )
    subtotal = sum(line.amount_cents for line in lines)

    # A waiting override request is locked before the enrollment, in the order its decision
    # locks them: a decision and this invoice then happen one after the other.
    waiting = await store.insurance.pending_override_for(incident.id, lock=True)
    # Locking the enrollment serialises claim counting, so two invoices at once can't both
    # take the last claim.
    coverage = await store.insurance.coverage_on(
        incident.student_id, incident.occurred_on, device_id=incident.device_id, lock=True
    )
    claims_used = 0 if coverage is None else await store.insurance.count_claims(coverage.claim_key)
    approver: Actor | None = None
    approved_at: datetime | None = None
    override = False
    if coverage is not None and coverage.max_claims is not None:
        at_cap = claims_used >= coverage.max_claims
        approved = await store.insurance.approved_override_for(incident.id)
        if at_cap and cmd.apply_override:
            require(actor, Permission.OVERRIDE_CLAIM_CAP)
            override, approver, approved_at = True, actor, ctx.now()
        elif at_cap and approved is not None and approved.invoice_id is None:
            override, approved_at = True, approved.decided_at
            approver = await _staff_actor(ctx, approved.decided_by_id)
    elif cmd.apply_override:
        raise ValidationError(
            _("The claim cap hasn't been reached; no override is needed."), field="apply_override"
        )
    decision = decide_claim(subtotal, coverage, claims_used, override=override)

    number = await store.invoices.next_number(settings.invoice_prefix)
    invoice = await store.invoices.add(
        NewInvoice(
            number=number,
            student_id=incident.student_id,
            incident_id=incident.id,
            device_id=incident.device_id,
            lines=lines,
            subtotal_cents=subtotal,
            insurance_cents=decision.split.policy_cents,
            due_date=due,
            automation_enabled=automation,
            status=InvoiceStatus.UNPAID,
            claim_enrollment_id=(
                coverage.enrollment_id
                if coverage is not None and decision.counts_as_claim
                else None
            ),
            claim_device_coverage_id=(
                coverage.device_coverage_id
                if coverage is not None and decision.counts_as_claim
                else None
            ),
            cap_reached=decision.cap_reached,
            override_applied=decision.override_applied,
            override_approved_by_id=None if approver is None else approver.staff_id,
            insurance_snapshot=insurance_snapshot(
                coverage, decision, approver=approver, approved_at=approved_at
            ),
            created_by_id=actor.staff_id,
            idempotency_key=cmd.idempotency_key,
        )
    )
    # Insurance that absorbs everything leaves nothing to bill: settled at once, no notices.
    settled = settle_if_paid(invoice, ctx.now())
    if override and not cmd.apply_override:
        # The approved request is used up by this invoice.
        approved = await store.insurance.approved_override_for(incident.id)
        if approved is not None:
            approved.invoice_id = invoice.id
    pending = None
    if decision.cap_reached and not decision.override_applied:
        # An override asked for before this invoice is about this invoice: its decision
        # re-prices it, and the family's first email waits for that decision.
        if waiting is not None and waiting.invoice_id is None:
            pending = waiting
            pending.invoice_id = invoice.id
            invoice.notice_hold = hold_key(pending.id)
            # The approvers' message said "No invoice yet": redrawn, it names this invoice.
            await store.outbox.enqueue(
                "slack.override_requested",
                f"override-invoiced:{pending.id}",
                {"request_id": pending.id},
            )
    created_state = _money_state(invoice) | {"lines": len(lines), "due_date": due.isoformat()}
    if pending is not None:
        created_state |= {"override_pending": pending.id}
    await store.activity.log(
        actor,
        "invoice",
        invoice.id,
        "created",
        after=created_state,
        comment="; ".join(decision.audit_lines) or None,
    )
    if decision.override_applied:
        await store.activity.log(
            approver or actor,
            "invoice",
            invoice.id,
            "claim_cap_override_applied",
            after={"approved_by_id": invoice.override_approved_by_id},
        )
    notices: tuple[str, ...] = ()
    if not settled:
        await store.outbox.queue_notice(
            NoticeTemplate.INVOICE_ISSUED,
            invoice.id,
            f"invoice-issued:{invoice.id}",
            held=invoice.notice_hold is not None,
        )
        notices = (NoticeTemplate.INVOICE_ISSUED,)
    return CreatedInvoice(invoice, decision=decision, notices=notices)


@dataclass(frozen=True)
class InvoicePreview:
    """What an invoice would look like if created now; nothing is written or locked."""

    lines: tuple[InvoiceLineSpec, ...]
    subtotal_cents: int
    coverage: CoverageContext | None
    claims_used: int
    decision: ClaimDecision
    due_date: date
    automation_default: bool
    can_set_automation: bool
    # The cap is reached, the policy allows overrides and the actor may apply one.
    override_offered: bool
    # An approved override request for this incident will be applied by itself.
    approved_override_by: str | None = None
    # An override request for this incident is waiting: the invoice becomes its invoice, and the
    # family's first email waits for the decision.
    override_pending: bool = False


async def preview_invoice(ctx: Context, actor: Actor, cmd: CreateInvoice) -> InvoicePreview:
    """The insurance math `create_invoice_for_incident` would do, for a live preview.

    Read-only: no lock, no write. An empty set of lines previews a zero subtotal, so the
    coverage facts can be shown before anything is picked.
    """
    require(actor, Permission.CREATE_INVOICES)
    store = ctx.store
    incident = await existing_incident(ctx, cmd.incident_id)
    if incident.student_id is None:
        raise ValidationError(
            _("This incident has no student, so there is nobody to invoice."), field="student"
        )
    settings = await store.settings.get()
    lines: list[InvoiceLineSpec] = []
    if cmd.fee_item_ids or cmd.custom_lines:
        lines = build_lines(
            await store.fee_items.by_ids(cmd.fee_item_ids), cmd.fee_item_ids, cmd.custom_lines
        )
    subtotal = sum(line.amount_cents for line in lines)
    coverage = await store.insurance.coverage_on(
        incident.student_id, incident.occurred_on, device_id=incident.device_id
    )
    claims_used = 0 if coverage is None else await store.insurance.count_claims(coverage.claim_key)
    at_cap = (
        coverage is not None
        and coverage.max_claims is not None
        and claims_used >= coverage.max_claims
    )
    allowed = coverage is not None and coverage.allow_override
    offered = at_cap and allowed and actor.can(Permission.OVERRIDE_CLAIM_CAP)
    approved_by: str | None = None
    if at_cap and allowed:
        approved = await store.insurance.approved_override_for(incident.id)
        if approved is not None and approved.invoice_id is None:
            approver = await _staff_actor(ctx, approved.decided_by_id)
            approved_by = "an approver" if approver is None else approver.name
    override = approved_by is not None or (offered and cmd.apply_override)
    pending = (
        at_cap and allowed and await store.insurance.pending_override_for(incident.id) is not None
    )
    return InvoicePreview(
        lines=tuple(lines),
        subtotal_cents=subtotal,
        coverage=coverage,
        claims_used=claims_used,
        decision=decide_claim(subtotal, coverage, claims_used, override=override),
        due_date=cmd.due_date or default_due_date(ctx.today(), settings.default_due_days),
        automation_default=settings.automation_default,
        can_set_automation=actor.can(Permission.MANAGE_INVOICE_AUTOMATION),
        override_offered=offered,
        approved_override_by=approved_by,
        override_pending=pending and not override,
    )


async def _staff_actor(ctx: Context, staff_id: int | None) -> Actor | None:
    if staff_id is None:
        return None
    name = await ctx.store.people.staff_name(staff_id) or f"staff #{staff_id}"
    return Actor(staff_id=staff_id, name=name, role="", permissions=frozenset())


def _money_state(invoice: InvoiceRecord) -> dict[str, Any]:
    return {
        "number": invoice.number,
        "status": invoice.status,
        "subtotal_cents": invoice.subtotal_cents,
        "insurance_cents": invoice.insurance_cents,
        "total_cents": invoice.total_cents,
        "paid_cents": invoice.paid_cents,
        "waived_cents": invoice.waived_cents,
        "refunded_cents": invoice.refunded_cents,
    }


async def existing_invoice(ctx: Context, invoice_id: int, *, lock: bool = False) -> InvoiceRecord:
    """The invoice (locked for the change when `lock`), or NotFound."""
    invoice = await ctx.store.invoices.get(invoice_id, lock=lock)
    if invoice is None:
        raise NotFound(_("Invoice #{invoice_id} doesn't exist.", invoice_id=invoice_id))
    return invoice


async def cancel_invoice(
    ctx: Context, actor: Actor, invoice_id: int, *, reason: str, auto: bool = False
) -> InvoiceRecord:
    """Cancel an unpaid invoice; its insurance claim slot is freed by the cancellation."""
    require(actor, Permission.CANCEL_INVOICES)
    invoice = await existing_invoice(ctx, invoice_id, lock=True)
    if invoice.status == InvoiceStatus.CANCELLED:
        return invoice
    if invoice.status == InvoiceStatus.PAID and invoice.total_cents > 0:
        raise ConflictError(
            _("Invoice {number} is paid; it can't be cancelled.", number=invoice.number)
        )
    if invoice.paid_cents > 0:
        raise ConflictError(
            _(
                "Invoice {number} already has payments recorded; it can't be cancelled while "
                "money is applied to it.",
                number=invoice.number,
            )
        )
    if not reason.strip():
        raise ValidationError(_("Say why the invoice is cancelled."), field="reason")
    before = _money_state(invoice)
    old_amount = amount_of(invoice)
    cancelled_at = ctx.now()
    invoice.status = InvoiceStatus.CANCELLED
    invoice.cancelled_at = cancelled_at
    invoice.auto_cancelled = auto
    await ctx.store.activity.log(
        actor,
        "invoice",
        invoice.id,
        "auto_cancelled" if auto else "cancelled",
        before=before,
        after=_money_state(invoice),
        comment=reason.strip(),
    )
    # A held first email stays held: the decision withdraws it (the invoice is cancelled) or,
    # restored by then, sends it.
    await notify_amount_change(
        ctx,
        invoice,
        old_cents=old_amount,
        reason=UpdateReason.CANCELLED,
        cause=f"cancelled:{cancelled_at.isoformat()}",
        note=reason.strip(),
    )
    return invoice


async def restore_invoice(ctx: Context, actor: Actor, invoice_id: int) -> InvoiceRecord:
    """Undo a cancellation. The claim it held must still fit under the policy's cap."""
    require(actor, Permission.CANCEL_INVOICES)
    invoice = await existing_invoice(ctx, invoice_id, lock=True)
    if invoice.status != InvoiceStatus.CANCELLED:
        raise ConflictError(_("Invoice {number} isn't cancelled.", number=invoice.number))
    store = ctx.store
    snapshot = invoice.insurance_snapshot or {}
    claim = invoice_claim_key(invoice)
    if claim is not None and not invoice.override_applied:
        incident = (
            None if invoice.incident_id is None else await store.incidents.get(invoice.incident_id)
        )
        if incident is not None:
            coverage = await store.insurance.coverage_on(
                invoice.student_id, incident.occurred_on, device_id=incident.device_id, lock=True
            )
            max_claims = snapshot.get("max_claims")
            if coverage is not None and max_claims is not None:
                used = await store.insurance.count_claims(claim)
                if used >= max_claims:
                    raise ConflictError(
                        _(
                            "Restoring {number} would go past the policy's claim cap "
                            "({max_claims} this term); another claim has used the slot.",
                            number=invoice.number,
                            max_claims=max_claims,
                        )
                    )
    before = _money_state(invoice)
    invoice.status = InvoiceStatus.PAID if invoice.total_cents == 0 else InvoiceStatus.UNPAID
    invoice.cancelled_at = None
    invoice.auto_cancelled = False
    await store.activity.log(
        actor, "invoice", invoice.id, "restored", before=before, after=_money_state(invoice)
    )
    await notify_amount_change(
        ctx,
        invoice,
        old_cents=0,
        reason=UpdateReason.RESTORED,
        cause=f"restored:{ctx.now().isoformat()}",
    )
    return invoice


async def set_invoice_automation(
    ctx: Context, actor: Actor, invoice_id: int, enabled: bool
) -> InvoiceRecord:
    require(actor, Permission.MANAGE_INVOICE_AUTOMATION)
    invoice = await existing_invoice(ctx, invoice_id, lock=True)
    if invoice.automation_enabled == enabled:
        return invoice
    invoice.automation_enabled = enabled
    await _log_change(
        ctx, actor, invoice, "automation_changed", "automation_enabled", not enabled, enabled
    )
    return invoice


MANUAL_STATUSES = (
    InvoiceStatus.UNPAID,
    InvoiceStatus.FIRST,
    InvoiceStatus.SECOND,
    InvoiceStatus.FINAL,
    InvoiceStatus.COLLECTIONS,
)


def final_notice_after_manual_change(
    new_status: str, previous_final_on: date | None, today: date
) -> date | None:
    """The day auto-cancel counts from after a person sets a status.

    Setting Final (or Collections with no final notice on record) starts the count today;
    going back below Final clears it, so the final notice must come again.
    """
    if new_status == InvoiceStatus.FINAL:
        return today
    if new_status == InvoiceStatus.COLLECTIONS:
        return previous_final_on or today
    if new_status in (InvoiceStatus.UNPAID, InvoiceStatus.FIRST, InvoiceStatus.SECOND):
        return None
    return previous_final_on


async def change_invoice_status(
    ctx: Context, actor: Actor, invoice_id: int, status: str, *, reason: str = ""
) -> InvoiceRecord:
    """A person sets an open invoice's status; billing automation carries on from there.

    Paid comes only from payments and Cancelled from `cancel_invoice`, so money and claim
    slots stay consistent. Setting a status re-arms the overdue notices from that point (the
    seed's example: an invoice reset from Second to Unpaid gets the first notice again).
    """
    require(actor, Permission.CREATE_INVOICES)
    if status not in MANUAL_STATUSES:
        raise ValidationError(
            _(
                "Choose Unpaid, 1st Notice, 2nd Notice, Final Notice or Collections; "
                "record a payment to mark an invoice paid, or cancel it."
            ),
            field="status",
        )
    invoice = await existing_invoice(ctx, invoice_id, lock=True)
    if invoice.status not in OPEN_STATUSES:
        raise ConflictError(
            _(
                "Invoice {number} is {status}; only open invoices change status.",
                number=invoice.number,
                status=InvoiceStatus(invoice.status).label.lower(),
            )
        )
    if invoice.status == status:
        return invoice
    before = invoice.status
    invoice.status = status
    invoice.automation_epoch += 1
    invoice.final_notice_on = final_notice_after_manual_change(
        status, invoice.final_notice_on, ctx.today()
    )
    await _log_change(
        ctx,
        actor,
        invoice,
        "status_changed",
        "status",
        before,
        status,
        comment=reason.strip() or None,
    )
    return invoice


async def change_due_date(
    ctx: Context, actor: Actor, invoice_id: int, due_date: date
) -> InvoiceRecord:
    """Move an open invoice's due date; reminders are keyed by due date, so they re-arm."""
    require(actor, Permission.CREATE_INVOICES)
    invoice = await existing_invoice(ctx, invoice_id, lock=True)
    if invoice.status not in OPEN_STATUSES:
        raise ConflictError(
            _("Invoice {number} is closed; its due date can't change.", number=invoice.number)
        )
    today = ctx.today()
    if due_date > today + timedelta(days=MAX_DUE_DAYS):
        raise ValidationError(_("The due date must be within three years."), field="due_date")
    if invoice.due_date == due_date:
        return invoice
    before = None if invoice.due_date is None else invoice.due_date.isoformat()
    invoice.due_date = due_date
    await _log_change(
        ctx, actor, invoice, "due_date_changed", "due_date", before, due_date.isoformat()
    )
    return invoice


async def _log_change(
    ctx: Context,
    actor: Actor,
    invoice: InvoiceRecord,
    action: str,
    field: str,
    before: Any,
    after: Any,
    *,
    comment: str | None = None,
) -> None:
    """The activity entry for one field a person changed."""
    await ctx.store.activity.log(
        actor,
        "invoice",
        invoice.id,
        action,
        before={field: before},
        after={field: after},
        comment=comment,
    )


def check_override_gates(actor: Actor, coverage: CoverageContext) -> None:
    """Both gates: the policy allows overrides and the actor's role grants the permission."""
    if not coverage.allow_override:
        raise PermissionDenied(_("This policy does not allow claim-cap overrides."))
    require(actor, Permission.OVERRIDE_CLAIM_CAP)
