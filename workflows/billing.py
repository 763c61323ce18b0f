"""The daily billing run's rules: what one invoice is owed on one day, decided without I/O.

`decide` looks at one invoice and the days a run covers, and returns the single step it takes
that run (a pre-due reminder, an overdue notice that moves the status on, Final to Collections,
or auto-cancellation), or None. The run itself (`services.billing_run`) selects candidates,
claims each step once under its key and writes the result.

Rules, from the billing-settings spec and DESIGN.md:
- pre-due reminders fall on the exact day (due date minus N days, in the district's time
  zone); after downtime only the latest missed one that is still before the due date goes out;
- no pre-due reminder falls within `REMINDER_QUIET_DAYS` days of the invoice's own notice (the
  day it was sent, or queued while not yet sent): a reminder that soon is skipped, not delayed;
- overdue notices are thresholds, one step per run (Unpaid→First→Second→Final), each with its
  email, so a person who resets a status restarts automation from there;
- Final→Collections on a later run, without email; auto-cancel counted from the final notice;
- paused days (winter break, summer) send nothing and do not count towards any threshold.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from functools import cached_property
from zoneinfo import ZoneInfo

from workflows.billing_settings import BillingSettings
from workflows.clock import local_date
from workflows.errors import ValidationError
from workflows.i18n import N_, _
from workflows.invoices import OPEN_STATUSES, InvoiceStatus, NoticeTemplate
from workflows.labels import invoice_status_label
from workflows.text import required_line

MAX_PAUSE_DAYS = 120
# A pre-due reminder needs at least this many days between the invoice's notice and its own day.
REMINDER_QUIET_DAYS = 3
MAX_PAUSE_REASON = 200


class Step(StrEnum):
    PRE_DUE = "pre_due"
    FIRST = "first"
    SECOND = "second"
    FINAL = "final"
    COLLECTIONS = "collections"
    AUTO_CANCEL = "auto_cancel"

    @property
    def label(self) -> str:
        return _(STEP_LABELS[self.value])


STEP_LABELS: dict[str, str] = {
    "pre_due": N_("Pre-due reminder"),
    "first": N_("1st overdue notice"),
    "second": N_("2nd overdue notice"),
    "final": N_("Final overdue notice"),
    "collections": N_("Moved to Collections"),
    "auto_cancel": N_("Auto-cancelled"),
}


# The overdue ladder: from this status, the next notice and the status it leads to.
OVERDUE_LADDER: dict[str, tuple[int, Step, InvoiceStatus, NoticeTemplate]] = {
    InvoiceStatus.UNPAID: (0, Step.FIRST, InvoiceStatus.FIRST, NoticeTemplate.OVERDUE_FIRST),
    InvoiceStatus.FIRST: (1, Step.SECOND, InvoiceStatus.SECOND, NoticeTemplate.OVERDUE_SECOND),
    InvoiceStatus.SECOND: (2, Step.FINAL, InvoiceStatus.FINAL, NoticeTemplate.OVERDUE_FINAL),
}
# Module-level names for the hot path: enum class attribute lookups are slow in a loop over
# every candidate invoice of a run.
_FINAL = InvoiceStatus.FINAL
_COLLECTIONS = InvoiceStatus.COLLECTIONS
_CANCELLED = InvoiceStatus.CANCELLED
_PRE_DUE = Step.PRE_DUE
_COLLECTIONS_STEP = Step.COLLECTIONS
_AUTO_CANCEL_STEP = Step.AUTO_CANCEL
_DUE_REMINDER = NoticeTemplate.DUE_REMINDER
# Automation works on exactly the open statuses.
AUTOMATED_STATUSES = OPEN_STATUSES


@dataclass(frozen=True)
class PauseWindow:
    """Days (both ends included) on which the billing run sends nothing and clocks stand still."""

    starts_on: date
    ends_on: date
    reason: str = ""

    def covers(self, day: date) -> bool:
        return self.starts_on <= day <= self.ends_on


def validate_pause(starts_on: date, ends_on: date, reason: str) -> PauseWindow:
    if ends_on < starts_on:
        raise ValidationError(_("A pause must end on or after the day it starts."), field="ends_on")
    if (ends_on - starts_on).days + 1 > MAX_PAUSE_DAYS:
        raise ValidationError(
            _(
                "A pause can last at most {max} days; add another for a longer break.",
                max=MAX_PAUSE_DAYS,
            ),
            field="ends_on",
        )
    missing = _("Say what the pause is for, e.g. Winter break.")
    too_long = _("Keep the reason under {max} characters.", max=MAX_PAUSE_REASON)
    reason = required_line(reason, MAX_PAUSE_REASON, "reason", missing, too_long)
    return PauseWindow(starts_on, ends_on, reason)


class PauseCalendar:
    """The district's pause windows, answering "is this day paused" and "how many active days"."""

    def __init__(self, windows: Iterable[PauseWindow] = ()) -> None:
        self.windows = tuple(sorted(windows, key=lambda w: w.starts_on))

    def is_paused(self, day: date) -> bool:
        return any(w.covers(day) for w in self.windows)

    def paused_days(self, after: date, through: date) -> int:
        """Paused days in (after, through]."""
        total = 0
        for w in self.windows:
            start = max(w.starts_on, after + timedelta(days=1))
            end = min(w.ends_on, through)
            if end >= start:
                total += (end - start).days + 1
        return total

    def active_days(self, after: date, through: date) -> int:
        """Days in (after, through] that count towards a threshold: calendar days less pauses."""
        if through <= after:
            return (through - after).days
        return (through - after).days - self.paused_days(after, through)


