"""Billing reports for the business office: invoices by automation status, cancelled invoices
(with the Auto-Cancelled designation) and one invoice's timeline of what happened and was sent.

Read-only. Counts and sums are aggregated in SQL; listings are paged with limit and offset, so
the cost of a report doesn't grow with the number of invoices it summarises.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from storage import models as m
from storage.billing_run_queries import AUTOMATION_LABEL, DIGEST_TEMPLATE
from storage.notice_queries import template_label
from storage.session_of import Db, session_of
from workflows.billing import Step, step_label
from workflows.errors import ValidationError
from workflows.i18n import N_, _
from workflows.invoices import OPEN_STATUSES, InvoiceStatus
from workflows.labels import invoice_status_label, payment_method_label
from workflows.money import format_cents
from workflows.reports import Audience, ReportSpec

# Report order: the way an invoice moves along.
STATUS_ORDER: tuple[str, ...] = tuple(
    s.value
    for s in (
        InvoiceStatus.UNPAID,
        InvoiceStatus.FIRST,
        InvoiceStatus.SECOND,
        InvoiceStatus.FINAL,
        InvoiceStatus.COLLECTIONS,
    )
)
_OPEN = sorted(s.value for s in OPEN_STATUSES)
CANCEL_ACTIONS = ("cancelled", "auto_cancelled")
DIGESTED = "digested"
MAX_RANGE_DAYS = 3 * 366
_NUMBER_RE = re.compile(r"^\s*([A-Za-z]+)\s*-?\s*0*([0-9]{1,12})\s*$")


def status_label(status: str) -> str:
    return invoice_status_label(status)


def student_name(first: str | None, last: str | None) -> str:
    """A student as the reports name them."""
    return f"{first or ''} {last or ''}".strip() or "Unknown student"


# --- invoices by automation status -------------------------------------------------------------

AUTOMATION = ReportSpec(
    name="automation",
    title=N_("Open invoices by automation"),
    description=N_(
        "Open invoices by automation on/off and status (counts and balances), and the list."
    ),
    audience=Audience.FINANCIAL,
    headers=(
        "invoice_number",
        "student",
        "status",
        "due_date",
        "balance",
        "automation",
        "reminder_count",
        "last_reminder_at",
    ),
    money=frozenset({"balance"}),
    range_means="open now",
)


@dataclass(frozen=True)
class AutomationGroup:
    automation_enabled: bool
    status: str
    count: int
    balance_cents: int


@dataclass(frozen=True)
class AutomationRow:
    invoice_id: int
    number: str
    student: str
    status: str
    due_date: date | None
    balance_cents: int
    automation_enabled: bool
    reminder_count: int
    last_reminder_at: datetime | None

    def values(self) -> tuple[Any, ...]:
        """The row as AUTOMATION's columns hold it."""
        return (
            self.number,
            self.student,
            status_label(self.status),
            self.due_date,
            self.balance_cents,
            "on" if self.automation_enabled else "off",
            self.reminder_count,
            self.last_reminder_at,
        )


@dataclass(frozen=True)
class AutomationReport:
    """Open invoices: per (automation, status) figures, and one page of the listing."""

    groups: tuple[AutomationGroup, ...]  # automation on first, statuses in ladder order
    rows: tuple[AutomationRow, ...]
    listed: int  # open invoices matching the listing's filter, over all pages
    automation: bool | None  # the listing's filter: None lists both
    limit: int
    offset: int

    def count(self, automation_enabled: bool) -> int:
        return sum(g.count for g in self.groups if g.automation_enabled is automation_enabled)

    def balance_cents(self, automation_enabled: bool) -> int:
        return sum(
            g.balance_cents for g in self.groups if g.automation_enabled is automation_enabled
        )


def _invoice_listing(*columns: Any) -> Select[Any]:
    """A listing of invoices: each one's id and number and its student's name, then `columns`."""
    inv = m.Invoice
    return select(inv.id, inv.number, m.Student.first_name, m.Student.last_name, *columns).join(
        m.Student, m.Student.id == inv.student_id
    )


