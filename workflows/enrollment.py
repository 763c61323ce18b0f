"""Insurance enrollment: families enroll a student in a policy's term and pay its premium.

Rules are plain functions; the use cases below run them in one unit of work. Coverage starts
when the premium is paid in full (or at enrollment, when the policy says so, the premium is
zero or it is waived). An enrollment's `term_start` is moved to the day its coverage began, so
`UnitOfWork.insurance.coverage_on` (which reads the enrollment's own dates) never covers an
incident from before the premium was paid.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any

from workflows.adjustments import apply_waiver
from workflows.errors import ConflictError, NotFound, ValidationError
from workflows.i18n import N_, _
from workflows.invoices import (
    OPEN_STATUSES,
    InvoiceKind,
    InvoiceStatus,
    IssueInvoice,
    NoticeTemplate,
    balance_of,
    cancel_invoice,
    issue_invoice,
)
from workflows.money import format_cents
from workflows.permissions import Actor, Permission, require
from workflows.ports import (
    Context,
    EnrollmentRecord,
    InvoiceLineSpec,
    InvoiceRecord,
    NewEnrollment,
    PolicyRecord,
)

MAX_WAIVER_REASON = 200  # insurance_enrollments.premium_waiver_reason
CONFIRMATION = NoticeTemplate.ENROLLMENT_CONFIRMATION
EXPIRING = NoticeTemplate.COVERAGE_EXPIRING


class CoverageStarts(StrEnum):
    ON_PAYMENT = "on_payment"  # when the premium is paid in full
    IMMEDIATELY = "immediately"  # at enrollment

    @property
    def label(self) -> str:
        return _(COVERAGE_STARTS_LABELS[self.value])


class EnrollmentStatus(StrEnum):
    PENDING_PAYMENT = "pending_payment"
    ACTIVE = "active"
    CANCELLED = "cancelled"

    @property
    def label(self) -> str:
        return _(ENROLLMENT_STATUS_LABELS[self.value])


COVERAGE_STARTS_LABELS: dict[str, str] = {
    "on_payment": N_("when the premium is paid"),
    "immediately": N_("at enrollment"),
}
ENROLLMENT_STATUS_LABELS: dict[str, str] = {
    "pending_payment": N_("awaiting premium"),
    "active": N_("active"),
    "cancelled": N_("cancelled"),
}


class EnrollmentSource(StrEnum):
    STAFF = "staff"  # a person in Slack
    IMPORT = "import"  # `devicecare insurance import`


# --- rules ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Term:
    label: str
    start: date
    end: date


def term_of(policy: PolicyRecord) -> Term | None:
    """The policy's term, or None when it has none (it can't take enrollments then)."""
    if policy.term_start is None or policy.term_end is None:
        return None
    label = policy.term_label or f"{policy.term_start.year}-{policy.term_end.year}"
    return Term(label, policy.term_start, policy.term_end)


def enrollable_term(policy: PolicyRecord) -> Term:
    """The term a new enrollment gets; refuses inactive policies and policies without one."""
    if not policy.active:
        raise ValidationError(
            _("{policy} is no longer offered.", policy=policy.name), field="policy"
        )
    term = term_of(policy)
    if term is None:
        raise ValidationError(
            _(
                "{policy} has no term set; set its term before enrolling students.",
                policy=policy.name,
            ),
            field="policy",
        )
    return term


def window_open(policy: PolicyRecord, day: date) -> bool:
    """Enrollment is open from the opening day to the closing day (both included) and never
    after the term has ended; a missing end of the window leaves that side open."""
    if policy.enroll_opens_on is not None and day < policy.enroll_opens_on:
        return False
    if policy.enroll_closes_on is not None and day > policy.enroll_closes_on:
        return False
    return policy.term_end is None or day <= policy.term_end


def check_window(policy: PolicyRecord, day: date) -> None:
    if window_open(policy, day):
        return
    opens, closes = policy.enroll_opens_on, policy.enroll_closes_on
    if opens is not None and day < opens:
        message = _(
            "Enrollment in {policy} opens on {day}.",
            policy=policy.name,
            day=f"{opens:%b} {opens.day}, {opens.year}",
        )
    elif closes is not None and day > closes:
        message = _(
            "Enrollment in {policy} closed on {day}.",
            policy=policy.name,
            day=f"{closes:%b} {closes.day}, {closes.year}",
        )
    else:
        message = _(
            "The term of {policy} has ended; it takes no more enrollments.", policy=policy.name
        )
    raise ValidationError(message, field="policy")


def initial_status(coverage_starts: str, premium_cents: int, waived: bool) -> EnrollmentStatus:
    """Active at once unless coverage waits for a premium that is owed."""
    if CoverageStarts(coverage_starts) is CoverageStarts.IMMEDIATELY:
        return EnrollmentStatus.ACTIVE
    if premium_cents <= 0 or waived:
        return EnrollmentStatus.ACTIVE
    return EnrollmentStatus.PENDING_PAYMENT


def covered_from(term: Term, activated_on: date) -> date:
    """Coverage starts on the later of the term's first day and the day it was activated
    (kept inside the term, so the enrollment's dates stay in order)."""
    return min(max(term.start, activated_on), term.end)


def premium_lines(policy_name: str, term_label: str, premium_cents: int) -> tuple[InvoiceLineSpec]:
    return (
        InvoiceLineSpec(
            description=f"{policy_name} premium, {term_label}",
            kind="premium",
            unit_cents=premium_cents,
        ),
    )


def clean_waiver_reason(reason: str | None) -> str | None:
    """None or blank means no waiver; otherwise one line, within the column's length."""
    text = " ".join((reason or "").split())
    if not text:
        return None
    if len(text) > MAX_WAIVER_REASON:
        raise ValidationError(
            _("Keep the waiver reason under {max} characters.", max=MAX_WAIVER_REASON),
            field="waiver_reason",
        )
    return text


def notice_context(
    policy_name: str, enrollment: EnrollmentRecord, *, waived: bool
) -> dict[str, Any]:
    """What the enrollment notices show (templates read it as `extra`)."""
    return {
        "enrollment_id": enrollment.id,
        "policy_name": policy_name,
        "term_label": enrollment.term_label,
        "term_end": enrollment.term_end.isoformat(),
        "covered_from": enrollment.term_start.isoformat(),
        "premium_waived": waived,
        "waiver_reason": enrollment.premium_waiver_reason,
    }


# --- use cases --------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnrollStudent:
    student_id: int
    policy_id: int
    waiver_reason: str | None = None
    source: EnrollmentSource = EnrollmentSource.STAFF


@dataclass(frozen=True)
class Enrolled:
    enrollment: EnrollmentRecord
    policy: PolicyRecord
    invoice: InvoiceRecord | None  # the premium invoice (None when nothing is charged)
    created: bool
    notices: tuple[str, ...] = ()

    @property
    def premium_waived(self) -> bool:
        return self.enrollment.premium_waiver_reason is not None


async def _policy(ctx: Context, policy_id: int) -> PolicyRecord:
    policy = await ctx.store.enrollments.policy(policy_id)
    if policy is None:
        raise NotFound(
            _("Insurance policy #{policy_id} doesn't exist.", policy_id=policy_id), field="policy"
        )
    return policy


async def check_enrollment(
    ctx: Context, actor: Actor, cmd: EnrollStudent
) -> tuple[PolicyRecord, Term, EnrollmentRecord | None]:
    """Everything `enroll_student` checks before it writes; the existing live enrollment, if
    any. Used alone by an import's validate step, which must write nothing."""
    require(actor, Permission.MANAGE_ENROLLMENTS)
    if await ctx.store.people.student(cmd.student_id) is None:
        raise NotFound(
            _("Student #{student_id} doesn't exist.", student_id=cmd.student_id), field="student"
        )
    policy = await _policy(ctx, cmd.policy_id)
    term = enrollable_term(policy)
    existing = await ctx.store.enrollments.live(cmd.student_id, policy.id, term.end)
    if existing is not None:
        return policy, term, existing
    check_window(policy, ctx.today())
    if clean_waiver_reason(cmd.waiver_reason) is not None:
        require(actor, Permission.WAIVE_CHARGES)
    return policy, term, None


async def enroll_student(ctx: Context, actor: Actor, cmd: EnrollStudent) -> Enrolled:
    """Enroll a student in a policy's term and bill the premium; repeats return the first."""
    store = ctx.store
    require(actor, Permission.MANAGE_ENROLLMENTS)
    # One enrollment at a time per student, so a redelivery or a double click finds the first.
    if await store.enrollments.lock_student(cmd.student_id) is None:
        raise NotFound(
            _("Student #{student_id} doesn't exist.", student_id=cmd.student_id), field="student"
        )
    policy, term, existing = await check_enrollment(ctx, actor, cmd)
    if existing is not None:
        return Enrolled(
            existing, policy, await store.enrollments.premium_invoice(existing.id), created=False
        )
    reason = clean_waiver_reason(cmd.waiver_reason)
    premium = policy.premium_cents
    status = initial_status(policy.coverage_starts, premium, waived=reason is not None)
    enrollment = await store.enrollments.add(
        NewEnrollment(
            student_id=cmd.student_id,
            policy_id=policy.id,
            term_label=term.label,
            term_start=term.start,
            term_end=term.end,
            status=EnrollmentStatus.PENDING_PAYMENT,
            enrolled_by_id=actor.staff_id,
            source=cmd.source.value,
            premium_waiver_reason=reason if premium > 0 else None,
        )
    )
    await store.activity.log(
        actor,
        "insurance_enrollment",
        enrollment.id,
        "enrolled",
        after={
            "student_id": cmd.student_id,
            "policy_id": policy.id,
            "term_label": term.label,
            "premium_cents": premium,
            "premium_waived": reason is not None and premium > 0,
            "source": cmd.source.value,
        },
        comment=reason,
    )
    invoice: InvoiceRecord | None = None
    notices: list[str] = []
    if premium > 0:
        created = await issue_invoice(
            ctx,
            actor,
            IssueInvoice(
                student_id=cmd.student_id,
                kind=InvoiceKind.PREMIUM,
                lines=premium_lines(policy.name, term.label, premium),
                premium_enrollment_id=enrollment.id,
                idempotency_key=f"premium:{enrollment.id}",
                # A waived premium is settled below; the family hears about the coverage.
                send_notice=reason is None,
            ),
        )
        invoice = created.invoice
        notices.extend(created.notices)
        if reason is not None:
            locked = await store.invoices.get(invoice.id, lock=True)
            assert locked is not None
            await apply_waiver(
                ctx,
                actor,
                locked,
                balance_of(locked),
                f"Premium waived: {reason}",
                idempotency_key=f"premium-waiver:{enrollment.id}",
            )
            invoice = locked
    if status is EnrollmentStatus.ACTIVE:
        notices.extend(await _activate(ctx, actor, enrollment, policy, invoice))
    return Enrolled(enrollment, policy, invoice, created=True, notices=tuple(notices))


async def _activate(
    ctx: Context,
    actor: Actor,
    enrollment: EnrollmentRecord,
    policy: PolicyRecord,
    invoice: InvoiceRecord | None,
) -> tuple[str, ...]:
    """Coverage starts today (or at the term's start); the family is told, when it can be."""
    term = Term(enrollment.term_label, enrollment.term_start, enrollment.term_end)
    before = {"status": enrollment.status, "term_start": enrollment.term_start.isoformat()}
    enrollment.status = EnrollmentStatus.ACTIVE
    enrollment.activated_at = ctx.now()
    enrollment.term_start = covered_from(term, ctx.today())
    await ctx.store.activity.log(
        actor,
        "insurance_enrollment",
        enrollment.id,
        "activated",
        before=before,
        after={"status": enrollment.status, "term_start": enrollment.term_start.isoformat()},
    )
    if invoice is None:
        return ()  # nothing was billed, so there is no invoice to tie an email to
    waived = enrollment.premium_waiver_reason is not None
    await ctx.store.outbox.queue_notice(
        CONFIRMATION,
        invoice.id,
        f"enrollment-confirmation:{enrollment.id}",
        notice_context(policy.name, enrollment, waived=waived),
    )
    return (CONFIRMATION,)


async def activate_on_premium_paid(
    ctx: Context, actor: Actor, invoice: InvoiceRecord
) -> EnrollmentRecord | None:
    """A premium invoice was settled: its enrollment's coverage starts now. Idempotent; returns
    the enrollment when this call activated it."""
    if invoice.kind != InvoiceKind.PREMIUM or invoice.premium_enrollment_id is None:
        return None
    if invoice.status != InvoiceStatus.PAID or balance_of(invoice) != 0:
        return None
    enrollment = await ctx.store.enrollments.get(invoice.premium_enrollment_id, lock=True)
    if enrollment is None or enrollment.status != EnrollmentStatus.PENDING_PAYMENT:
        return None
    policy = await _policy(ctx, enrollment.policy_id)
    await _activate(ctx, actor, enrollment, policy, invoice)
    return enrollment


async def on_invoice_settled(ctx: Context, actor: Actor, invoice: InvoiceRecord) -> None:
    """Call after any change that may have settled an invoice (payment, waiver); does nothing
    unless it is a premium invoice now paid in full."""
    await activate_on_premium_paid(ctx, actor, invoice)


async def cancel_enrollment(
    ctx: Context, actor: Actor, enrollment_id: int, *, reason: str
) -> EnrollmentRecord:
    """End an enrollment; an unpaid premium invoice is cancelled with it."""
    require(actor, Permission.MANAGE_ENROLLMENTS)
    text = " ".join(reason.split())
    if not text:
        raise ValidationError(_("Say why the enrollment is cancelled."), field="reason")
    enrollment = await ctx.store.enrollments.get(enrollment_id, lock=True)
    if enrollment is None:
        raise NotFound(_("Enrollment #{enrollment_id} doesn't exist.", enrollment_id=enrollment_id))
    if enrollment.status == EnrollmentStatus.CANCELLED:
        return enrollment
    invoice = await ctx.store.enrollments.premium_invoice(enrollment.id)
    if invoice is not None and invoice.status in OPEN_STATUSES:
        if invoice.paid_cents > 0:
            raise ConflictError(
                _(
                    "{paid} was paid on premium invoice {number}; refund it before cancelling "
                    "the enrollment.",
                    paid=format_cents(invoice.paid_cents),
                    number=invoice.number,
                )
            )
        await cancel_invoice(ctx, actor, invoice.id, reason=f"Enrollment cancelled: {text}")
    before = {"status": enrollment.status}
    enrollment.status = EnrollmentStatus.CANCELLED
    await ctx.store.activity.log(
        actor,
        "insurance_enrollment",
        enrollment.id,
        "cancelled",
        before=before,
        after={"status": enrollment.status},
        comment=text,
    )
    return enrollment


@dataclass(frozen=True)
class ReminderTotals:
    queued: int = 0  # enrollments whose family was reminded
    no_invoice: int = 0  # enrollments with no premium invoice to tie an email to


async def send_expiry_reminders(ctx: Context, actor: Actor, day: date) -> ReminderTotals:
    """Remind families whose coverage ends within their policy's reminder days; each
    enrollment (one per term) is reminded once."""
    queued = skipped = 0
    for enrollment in await ctx.store.enrollments.expiring(day):
        invoice = await ctx.store.enrollments.premium_invoice(enrollment.id)
        if invoice is None:
            skipped += 1
            continue
        policy = await _policy(ctx, enrollment.policy_id)
        waived = enrollment.premium_waiver_reason is not None
        context = notice_context(policy.name, enrollment, waived=waived)
        context["days_left"] = (enrollment.term_end - day).days
        await ctx.store.outbox.queue_notice(
            EXPIRING,
            invoice.id,
            f"coverage-expiring:{enrollment.id}:{enrollment.term_end.isoformat()}",
            context,
        )
        enrollment.expiry_reminded_on = day
        await ctx.store.activity.log(
            actor,
            "insurance_enrollment",
            enrollment.id,
            "expiry_reminder_queued",
            after={"term_end": enrollment.term_end.isoformat(), "day": day.isoformat()},
        )
        queued += 1
    return ReminderTotals(queued=queued, no_invoice=skipped)


# --- configuring a policy's term, premium and window --------------------------------------------

MAX_REMINDER_DAYS = 365


@dataclass(frozen=True)
class PolicySetup:
    """What `devicecare insurance policy set` may change; None leaves a value as it is."""

    name: str
    term_label: str | None = None
    term_start: date | None = None
    term_end: date | None = None
    premium_cents: int | None = None
    enroll_opens_on: date | None = None
    enroll_closes_on: date | None = None
    coverage_starts: CoverageStarts | None = None
    expiry_reminder_days: int | None = None
    no_expiry_reminder: bool = False
    active: bool | None = None
    # Insure the devices whose own coverage plan starts with this (e.g. "AppleCare+");
    # "" stops insuring devices.
    device_plan: str | None = None


def check_policy_setup(policy: PolicyRecord) -> None:
    """The rules a policy's enrollment settings must keep, checked after a change."""
    if (policy.term_start is None) != (policy.term_end is None):
        raise ValidationError(_("Set both the term's start and its end."), field="term")
    if policy.term_start and policy.term_end and policy.term_end < policy.term_start:
        raise ValidationError(_("The term ends before it starts."), field="term")
    if policy.term_label is not None and not 0 < len(policy.term_label) <= 60:
        raise ValidationError(_("The term label must be 1 to 60 characters."), field="term_label")
    if policy.premium_cents < 0:
        raise ValidationError(_("The premium can't be negative."), field="premium")
    opens, closes = policy.enroll_opens_on, policy.enroll_closes_on
    if opens is not None and closes is not None and closes < opens:
        raise ValidationError(_("The enrollment window closes before it opens."), field="window")
    if closes is not None and policy.term_end is not None and closes > policy.term_end:
        raise ValidationError(
            _("The enrollment window must close by the end of the term."), field="window"
        )
    days = policy.expiry_reminder_days
    if days is not None and not 0 <= days <= MAX_REMINDER_DAYS:
        raise ValidationError(
            _("Reminder days must be between 0 and {max}.", max=MAX_REMINDER_DAYS), field="reminder"
        )
    CoverageStarts(policy.coverage_starts)


_SETUP_FIELDS = (
    "term_label",
    "term_start",
    "term_end",
    "premium_cents",
    "enroll_opens_on",
    "enroll_closes_on",
    "coverage_starts",
    "expiry_reminder_days",
    "active",
    "device_plan",
)


def _shown(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value


async def configure_policy(
    ctx: Context, actor: Actor, setup: PolicySetup
) -> tuple[PolicyRecord, dict[str, tuple[Any, Any]]]:
    """Create the policy named `setup.name` or change it; returns it and what changed."""
    require(actor, Permission.MANAGE_POLICIES)
    name = " ".join(setup.name.split())
    if not 0 < len(name) <= 200:
        raise ValidationError(_("A policy needs a name (up to 200 characters)."), field="name")
    policy = await ctx.store.enrollments.policy_by_name(name, lock=True)
    created = policy is None
    if policy is None:
        policy = await ctx.store.enrollments.add_policy(name)
    before = {f: getattr(policy, f) for f in _SETUP_FIELDS}
    wanted: dict[str, Any] = {
        "term_label": setup.term_label,
        "term_start": setup.term_start,
        "term_end": setup.term_end,
        "premium_cents": setup.premium_cents,
        "enroll_opens_on": setup.enroll_opens_on,
        "enroll_closes_on": setup.enroll_closes_on,
        "coverage_starts": None if setup.coverage_starts is None else setup.coverage_starts.value,
        "expiry_reminder_days": setup.expiry_reminder_days,
        "active": setup.active,
    }
    if setup.device_plan is not None:
        plan = " ".join(setup.device_plan.split())
        if len(plan) > 200:
            raise ValidationError(_("A device plan is up to 200 characters."), field="device_plan")
        policy.device_plan = plan or None
    for name_, value in wanted.items():
        if value is not None:
            setattr(policy, name_, value)
    if setup.no_expiry_reminder:
        policy.expiry_reminder_days = None
    check_policy_setup(policy)
    changes = {
        f: (_shown(before[f]), _shown(getattr(policy, f)))
        for f in _SETUP_FIELDS
        if before[f] != getattr(policy, f)
    }
    if created or changes:
        await ctx.store.activity.log(
            actor,
            "insurance_policy",
            policy.id,
            "created" if created else "changed",
            before=None if created else {f: old for f, (old, _new) in changes.items()},
            after={f: new for f, (_old, new) in changes.items()},
        )
    return policy, changes