@dataclass(frozen=True)
class InvoiceFacts:
    """What the rules need to know about one invoice."""

    id: int
    status: str
    due_date: date | None
    created_on: date  # in the district's time zone
    total_cents: int
    paid_cents: int
    automation_enabled: bool
    epoch: int = 0  # bumped when a person sets the status, re-arming the overdue notices
    final_notice_on: date | None = None
    waived_cents: int = 0
    # The district day the invoice's notice was sent (or queued, while it waits); None when the
    # family was never sent one, and the invoice's own day stands in for it.
    notice_on: date | None = None


@dataclass(frozen=True)
class Action:
    """One step for one invoice in one run."""

    invoice_id: int
    step: Step
    due_date: date
    epoch: int
    template: NoticeTemplate | None
    new_status: InvoiceStatus | None
    days_before_due: int | None = None  # pre-due reminders: which reminder (14, 7, 1…)
    days_overdue: int | None = None  # active days past the due date on the run's day

    @property
    def key(self) -> str:
        """The step's once-only key: invoice, step (with the reminder day) and due date."""
        return step_key(self.invoice_id, self.step_name, self.due_date, self.epoch)

    @cached_property
    def step_name(self) -> str:
        if self.step is _PRE_DUE:
            return f"pre_due_{self.days_before_due}"
        return str(self.step.value)


def step_key(invoice_id: int, step_name: str, due_date: date, epoch: int) -> str:
    return f"billing:{invoice_id}:{step_name}:{due_date.isoformat()}:{epoch}"


def cancel_comment(day: date, days_overdue: int) -> str:
    return (
        f"Invoice automatically cancelled on {day.isoformat()} after {days_overdue} days overdue."
    )


def notice_day(
    sent_at: datetime | None, queued_at: datetime | None, tz: ZoneInfo | str
) -> date | None:
    """The district day an invoice notice went out: when it was sent, else when it was queued."""
    at = sent_at if sent_at is not None else queued_at
    return None if at is None else local_date(at, tz)


def too_soon_after_notice(reminder_day: date, notice_on: date | None, created_on: date) -> bool:
    """Whether a reminder on `reminder_day` would come within `REMINDER_QUIET_DAYS` of the
    invoice's notice (or, with none, of the invoice's own day): the family just heard from us."""
    since = notice_on if notice_on is not None else created_on
    return (reminder_day - since).days < REMINDER_QUIET_DAYS


