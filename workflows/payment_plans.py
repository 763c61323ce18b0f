"""Payment plans: an invoice's balance split into installments, and what the plan says each day.

Rules:
- a plan has 2 to 24 installments, strictly later one after the other, the first not before
  the district's today, each more than $0.00, together exactly the balance left when it is set;
- an even split puts the odd cents on the first installment, so the later ones are equal;
- money covers installments in order: what was paid (or waived) since the plan was set is set
  against the running total of installments, so the current installment is the first whose
  running total is not covered yet;
- an installment is missed once its due date has passed (active days, pauses not counted) and
  what was paid towards the plan is below the running total through it;
- a plan is replaced only while nothing has been paid towards it (clearing is always allowed);
- billing reminders follow the current installment's date and amount instead of the invoice's.

The plan covers the last `sum(installments)` cents of the invoice: what was covered before the
plan was set (the invoice total less the plan total) does not count towards its installments.
"""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from enum import StrEnum
from typing import Any, Protocol

from workflows.billing import InvoiceFacts, PauseCalendar
from workflows.billing_settings import BillingSettings
from workflows.errors import ConflictError, ValidationError
from workflows.i18n import N_, _
from workflows.invoices import OPEN_STATUSES, NoticeTemplate, balance_of, existing_invoice
from workflows.money import format_cents
from workflows.permissions import Actor, Permission, require
from workflows.ports import Context, InvoiceRecord

MIN_INSTALLMENTS = 2
MAX_INSTALLMENTS = 24
MAX_NOTE = 500
MAX_PLAN_DAYS = 3 * 366  # the last installment is at most about three years away
# Billing staff set plans: they take the money in (Record Payments), as the seed's clerks do.
PLAN_PERMISSION = Permission.RECORD_PAYMENTS
# The outbox kind of a plan's message in the invoice's Slack thread (set, cleared, missed).
PLAN_POSTED = "slack.payment_plan"
PLAN_SET_ACTION = "payment_plan_set"  # the activity-log action; its count is the plan's version


class Frequency(StrEnum):
    WEEKLY = "weekly"
    BIWEEKLY = "biweekly"
    MONTHLY = "monthly"

    @property
    def label(self) -> str:
        return _(FREQUENCY_LABELS[self.value])


FREQUENCY_LABELS: dict[str, str] = {
    "weekly": N_("Weekly"),
    "biweekly": N_("Every two weeks"),
    "monthly": N_("Monthly"),
}


class PlanEvent(StrEnum):
    SET = "set"
    CLEARED = "cleared"
    MISSED = "missed"


@dataclass(frozen=True)
class PlannedInstallment:
    due_on: date
    amount_cents: int

    def as_json(self) -> dict[str, Any]:
        return {"due_on": self.due_on.isoformat(), "amount_cents": self.amount_cents}


# --- building a schedule -----------------------------------------------------------------------


def split_amount(total_cents: int, count: int) -> list[int]:
    """`total_cents` in `count` parts that add up exactly; the odd cents go on the first."""
    if count < 1:
        raise ValidationError(_("A plan needs at least one installment."), field="count")
    base, odd = divmod(total_cents, count)
    return [base + odd] + [base] * (count - 1)