def _open_invoices() -> Any:
    return m.Invoice.status.in_(_OPEN)


async def automation_report(
    db: Db,
    *,
    automation: bool | None = None,
    limit: int = 50,
    offset: int = 0,
) -> AutomationReport:
    """Open invoices by automation on/off and status, and the listing filtered by `automation`."""
    session = session_of(db)
    inv = m.Invoice
    balance = m.invoice_balance()
    grouped = (
        await session.execute(
            select(
                inv.automation_enabled,
                inv.status,
                func.count(inv.id),
                func.coalesce(func.sum(balance), 0),
            )
            .where(_open_invoices())
            .group_by(inv.automation_enabled, inv.status)
        )
    ).all()
    groups = sorted(
        (AutomationGroup(bool(on), status, int(n), int(cents)) for on, status, n, cents in grouped),
        key=lambda g: (not g.automation_enabled, _status_rank(g.status)),
    )
    listed = [_open_invoices()]
    if automation is not None:
        listed.append(inv.automation_enabled.is_(automation))
    total = sum(g.count for g in groups if automation is None or g.automation_enabled is automation)
    rows: list[AutomationRow] = []
    if limit > 0:
        stmt = (
            _invoice_listing(
                inv.status,
                inv.due_date,
                balance.label("balance"),
                inv.automation_enabled,
                inv.reminder_count,
                inv.last_reminder_at,
            )
            .where(*listed)
            # Most overdue first; invoices without a due date last (same on both backends).
            .order_by(inv.due_date.is_(None), inv.due_date, inv.id)
            .limit(limit)
            .offset(max(offset, 0))
        )
        rows = [
            AutomationRow(
                invoice_id=r.id,
                number=r.number,
                student=student_name(r.first_name, r.last_name),
                status=r.status,
                due_date=r.due_date,
                balance_cents=int(r.balance),
                automation_enabled=bool(r.automation_enabled),
                reminder_count=int(r.reminder_count),
                last_reminder_at=r.last_reminder_at,
            )
            for r in (await session.execute(stmt)).all()
        ]
    return AutomationReport(
        groups=tuple(groups),
        rows=tuple(rows),
        listed=total,
        automation=automation,
        limit=limit,
        offset=offset,
    )


def _status_rank(status: str) -> int:
    return STATUS_ORDER.index(status) if status in STATUS_ORDER else len(STATUS_ORDER)


# --- cancelled invoices ------------------------------------------------------------------------


@dataclass(frozen=True)
class CancelledRow:
    invoice_id: int
    number: str
    student: str
    amount_cents: int
    cancelled_at: datetime
    auto_cancelled: bool
    cancelled_by: str | None  # the activity entry's actor label
    reason: str | None  # its comment

    @property
    def designation(self) -> str:
        return _("Auto-Cancelled") if self.auto_cancelled else _("Cancelled")

    def values(self) -> tuple[Any, ...]:
        """The row as CANCELLED's columns hold it."""
        return (
            self.number,
            self.student,
            self.amount_cents,
            self.cancelled_at,
            "yes" if self.auto_cancelled else "no",
            self.cancelled_by or "",
            self.reason or "",
        )


@dataclass(frozen=True)
class CancelledReport:
    date_from: date
    date_to: date
    rows: tuple[CancelledRow, ...]
    auto_count: int
    auto_cents: int
    manual_count: int
    manual_cents: int
    limit: int | None
    offset: int

    @property
    def count(self) -> int:
        return self.auto_count + self.manual_count

    @property
    def amount_cents(self) -> int:
        return self.auto_cents + self.manual_cents