def skip_reason(inv: InvoiceFacts, settings: BillingSettings) -> str | None:
    """Why automation leaves this invoice alone, or None when it is in scope."""
    if not inv.automation_enabled:
        return _("automation is off for this invoice")
    if inv.due_date is None:
        return _("no due date")
    if inv.status not in AUTOMATED_STATUSES:
        return _("status is {status}", status=invoice_status_label(inv.status))
    if inv.total_cents - inv.paid_cents - inv.waived_cents <= 0:
        return _("nothing left to pay")
    if settings.stop_reminders_on_partial_payment and inv.paid_cents > 0:
        return _("partially paid, and reminders stop on a partial payment")
    return None


def decide(
    inv: InvoiceFacts,
    settings: BillingSettings,
    day: date,
    covered_since: date,
    pauses: PauseCalendar,
) -> Action | None:
    """The one step this invoice takes in the run for `day`, or None.

    `covered_since` is the last day an earlier run completed; this run stands in for every day
    after it up to `day` (downtime catch-up). The caller skips paused days altogether.
    """
    if skip_reason(inv, settings) is not None or inv.due_date is None:
        return None
    due = inv.due_date

    if day < due:
        return _pre_due(inv, settings, day, covered_since, pauses)

    days_overdue = pauses.active_days(due, day)
    if inv.status in OVERDUE_LADDER:
        if not settings.overdue_enabled:
            return None
        index, step, new_status, template = OVERDUE_LADDER[inv.status]
        if days_overdue >= settings.overdue_days[index]:
            return Action(
                inv.id, step, due, inv.epoch, template, new_status, days_overdue=days_overdue
            )
        return None

    final_on = inv.final_notice_on
    if inv.status == _FINAL:
        # Collections comes on a later run than the final notice, and without an email.
        if settings.overdue_enabled and (final_on is None or final_on < day):
            return Action(
                inv.id,
                _COLLECTIONS_STEP,
                due,
                inv.epoch,
                None,
                _COLLECTIONS,
                days_overdue=days_overdue,
            )
        return None

    if inv.status == _COLLECTIONS and settings.auto_cancel_enabled:
        since_final = pauses.active_days(final_on, day) if final_on is not None else None
        if since_final is None or since_final >= settings.auto_cancel_days:
            return Action(
                inv.id,
                _AUTO_CANCEL_STEP,
                due,
                inv.epoch,
                None,
                _CANCELLED,
                days_overdue=days_overdue,
            )
    return None


def _pre_due(
    inv: InvoiceFacts,
    settings: BillingSettings,
    day: date,
    covered_since: date,
    pauses: PauseCalendar,
) -> Action | None:
    if not settings.pre_due_enabled or inv.due_date is None:
        return None
    due = inv.due_date
    # Reminder days this run stands in for, not before the invoice existed, and not on a
    # paused day (a pause drops its reminders rather than saving them up).
    latest: int | None = None  # fewest days before the due date = the most recent one
    for d in settings.pre_due_days:
        reminder_day = due - timedelta(days=d)
        if (
            covered_since < reminder_day <= day
            and reminder_day >= inv.created_on
            and not too_soon_after_notice(reminder_day, inv.notice_on, inv.created_on)
            and not pauses.is_paused(reminder_day)
            and (latest is None or d < latest)
        ):
            latest = d
    if latest is None:
        return None
    return Action(inv.id, _PRE_DUE, due, 0, _DUE_REMINDER, None, days_before_due=latest)


# --- the run's window and its candidate filter ------------------------------------------------


@dataclass(frozen=True)
class RunWindow:
    """The days one run stands in for: (covered_since, day]."""

    day: date
    covered_since: date

    @property
    def missed_days(self) -> int:
        return (self.day - self.covered_since).days - 1


