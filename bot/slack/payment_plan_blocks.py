"""Block Kit for payment plans: the plan on `/billing invoice` with its controls, the Set payment
plan modal, and the plan's messages in the invoice's thread. Builders only; no I/O."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Any

from bot.signing import Keys
from bot.slack.blocks import (
    Block,
    button,
    context_block,
    date_input,
    element,
    esc,
    fmt_date,
    input_block,
    modal,
    option,
    section,
    select_input,
    text_input,
)
from bot.slack.metadata import Payload, pack
from bot.slack.waiver_blocks import InvoiceBrief
from storage.payment_plans import PlanView
from workflows.i18n import _
from workflows.money import format_cents
from workflows.payment_plans import (
    MAX_INSTALLMENTS,
    MAX_NOTE,
    MIN_INSTALLMENTS,
    Frequency,
    PlannedInstallment,
    describe_schedule,
)


class PlanAction(StrEnum):
    OPEN = "payment_plan.open"  # the button when the invoice has no plan
    MENU = "payment_plan.menu"  # the overflow when it has one: set a new one, or clear it


class PlanMenu(StrEnum):
    """The overflow's option values (the invoice comes from the signed block id)."""

    SET = "set"
    CLEAR = "clear"


class PlanModalId(StrEnum):
    SUBMIT = "payment_plan.submit"
    DONE = "payment_plan.done"


class PlanBlock(StrEnum):
    """Block ids; each input's action id is the same string."""

    COUNT = "payment_plan.count"
    FIRST_DUE = "payment_plan.first_due"
    FREQUENCY = "payment_plan.frequency"
    NOTE = "payment_plan.note"


# Workflow error fields → the block the message belongs next to.
FIELD_BLOCKS: dict[str, str] = {
    "count": PlanBlock.COUNT,
    "installments": PlanBlock.COUNT,
    "first_due": PlanBlock.FIRST_DUE,
    "frequency": PlanBlock.FREQUENCY,
    "note": PlanBlock.NOTE,
}
DEFAULT_COUNT = 3


class PlanControls(Payload):
    """The block id of the plan's section on the invoice view: which invoice it is for."""

    invoice_id: int
    drawn: str = ""  # a fresh block id per drawing, as with the invoice's other controls


class PlanModal(Payload):
    invoice_id: int


@dataclass(frozen=True)
class PlanForm:
    count: int | None
    first_due: date | None
    frequency: str
    note: str
    errors: dict[str, str] = field(default_factory=dict)


# --- reading the modal --------------------------------------------------------------------------


def read_plan_form(values: Mapping[str, Any]) -> PlanForm:
    errors: dict[str, str] = {}
    count: int | None = None
    text = str(element(values, PlanBlock.COUNT).get("value") or "").strip()
    if text.isdigit():
        count = int(text)
    if count is None or not MIN_INSTALLMENTS <= count <= MAX_INSTALLMENTS:
        errors[PlanBlock.COUNT] = _(
            "Enter a whole number of installments from {min} to {max}.",
            min=MIN_INSTALLMENTS,
            max=MAX_INSTALLMENTS,
        )
        count = None
    first_due: date | None = None
    picked = element(values, PlanBlock.FIRST_DUE).get("selected_date")
    try:
        first_due = date.fromisoformat(str(picked)) if picked else None
    except ValueError:
        first_due = None
    if first_due is None:
        errors[PlanBlock.FIRST_DUE] = _("Pick the day the first installment is due.")
    chosen = element(values, PlanBlock.FREQUENCY).get("selected_option") or {}
    frequency = str(chosen.get("value") or Frequency.MONTHLY.value)
    if frequency not in {f.value for f in Frequency}:
        errors[PlanBlock.FREQUENCY] = _("Choose weekly, every two weeks or monthly.")
    note = str(element(values, PlanBlock.NOTE).get("value") or "")
    return PlanForm(count, first_due, frequency, note, errors)


# --- the modal ----------------------------------------------------------------------------------


def _schedule_lines(view: PlanView) -> list[str]:
    lines = []
    for state, missed_on in zip(view.states, view.missed_on, strict=True):
        mark = ":white_check_mark:" if state.settled else ":spiral_calendar_pad:"
        paid = ""
        if state.settled:
            paid = " \u2014 " + _("paid")
        elif state.paid_cents:
            paid = " \u2014 " + _("{amount} paid", amount=format_cents(state.paid_cents))
        missed = ""
        if missed_on:
            missed = " \u2014 " + _(":warning: missed (flagged {day})", day=fmt_date(missed_on))
        lines.append(
            f"{mark} {state.position}. {fmt_date(state.due_on)} "
            f"{format_cents(state.amount_cents)}{paid}{missed}"
        )
    return lines


def _plan_title() -> str:
    """What starts the plan's first line, before its schedule."""
    return _("*Payment plan*") + " \u2014 "


def plan_text(view: PlanView | None) -> str:
    if view is None:
        return _("*Payment plan*\n_None: reminders follow the due date._")
    schedule = [PlannedInstallment(s.due_on, s.amount_cents) for s in view.states]
    head = _plan_title() + esc(describe_schedule(schedule))
    return "\n".join([head, *_schedule_lines(view)])