def day_bounds(date_from: date, date_to: date, tz: tzinfo) -> tuple[datetime, datetime]:
    """[start of date_from, start of the day after date_to) in the district's zone, as UTC."""
    start = datetime.combine(date_from, time.min, tzinfo=tz).astimezone(UTC)
    end = datetime.combine(date_to + timedelta(days=1), time.min, tzinfo=tz).astimezone(UTC)
    return start, end


def check_range(date_from: date, date_to: date) -> None:
    if date_to < date_from:
        raise ValidationError(_("The range ends before it starts."), field="date_to")
    if (date_to - date_from).days > MAX_RANGE_DAYS:
        raise ValidationError(_("Choose a range of three years or less."), field="date_to")


async def cancelled_report(
    db: Db,
    date_from: date,
    date_to: date,
    *,
    tz: tzinfo,
    limit: int | None = None,
    offset: int = 0,
) -> CancelledReport:
    """Invoices cancelled from `date_from` to `date_to` (both included, district days)."""
    session = session_of(db)
    check_range(date_from, date_to)
    start, end = day_bounds(date_from, date_to, tz)
    by_kind, rows = await cancelled_invoices(
        session,
        [m.Invoice.cancelled_at >= start, m.Invoice.cancelled_at < end],
        limit=limit,
        offset=offset,
    )
    auto_count, auto_cents = by_kind.get(True, (0, 0))
    manual_count, manual_cents = by_kind.get(False, (0, 0))
    return CancelledReport(
        date_from=date_from,
        date_to=date_to,
        rows=tuple(rows),
        auto_count=auto_count,
        auto_cents=auto_cents,
        manual_count=manual_count,
        manual_cents=manual_cents,
        limit=limit,
        offset=offset,
    )


async def cancelled_invoices(
    session: AsyncSession,
    where: Sequence[ColumnElement[bool]],
    *,
    limit: int | None = None,
    offset: int = 0,
) -> tuple[dict[bool, tuple[int, int]], list[CancelledRow]]:
    """The cancelled invoices matching `where` (their range and scope): count and amount per
    designation (Auto-Cancelled or not), and the listing in cancellation order.

    Who and why come from the invoice's latest cancellation entry in the activity log; the
    Auto-Cancelled designation is the invoice's own flag.
    """
    inv = m.Invoice
    in_range = (inv.status == InvoiceStatus.CANCELLED.value, *where)
    totals = (
        await session.execute(
            select(
                inv.auto_cancelled, func.count(inv.id), func.coalesce(func.sum(inv.total_cents), 0)
            )
            .where(*in_range)
            .group_by(inv.auto_cancelled)
        )
    ).all()
    by_kind = {bool(auto): (int(n), int(cents)) for auto, n, cents in totals}
    if limit is not None and limit <= 0:
        return by_kind, []
    entry = m.ActivityEntry
    latest = (
        select(entry.entity_id.label("invoice_id"), func.max(entry.id).label("entry_id"))
        .where(
            entry.entity_type == "invoice",
            entry.action.in_(CANCEL_ACTIONS),
            entry.entity_id.in_(select(inv.id).where(*in_range)),
        )
        .group_by(entry.entity_id)
        .subquery()
    )
    stmt = (
        _invoice_listing(
            inv.total_cents, inv.cancelled_at, inv.auto_cancelled, entry.actor_label, entry.comment
        )
        .outerjoin(latest, latest.c.invoice_id == inv.id)
        .outerjoin(entry, entry.id == latest.c.entry_id)
        .where(*in_range)
        .order_by(inv.cancelled_at, inv.id)
    )
    if offset > 0:
        stmt = stmt.offset(offset)
    if limit is not None:
        stmt = stmt.limit(limit)
    rows = [
        CancelledRow(
            invoice_id=r.id,
            number=r.number,
            student=student_name(r.first_name, r.last_name),
            amount_cents=int(r.total_cents),
            cancelled_at=r.cancelled_at,
            auto_cancelled=bool(r.auto_cancelled),
            cancelled_by=r.actor_label,
            reason=r.comment,
        )
        for r in (await session.execute(stmt)).all()
    ]
    return by_kind, rows