def add_months(day: date, months: int) -> date:
    """The same day of the month `months` later, or that month's last day when it is shorter
    (January 31 + 1 month = February 28)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def installment_dates(first_due: date, count: int, frequency: Frequency) -> list[date]:
    if frequency is Frequency.MONTHLY:
        return [add_months(first_due, i) for i in range(count)]
    step = 7 if frequency is Frequency.WEEKLY else 14
    return [first_due + timedelta(days=step * i) for i in range(count)]


def parse_frequency(value: str) -> Frequency:
    try:
        return Frequency(value)
    except ValueError:
        raise ValidationError(
            _("Choose weekly, every two weeks or monthly."), field="frequency"
        ) from None


def build_schedule(
    balance_cents: int, first_due: date, frequency: Frequency, count: int
) -> tuple[PlannedInstallment, ...]:
    """An even schedule (not yet validated: `validate_schedule` says what's wrong with it)."""
    if not MIN_INSTALLMENTS <= count <= MAX_INSTALLMENTS:
        raise ValidationError(
            _(
                "A plan has {min} to {max} installments.",
                min=MIN_INSTALLMENTS,
                max=MAX_INSTALLMENTS,
            ),
            field="count",
        )
    dates = installment_dates(first_due, count, frequency)
    return tuple(
        PlannedInstallment(d, a)
        for d, a in zip(dates, split_amount(balance_cents, count), strict=True)
    )


def validate_schedule(
    schedule: Sequence[PlannedInstallment], *, balance_cents: int, today: date
) -> None:
    """Raise ValidationError (naming the field at fault) unless the schedule is usable."""
    count = len(schedule)
    if not MIN_INSTALLMENTS <= count <= MAX_INSTALLMENTS:
        raise ValidationError(
            _(
                "A plan has {min} to {max} installments.",
                min=MIN_INSTALLMENTS,
                max=MAX_INSTALLMENTS,
            ),
            field="count",
        )
    if schedule[0].due_on < today:
        raise ValidationError(
            _("The first installment can't be due in the past; pick today or a later day."),
            field="first_due",
        )
    for earlier, later in zip(schedule, schedule[1:], strict=False):
        if later.due_on <= earlier.due_on:
            raise ValidationError(
                _("Each installment must be due after the one before it."), field="installments"
            )
    if (schedule[-1].due_on - today).days > MAX_PLAN_DAYS:
        raise ValidationError(
            _(
                "The last installment would be more than three years away; use fewer "
                "installments or a shorter interval."
            ),
            field="first_due",
        )
    if any(i.amount_cents <= 0 for i in schedule):
        raise ValidationError(
            _(
                "{balance} is too little to split into {count} payments of at least $0.01; use "
                "fewer installments.",
                balance=format_cents(balance_cents),
                count=count,
            ),
            field="count",
        )
    total = sum(i.amount_cents for i in schedule)
    if total != balance_cents:
        raise ValidationError(
            _(
                "The installments add up to {total}, but {balance} is left to pay.",
                total=format_cents(total),
                balance=format_cents(balance_cents),
            ),
            field="installments",
        )


# --- where a plan stands -----------------------------------------------------------------------


def plan_paid_cents(plan_total_cents: int, invoice_total_cents: int, covered_cents: int) -> int:
    """What has been paid (or waived) towards the plan: the invoice's covered money less what
    was covered before the plan, which is the invoice total less the plan total."""
    before_plan = invoice_total_cents - plan_total_cents
    return max(0, min(covered_cents - before_plan, plan_total_cents))


@dataclass(frozen=True)
class InstallmentState:
    position: int  # 1-based
    due_on: date
    amount_cents: int
    running_cents: int  # this installment and every one before it
    paid_cents: int  # how much of this one is covered

    @property
    def settled(self) -> bool:
        return self.paid_cents >= self.amount_cents

    @property
    def open_cents(self) -> int:
        return self.amount_cents - self.paid_cents


def plan_progress(
    schedule: Sequence[PlannedInstallment], plan_paid: int
) -> tuple[InstallmentState, ...]:
    """Each installment with how much of it the money paid so far covers, in order."""
    states: list[InstallmentState] = []
    running = 0
    for position, item in enumerate(schedule, start=1):
        before = running
        running += item.amount_cents
        covered = max(0, min(plan_paid - before, item.amount_cents))
        states.append(InstallmentState(position, item.due_on, item.amount_cents, running, covered))
    return tuple(states)


def current_installment(
    schedule: Sequence[PlannedInstallment], plan_paid: int
) -> InstallmentState | None:
    """The first installment not fully paid; None when the plan is paid off."""
    for state in plan_progress(schedule, plan_paid):
        if not state.settled:
            return state
    return None


def behind_cents(state: InstallmentState, plan_paid: int) -> int:
    """What brings the plan up to date through this installment."""
    return max(0, state.running_cents - plan_paid)


def is_missed(
    state: InstallmentState,
    plan_paid: int,
    day: date,
    *,
    pauses: PauseCalendar | None = None,
    grace_days: int = 0,
) -> bool:
    """Past its due date by more than `grace_days` active days, and not covered."""
    late = (pauses or PauseCalendar()).active_days(state.due_on, day)
    return late > grace_days and plan_paid < state.running_cents


def missed_installments(
    schedule: Sequence[PlannedInstallment],
    plan_paid: int,
    day: date,
    *,
    pauses: PauseCalendar | None = None,
    grace_days: int = 0,
) -> list[InstallmentState]:
    return [
        s
        for s in plan_progress(schedule, plan_paid)
        if is_missed(s, plan_paid, day, pauses=pauses, grace_days=grace_days)
    ]


def plan_facts(
    facts: InvoiceFacts, schedule: Sequence[PlannedInstallment], plan_paid: int
) -> InvoiceFacts:
    """An invoice on a plan, as the billing rules see it: due when its current installment is.

    Reminders count down to that installment's date and overdue notices count from it, so a
    step's once-only key (which holds the due date) is per installment. A plan paid off while
    money is still owed (the total went up) leaves the invoice's own due date in charge.
    """
    state = current_installment(schedule, plan_paid)
    if state is None:
        return facts
    return replace(facts, due_date=state.due_on)


def plan_billing_settings(settings: BillingSettings) -> BillingSettings:
    """A plan expects partial payments: "stop reminders on a partial payment" doesn't apply."""
    return replace(settings, stop_reminders_on_partial_payment=False)


def installment_notice_facts(state: InstallmentState, count: int, plan_paid: int) -> dict[str, Any]:
    """What a notice about one installment stores: the template's `installment`."""
    return {
        "position": state.position,
        "count": count,
        "due_on": state.due_on.isoformat(),
        "amount_cents": state.amount_cents,
        "due_cents": behind_cents(state, plan_paid),
    }


def same_schedule(a: Sequence[PlannedInstallment], b: Sequence[PlannedInstallment]) -> bool:
    return [(i.due_on, i.amount_cents) for i in a] == [(i.due_on, i.amount_cents) for i in b]


def describe_schedule(schedule: Sequence[PlannedInstallment]) -> str:
    """ "4 payments from April 1, 2026 to July 1, 2026: $50.01, then $50.00 each"."""
    first, last = schedule[0], schedule[-1]
    rest = {i.amount_cents for i in schedule[1:]}
    if len(rest) == 1 and first.amount_cents in rest:
        money = _("{amount} each", amount=format_cents(first.amount_cents))
    elif len(rest) == 1:
        money = _(
            "{first}, then {amount} each",
            first=format_cents(first.amount_cents),
            amount=format_cents(last.amount_cents),
        )
    else:
        money = ", ".join(format_cents(i.amount_cents) for i in schedule)
    return _(
        "{count} payments from {start} to {end}: {money}",
        count=len(schedule),
        start=_day(first.due_on),
        end=_day(last.due_on),
        money=money,
    )


def _day(day: date) -> str:
    return f"{day:%B} {day.day}, {day.year}"


# --- setting and clearing a plan -----------------------------------------------------------------


class InstallmentRecord(Protocol):
    id: int
    invoice_id: int
    position: int
    due_on: date
    amount_cents: int
    missed_on: date | None


class PlanStore(Protocol):
    """Where an invoice's installments are kept (`storage.payment_plans.PlanRows`)."""

    async def installments_of(self, invoice_id: int) -> Sequence[InstallmentRecord]: ...
    async def replace_installments(
        self, invoice_id: int, schedule: Sequence[PlannedInstallment]
    ) -> Sequence[InstallmentRecord]: ...
    async def clear_installments(self, invoice_id: int) -> None: ...
    async def plans_set(self, invoice_id: int) -> int:
        """How many plans were ever set on the invoice (its plans' versions are 1, 2, …)."""
        ...


def schedule_of(rows: Sequence[InstallmentRecord]) -> tuple[PlannedInstallment, ...]:
    return tuple(
        PlannedInstallment(r.due_on, r.amount_cents) for r in sorted(rows, key=lambda r: r.position)
    )


@dataclass(frozen=True)
class SetPaymentPlan:
    invoice_id: int
    count: int
    first_due: date
    frequency: str = Frequency.MONTHLY.value
    note: str = ""


@dataclass(frozen=True)
class PlanOutcome:
    invoice: InvoiceRecord
    schedule: tuple[PlannedInstallment, ...]  # the plan now (empty once cleared)
    changed: bool
    version: int | None = None  # 1 for the invoice's first plan, 2 for the next …
    notices: int = 0


def clean_note(note: str) -> str:
    text = "\n".join(" ".join(line.split()) for line in note.strip().splitlines()).strip()
    if len(text) > MAX_NOTE:
        raise ValidationError(
            _("Keep the note under {max} characters.", max=MAX_NOTE), field="note"
        )
    return text


async def set_payment_plan(
    ctx: Context, plans: PlanStore, actor: Actor, cmd: SetPaymentPlan
) -> PlanOutcome:
    """Split what is left on an invoice into installments, tell the family and the thread.

    The same schedule again (a redelivered form, a second click) changes nothing.
    """
    require(actor, PLAN_PERMISSION)
    # The invoice lock orders concurrent plans for one invoice (and payments against it).
    invoice = await existing_invoice(ctx, cmd.invoice_id, lock=True)
    return await _set_plan(ctx, plans, actor, cmd, invoice)


async def check_payment_plan(
    ctx: Context, plans: PlanStore, actor: Actor, cmd: SetPaymentPlan
) -> None:
    """The rules `set_payment_plan` applies, checked without locking or writing: a form shows a
    broken rule next to its field, then sets the plan once it has answered."""
    require(actor, PLAN_PERMISSION)
    invoice = await existing_invoice(ctx, cmd.invoice_id)
    await _set_plan(ctx, plans, actor, cmd, invoice, write=False)


async def _set_plan(
    ctx: Context,
    plans: PlanStore,
    actor: Actor,
    cmd: SetPaymentPlan,
    invoice: InvoiceRecord,
    *,
    write: bool = True,
) -> PlanOutcome:
    if invoice.status not in OPEN_STATUSES:
        raise ConflictError(
            _(
                "Invoice {number} is {status}; only an open invoice takes a plan.",
                number=invoice.number,
                status=invoice.status,
            )
        )
    balance = balance_of(invoice)
    if balance <= 0:
        raise ConflictError(_("Nothing is left to pay on invoice {number}.", number=invoice.number))
    note = clean_note(cmd.note)
    schedule = build_schedule(balance, cmd.first_due, parse_frequency(cmd.frequency), cmd.count)
    validate_schedule(schedule, balance_cents=balance, today=ctx.today())

    existing = list(await plans.installments_of(invoice.id))
    before = schedule_of(existing)
    if before and same_schedule(before, schedule):
        return PlanOutcome(
            invoice, before, changed=False, version=await plans.plans_set(invoice.id)
        )
    if before:
        paid = plan_paid_cents(
            sum(i.amount_cents for i in before),
            invoice.total_cents,
            invoice.paid_cents + invoice.waived_cents,
        )
        if paid > 0:
            raise ConflictError(
                _(
                    "{paid} has already been paid towards the current plan on {number}, so it "
                    "can't be replaced. Clear it first, then set a new plan for what is left.",
                    paid=format_cents(paid),
                    number=invoice.number,
                )
            )
    if not write:
        return PlanOutcome(invoice, schedule, changed=True, version=0)
    version = await plans.plans_set(invoice.id) + 1
    await plans.replace_installments(invoice.id, schedule)
    await ctx.store.activity.log(
        actor,
        "invoice",
        invoice.id,
        PLAN_SET_ACTION,
        before={"installments": [i.as_json() for i in before]} if before else None,
        after={"installments": [i.as_json() for i in schedule], "version": version},
        comment=note or None,
    )
    notices = await ctx.store.outbox.queue_notice(
        NoticeTemplate.PAYMENT_PLAN_CONFIRMATION,
        invoice.id,
        f"payment-plan:{invoice.id}:{version}",
        {"installments": [i.as_json() for i in schedule], "note": note or None},
    )
    await ctx.store.outbox.enqueue(
        PLAN_POSTED,
        f"payment-plan:{invoice.id}:{version}",
        {
            "invoice_id": invoice.id,
            "event": PlanEvent.SET.value,
            "version": version,
            "by": actor.name,
            "note": note or None,
        },
    )
    return PlanOutcome(invoice, schedule, changed=True, version=version, notices=notices)


async def clear_payment_plan(
    ctx: Context, plans: PlanStore, actor: Actor, invoice_id: int
) -> PlanOutcome:
    """Remove the plan: reminders follow the invoice's due date again. No plan, no change."""
    require(actor, PLAN_PERMISSION)
    invoice = await existing_invoice(ctx, invoice_id, lock=True)
    existing = list(await plans.installments_of(invoice.id))
    if not existing:
        return PlanOutcome(invoice, (), changed=False)
    before = schedule_of(existing)
    version = await plans.plans_set(invoice.id)
    await plans.clear_installments(invoice.id)
    await ctx.store.activity.log(
        actor,
        "invoice",
        invoice.id,
        "payment_plan_cleared",
        before={"installments": [i.as_json() for i in before], "version": version},
    )
    await ctx.store.outbox.enqueue(
        PLAN_POSTED,
        f"payment-plan-cleared:{invoice.id}:{version}",
        {
            "invoice_id": invoice.id,
            "event": PlanEvent.CLEARED.value,
            "version": version,
            "by": actor.name,
        },
    )
    return PlanOutcome(invoice, (), changed=True, version=version)