def build_plan_modal(
    brief: InvoiceBrief, current: PlanView | None, *, first_due: date, secret: Keys
) -> Block:
    count = len(current.states) if current is not None else DEFAULT_COUNT
    frequencies = [option(f.label, f.value) for f in Frequency]
    blocks: list[Block] = [
        section(
            _(
                "*Invoice {number}* \u00b7 {student}\n"
                "*{balance}* left to pay, split evenly into installments.",
                number=esc(brief.number),
                student=esc(brief.student_name),
                balance=format_cents(brief.balance_cents),
            )
        ),
        input_block(
            PlanBlock.COUNT,
            _("Number of installments"),
            {
                "type": "number_input",
                "is_decimal_allowed": False,
                "min_value": str(MIN_INSTALLMENTS),
                "max_value": str(MAX_INSTALLMENTS),
                "initial_value": str(count),
            },
            hint=_("{min} to {max}", min=MIN_INSTALLMENTS, max=MAX_INSTALLMENTS),
        ),
        input_block(PlanBlock.FIRST_DUE, _("First installment due"), date_input(first_due)),
        input_block(
            PlanBlock.FREQUENCY,
            _("Frequency"),
            select_input(frequencies, initial=frequencies[-1]),  # monthly
        ),
        input_block(
            PlanBlock.NOTE,
            _("Note to the family"),
            text_input(
                multiline=True,
                max_length=MAX_NOTE,
                placeholder=_("e.g. As agreed on the phone with Ms. Rivera"),
            ),
            optional=True,
        ),
    ]
    rules = [
        _(
            "Odd cents go on the first installment. The family gets the schedule by email; "
            "reminders then follow each installment instead of the due date."
        ),
    ]
    if current is not None:
        rules.append(
            _(
                "This replaces the current plan, which is allowed only while nothing has been "
                "paid towards it."
            )
        )
    blocks.append(context_block(*rules))
    return modal(
        PlanModalId.SUBMIT,
        _("Payment plan"),
        blocks,
        submit=_("Set plan"),
        private_metadata=pack(PlanModal(invoice_id=brief.invoice_id), secret),
    )


def build_plan_done_view(lines: list[str]) -> Block:
    return modal(PlanModalId.DONE, _("Payment plan"), [section("\n".join(lines))], close=_("Done"))


# --- on the invoice view ------------------------------------------------------------------------


def plan_blocks(
    view: PlanView | None, *, invoice_id: int, secret: Keys, can_change: bool
) -> list[Block]:
    """The plan's section, with Set payment plan… (or a menu to replace or clear it)."""
    if view is None and not can_change:
        return []
    accessory: Block | None = None
    block_id = pack(PlanControls(invoice_id=invoice_id, drawn=secrets.token_hex(4)), secret)
    if can_change and view is None:
        accessory = button(_("Set payment plan\u2026"), PlanAction.OPEN, PlanMenu.SET)
    elif can_change:
        accessory = {
            "type": "overflow",
            "action_id": PlanAction.MENU,
            "options": [
                option(_("Set a new payment plan\u2026"), PlanMenu.SET),
                option(_("Clear payment plan"), PlanMenu.CLEAR),
            ],
        }
    return [section(plan_text(view), block_id=block_id, accessory=accessory)]


# --- in the invoice's thread --------------------------------------------------------------------


def build_plan_set_message(
    number: str, view: PlanView | None, *, by: str, note: str | None
) -> tuple[str, list[Block]]:
    text = _("Payment plan set on {number} by {by}", number=number, by=by)
    lines = [
        _(
            ":spiral_calendar_pad: *Payment plan set on {number}* by {by}",
            number=esc(number),
            by=esc(by),
        )
    ]
    if view is not None:
        lines.append(plan_text(view).split("\n", 1)[0].replace(_plan_title(), ""))
    blocks = [section("\n".join(lines))]
    if note:
        blocks.append(context_block(_("Note to the family: _{note}_", note=esc(note))))
    blocks.append(context_block(_(":email: The schedule is on its way to the family.")))
    return text, blocks


def build_plan_cleared_message(number: str, *, by: str) -> tuple[str, list[Block]]:
    text = _("Payment plan on {number} cleared by {by}", number=number, by=by)
    return text, [
        section(
            _(
                ":wastebasket: *Payment plan on {number} cleared* by {by}. "
                "Reminders follow the invoice's due date again.",
                number=esc(number),
                by=esc(by),
            )
        )
    ]


def build_installment_missed_message(
    number: str, payload: Mapping[str, Any]
) -> tuple[str, list[Block]]:
    position, count = int(payload["position"]), int(payload["count"])
    due_on = date.fromisoformat(str(payload["due_on"]))
    behind = format_cents(int(payload["due_cents"]))
    text = _(
        "{number}: installment {position} of {count} (due {due}) was missed",
        number=number,
        position=position,
        count=count,
        due=fmt_date(due_on),
    )
    return text, [
        section(
            _(
                ":warning: *{number}: installment {position} of {count} missed* \u2014 it was "
                "due {due}. {behind} brings the plan up to date; the family has been emailed.",
                number=esc(number),
                position=position,
                count=count,
                due=fmt_date(due_on),
                behind=behind,
            )
        )
    ]