# --- one invoice's timeline --------------------------------------------------------------------


class EventKind(StrEnum):
    CREATED = "created"
    STEP = "step"  # a billing-run step (reminder, overdue notice, collections, auto-cancel)
    STATUS = "status"  # a status change, by a person or by the billing run
    PAYMENT = "payment"
    NOTICE = "notice"  # an email to a guardian
    ACTIVITY = "activity"  # any other activity-log entry


# Events at the same instant read in this order (a run's step, then its status change, then the
# email it queued; a payment before its receipt).
_RANK = {kind: i for i, kind in enumerate(EventKind)}


@dataclass(frozen=True)
class TimelineEvent:
    at: datetime
    kind: EventKind
    summary: str
    actor: str | None = None
    note: str | None = None  # a reason, a comment or an error
    ref_id: int | None = None  # the step, notice, payment or activity row behind it


@dataclass(frozen=True)
class InvoiceHeader:
    id: int
    number: str
    student: str
    status: str
    total_cents: int
    paid_cents: int
    waived_cents: int
    refunded_cents: int
    due_date: date | None
    automation_enabled: bool
    auto_cancelled: bool
    cancelled_at: datetime | None
    reminder_count: int
    last_reminder_at: datetime | None
    created_at: datetime

    @property
    def balance_cents(self) -> int:
        return self.total_cents - self.paid_cents - self.waived_cents

    @property
    def status_label(self) -> str:
        if self.status == InvoiceStatus.CANCELLED and self.auto_cancelled:
            return "Auto-Cancelled"
        return status_label(self.status)

    @property
    def is_open(self) -> bool:
        return self.status in _OPEN


@dataclass(frozen=True)
class InvoiceTimeline:
    invoice: InvoiceHeader
    events: tuple[TimelineEvent, ...]  # oldest first


async def find_invoice_id(db: Db, number: str) -> int | None:
    """The invoice with this number (any case); "inv-1" also finds INV-000001."""
    session = session_of(db)
    text = number.strip().upper()
    if not text or len(text) > 40:
        return None
    wanted = [text]
    match = _NUMBER_RE.match(text)
    if match is not None:
        wanted.append(f"{match.group(1)}-{int(match.group(2)):06d}")
    # Exact first (the unique index on number); then any case, for a lower-case prefix.
    for column in (m.Invoice.number, func.upper(m.Invoice.number)):
        rows = (await session.execute(select(m.Invoice.id, column).where(column.in_(wanted)))).all()
        found = {str(value).upper(): int(invoice_id) for invoice_id, value in rows}
        for candidate in wanted:
            if candidate in found:
                return found[candidate]
    return None


def _when(at: datetime | None, tz: tzinfo) -> str:
    return "" if at is None else at.astimezone(tz).strftime("%Y-%m-%d %H:%M")


def _template_label(template: str) -> str:
    if template == DIGEST_TEMPLATE:
        return _("Digest")
    return template_label(template)


def delivery_state(
    status: str,
    sent_at: datetime | None,
    bounced_at: datetime | None,
    viewed_at: datetime | None,
    tz: tzinfo,
) -> str:
    """ "sent 2026-03-18 06:05, viewed 2026-03-18 19:40" / "bounced …" / "queued"."""
    if status == "sent":
        text = _("sent {at}", at=_when(sent_at, tz)).rstrip()
        if viewed_at is None:
            return text
        return _("{sent}, viewed {at}", sent=text, at=_when(viewed_at, tz))
    if status == "bounced":
        return _("bounced {at}", at=_when(bounced_at, tz)).rstrip()
    if status == "held":
        return _("held until the pending decision")
    return status