def run_window(day: date, last_completed: date | None) -> RunWindow:
    """A first run covers only its own day; later ones every day since the last completed."""
    if last_completed is None or last_completed >= day:
        return RunWindow(day, day - timedelta(days=1))
    return RunWindow(day, last_completed)


@dataclass(frozen=True)
class CandidateFilter:
    """Necessary conditions for `decide` to act, for the store to turn into one indexed query.

    A superset is fine (each candidate is decided exactly); a subset would lose steps.
    """

    pre_due_ranges: tuple[tuple[date, date], ...]  # due dates in (low, high]
    overdue_before: dict[str, date]  # status -> due dates on or before this day
    final_before: date | None  # Final invoices whose final notice came before this day
    cancel_final_on_or_before: date | None  # Collections with a final notice on/before this
    stop_on_partial: bool


def candidate_filter(settings: BillingSettings, window: RunWindow) -> CandidateFilter:
    day, since = window.day, window.covered_since
    pre: tuple[tuple[date, date], ...] = ()
    if settings.pre_due_enabled:
        pre = tuple(
            (since + timedelta(days=d), day + timedelta(days=d)) for d in settings.pre_due_days
        )
    overdue: dict[str, date] = {}
    final_before: date | None = None
    if settings.overdue_enabled:
        for status, (index, *_rest) in OVERDUE_LADDER.items():
            overdue[status] = day - timedelta(days=settings.overdue_days[index])
        final_before = day
    cancel: date | None = None
    if settings.auto_cancel_enabled:
        cancel = day - timedelta(days=settings.auto_cancel_days)
    return CandidateFilter(
        pre, overdue, final_before, cancel, settings.stop_reminders_on_partial_payment
    )


@dataclass(frozen=True)
class RunTotals:
    """The run's figures for the Slack digest and the CLI."""

    day: date
    covered_since: date
    paused: bool = False
    reminders_by_step: tuple[tuple[str, int], ...] = ()
    advanced: tuple[tuple[str, int], ...] = ()  # new status -> count
    auto_cancelled: int = 0
    emails_queued: int = 0
    digests: int = 0
    not_emailed: int = 0  # steps taken on invoices with no reachable guardian
    failures: tuple[str, ...] = ()

    @property
    def reminders(self) -> int:
        return sum(n for _step, n in self.reminders_by_step)


def summarise_steps(
    steps: Sequence[tuple[str, int]],
) -> tuple[tuple[tuple[str, int], ...], tuple[tuple[str, int], ...], int]:
    """(step name, count) rows -> reminders by step, statuses advanced, auto-cancellations."""
    reminders: list[tuple[str, int]] = []
    advanced: list[tuple[str, int]] = []
    cancelled = 0
    status_of = {
        Step.FIRST: InvoiceStatus.FIRST,
        Step.SECOND: InvoiceStatus.SECOND,
        Step.FINAL: InvoiceStatus.FINAL,
        Step.COLLECTIONS: InvoiceStatus.COLLECTIONS,
    }
    for name, count in sorted(steps, key=_step_order):
        if name.startswith(Step.PRE_DUE.value):
            reminders.append((name, count))
            continue
        step = Step(name)
        if step is Step.AUTO_CANCEL:
            cancelled += count
            continue
        if step is not Step.COLLECTIONS:
            reminders.append((name, count))
        advanced.append((status_of[step].value, count))
    return tuple(reminders), tuple(advanced), cancelled


def step_label(name: str) -> str:
    """'pre_due_14' -> '14-day pre-due reminder'; 'first' -> '1st overdue notice'."""
    if name.startswith(Step.PRE_DUE.value + "_"):
        days = name.rsplit("_", 1)[1]
        return _("{days}-day pre-due reminder", days=days)
    return Step(name).label


def _step_order(row: tuple[str, int]) -> tuple[int, int]:
    name = row[0]
    if name.startswith(Step.PRE_DUE.value + "_"):
        return (0, -int(name.rsplit("_", 1)[1]))
    order = [s.value for s in Step]
    return (1, order.index(name))