def _step_summary(row: Any) -> str:
    try:
        label = step_label(row.step)
    except ValueError:
        label = row.step
    parts = [label, _("billing run {day}", day=row.run_day.isoformat())]
    if row.days_overdue is not None and row.days_overdue > 0:
        parts.append(_("{days} days overdue", days=row.days_overdue))
    emails = row.step.startswith(Step.PRE_DUE.value) or row.step in (
        Step.FIRST.value,
        Step.SECOND.value,
        Step.FINAL.value,
    )
    if emails:
        n = row.recipients
        parts.append(_("no guardian could be emailed") if n == 0 else _("{n} recipient(s)", n=n))
    return ", ".join(parts)


def _from_to(entry: m.ActivityEntry) -> tuple[str, str]:
    before = (entry.before or {}).get("status")
    after = (entry.after or {}).get("status")
    return status_label(str(before or "?")), status_label(str(after or "?"))


def _activity_event(entry: m.ActivityEntry) -> TimelineEvent | None:
    action = entry.action
    kind = EventKind.STATUS
    if action in ("status_advanced", "status_changed"):
        old, new = _from_to(entry)
        summary = _("Status {old} \u2192 {new}", old=old, new=new)
    elif action == "auto_cancelled":
        old, _new = _from_to(entry)
        summary = _("Auto-cancelled ({old} \u2192 Cancelled)", old=old)
    elif action == "cancelled":
        old, _new = _from_to(entry)
        summary = _("Cancelled ({old} \u2192 Cancelled)", old=old)
    elif action == "restored":
        old, new = _from_to(entry)
        summary = _("Restored ({old} \u2192 {new})", old=old, new=new)
    elif action == "payment_recorded":
        return None  # the payment itself is on the timeline, from the payments table
    else:
        kind = EventKind.ACTIVITY
        summary = _activity_summary(entry)
    return TimelineEvent(
        at=entry.at,
        kind=kind,
        summary=summary,
        actor=entry.actor_label,
        note=entry.comment,
        ref_id=entry.id,
    )


def _activity_summary(entry: m.ActivityEntry) -> str:
    before, after = entry.before or {}, entry.after or {}
    if entry.action == "due_date_changed":
        return _(
            "Due date {old} \u2192 {new}",
            old=before.get("due_date") or _("none"),
            new=after.get("due_date"),
        )
    if entry.action == "automation_changed":
        if after.get("automation_enabled"):
            return _("Automation turned on")
        return _("Automation turned off")
    if entry.action == "claim_cap_override_applied":
        return _override_summary(entry)
    if entry.action == "claim_cap_override_denied":
        return _(
            "Override denied by {actor}: stays {amount}",
            actor=entry.actor_label,
            amount=_cents((entry.after or {}).get("total_cents")),
        )
    adjustment = _adjustment_summary(entry.action, after)
    if adjustment is not None:
        return adjustment
    return entry.action.replace("_", " ").capitalize()


def _cents(value: Any) -> str:
    return format_cents(value) if isinstance(value, int) else "?"


def _adjustment_summary(action: str, after: dict[str, Any]) -> str | None:
    """Waivers and refunds in words; the reason is the entry's note."""
    amount = _cents(after.get("amount_cents"))
    if action == "waiver_applied":
        if after.get("status") == InvoiceStatus.PAID:
            return _("Waived \u2212{amount} (nothing left to pay)", amount=amount)
        return _("Waived \u2212{amount}", amount=amount)
    if action == "waiver_requested":
        return _("Waiver of {amount} requested, awaiting approval", amount=amount)
    if action == "waiver_denied":
        return _("Waiver of {amount} denied", amount=amount)
    if action == "waiver_withdrawn":
        return _("Waiver of {amount} withdrawn", amount=amount)
    if action == "refund_issued":
        method, reference = after.get("method"), after.get("reference")
        if method == "check" and reference:
            source = _("check #{reference}", reference=reference)
        elif method:
            name = payment_method_label(str(method)).lower()
            # A label already saying "payment" isn't repeated ("online payment").
            source = name if name.endswith("payment") else _("{method} payment", method=name)
            source += f" {reference}" if reference else ""
        else:
            source = _("a payment")
        return _("Refunded {amount} of {source}", amount=amount, source=source)
    return None


async def invoice_timeline(db: Db, invoice_id: int, *, tz: tzinfo = UTC) -> InvoiceTimeline | None:
    """Everything that happened to one invoice, oldest first; times in text are in `tz`."""
    session = session_of(db)
    creator = aliased(m.Staff)
    head = (
        await session.execute(
            select(m.Invoice, m.Student.first_name, m.Student.last_name, creator.display_name)
            .join(m.Student, m.Student.id == m.Invoice.student_id)
            .outerjoin(creator, creator.id == m.Invoice.created_by_id)
            .where(m.Invoice.id == invoice_id)
        )
    ).first()
    if head is None:
        return None
    invoice, first, last, created_by = head
    header = InvoiceHeader(
        id=invoice.id,
        number=invoice.number,
        student=student_name(first, last),
        status=invoice.status,
        total_cents=invoice.total_cents,
        paid_cents=invoice.paid_cents,
        waived_cents=invoice.waived_cents,
        refunded_cents=invoice.refunded_cents,
        due_date=invoice.due_date,
        automation_enabled=invoice.automation_enabled,
        auto_cancelled=invoice.auto_cancelled,
        cancelled_at=invoice.cancelled_at,
        reminder_count=invoice.reminder_count,
        last_reminder_at=invoice.last_reminder_at,
        created_at=invoice.created_at,
    )
    events: list[TimelineEvent] = []

    entries = (
        await session.execute(
            select(m.ActivityEntry)
            .where(
                m.ActivityEntry.entity_type == "invoice", m.ActivityEntry.entity_id == invoice_id
            )
            .order_by(m.ActivityEntry.id)
        )
    ).scalars()
    created_entry: m.ActivityEntry | None = None
    for entry in entries:
        if entry.action == "created" and created_entry is None:
            created_entry = entry
            continue
        event = _activity_event(entry)
        if event is not None:
            events.append(event)
    events.append(_created_event(header, created_entry, created_by))

    steps = (
        await session.execute(
            select(m.BillingStep)
            .where(m.BillingStep.invoice_id == invoice_id)
            .order_by(m.BillingStep.id)
        )
    ).scalars()
    events += [
        TimelineEvent(
            at=s.created_at,
            kind=EventKind.STEP,
            summary=_step_summary(s),
            actor=AUTOMATION_LABEL,
            ref_id=s.id,
        )
        for s in steps
    ]
    events += await _notice_events(session, invoice_id, tz)

    recorder = aliased(m.Staff)
    payments = (
        await session.execute(
            select(m.Payment, recorder.display_name)
            .outerjoin(recorder, recorder.id == m.Payment.recorded_by_id)
            .where(m.Payment.invoice_id == invoice_id)
            .order_by(m.Payment.id)
        )
    ).all()
    for payment, recorded_by in payments:
        ref = f" {payment.reference}" if payment.reference else ""
        events.append(
            TimelineEvent(
                at=payment.recorded_at,
                kind=EventKind.PAYMENT,
                summary=_(
                    "Payment {amount} by {method}{reference}, received {day}",
                    amount=format_cents(payment.amount_cents),
                    method=payment_method_label(payment.method).lower(),
                    reference=ref,
                    day=payment.received_on.isoformat(),
                ),
                actor=recorded_by,
                ref_id=payment.id,
            )
        )
    events.sort(key=lambda e: (e.at, _RANK[e.kind], e.ref_id or 0))
    return InvoiceTimeline(header, tuple(events))


def _created_event(
    header: InvoiceHeader, entry: m.ActivityEntry | None, created_by: str | None
) -> TimelineEvent:
    after = (entry.after or {}) if entry is not None else {}
    summary = created_summary(after, header.total_cents)
    due = after.get("due_date")
    if due:
        summary = _("{summary}, due {day}", summary=summary, day=due)
    return TimelineEvent(
        at=header.created_at if entry is None else entry.at,
        kind=EventKind.CREATED,
        summary=summary,
        actor=entry.actor_label if entry is not None else created_by,
        note=None if entry is None else entry.comment,
        ref_id=None if entry is None else entry.id,
    )


def created_summary(after: dict[str, Any], current_total_cents: int) -> str:
    """ "Invoice created for $125.00 (full price, override pending)": the amount it was created
    for (what its creation recorded, not what it is now), and how insurance stood then."""
    total = after.get("total_cents")
    if not isinstance(total, int):
        return _("Invoice created for {amount}", amount=format_cents(current_total_cents))
    insurance = after.get("insurance_cents")
    subtotal = after.get("subtotal_cents")
    if after.get("override_pending"):
        return _(
            "Invoice created for {amount} (full price, override pending)",
            amount=format_cents(total),
        )
    if isinstance(insurance, int) and insurance > 0 and isinstance(subtotal, int):
        return _(
            "Invoice created for {amount} ({subtotal} less insurance {insurance})",
            amount=format_cents(total),
            subtotal=format_cents(subtotal),
            insurance=format_cents(insurance),
        )
    return _("Invoice created for {amount}", amount=format_cents(total))


def _override_summary(entry: m.ActivityEntry) -> str:
    """ "Override approved by Admin Person: $125.00 → $25.00" (or applied at creation)."""
    before, after = entry.before or {}, entry.after or {}
    old, new = before.get("total_cents"), after.get("total_cents")
    if isinstance(old, int) and isinstance(new, int):
        return _(
            "Override approved by {actor}: {old} \u2192 {new}",
            actor=entry.actor_label,
            old=format_cents(old),
            new=format_cents(new),
        )
    return _("Claim-cap override applied (approved by {actor})", actor=entry.actor_label)


def _is_member(notice: m.Notice) -> bool:
    return notice.status == DIGESTED and notice.digest_id is not None


async def _notice_events(
    session: AsyncSession, invoice_id: int, tz: tzinfo
) -> Sequence[TimelineEvent]:
    digest = aliased(m.Notice)
    rows = (
        await session.execute(
            select(
                m.Notice,
                digest.status.label("digest_status"),
                digest.sent_at.label("digest_sent_at"),
                digest.bounced_at.label("digest_bounced_at"),
                digest.viewed_at.label("digest_viewed_at"),
            )
            .outerjoin(digest, digest.id == m.Notice.digest_id)
            .where(m.Notice.invoice_id == invoice_id)
            .order_by(m.Notice.created_at, m.Notice.id)
        )
    ).all()
    # A digest is filed under one of its invoices; it shows through the notices merged into it.
    merged_into = {r.Notice.digest_id for r in rows if _is_member(r.Notice)}
    events: list[TimelineEvent] = []
    for row in rows:
        notice: m.Notice = row.Notice
        if notice.id in merged_into:
            continue
        if notice.status == DIGESTED and notice.digest_id is None:
            delivery = _("not sent (its digest was removed)")
        elif _is_member(notice):
            state = delivery_state(
                row.digest_status or "unknown",
                row.digest_sent_at,
                row.digest_bounced_at,
                row.digest_viewed_at,
                tz,
            )
            delivery = _("in digest {digest} ({state})", digest=notice.digest_id, state=state)
        else:
            delivery = delivery_state(
                notice.status, notice.sent_at, notice.bounced_at, notice.viewed_at, tz
            )
        events.append(
            TimelineEvent(
                at=notice.created_at,
                kind=EventKind.NOTICE,
                summary=_(
                    "{template} to {address}: {delivery}",
                    template=_template_label(notice.template),
                    address=notice.to_address,
                    delivery=delivery,
                ),
                note=notice.last_error,
                ref_id=notice.id,
            )
        )
    return events
