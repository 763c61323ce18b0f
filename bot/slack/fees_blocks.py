"""Block Kit for `/billing fees`: the year's fees, a fee's preview with its Apply button, the
new-fee modal and what applying did."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Any

from bot.signing import Keys
from bot.slack.blocks import (
    Block,
    button,
    context_block,
    element,
    esc,
    fmt_date,
    input_block,
    modal,
    option,
    plain,
    section,
    select_input,
    text_input,
)
from bot.slack.metadata import Payload, pack
from workflows.errors import ValidationError
from workflows.fees import (
    BillResult,
    FeeCounts,
    FeeDefinition,
    FeePreview,
    FeeRecord,
    who_is_billed,
)
from workflows.grades import parse_grades
from workflows.i18n import N_, _, ngettext
from workflows.money import format_cents, parse_amount

USAGE = N_(
    "Annual fees, billed once per student and school year:\n"
    "• `/billing fees` lists this school year's fees (`/billing fees 2026-2027` another year)\n"
    "• `/billing fees new` defines a fee\n"
    "• `/billing fees preview CODE [YEAR]` shows whom applying it would bill, with an Apply button"
)


class FeeAction(StrEnum):
    NEW = "fees.new"
    PREVIEW = "fees.preview"
    APPLY = "fees.apply"


class FeeViewId(StrEnum):
    DEFINE = "fees.define"


class FeeBlock(StrEnum):
    CODE = "fee.code"
    NAME = "fee.name"
    YEAR = "fee.year"
    AMOUNT = "fee.amount"
    GRADES = "fee.grades"
    BUILDINGS = "fee.buildings"
    DUE = "fee.due"


# Where a domain error about a field is shown in the modal.
FIELD_BLOCKS = {
    "code": FeeBlock.CODE,
    "name": FeeBlock.NAME,
    "school_year": FeeBlock.YEAR,
    "amount": FeeBlock.AMOUNT,
    "grades": FeeBlock.GRADES,
    "buildings": FeeBlock.BUILDINGS,
    "due_date": FeeBlock.DUE,
}


class FeeDefineModal(Payload):
    """private_metadata of the new-fee modal: a submission DeviceCare's own modal made."""


class FeeRef(Payload):
    """The value of a fee's Preview and Apply buttons."""

    fee_id: int


def _digits(n: int) -> str:
    return f"{n:,}"


def _students(n: int) -> str:
    return ngettext("{count} student", "{count} students", n, count=_digits(n))


def fee_line(fee: FeeRecord, buildings: Mapping[int, str]) -> str:
    due = fmt_date(fee.due_date) if fee.due_date else _("the district's default due date")
    off = " " + _("_(switched off)_") if not fee.active else ""
    terms = _(
        "{amount} per student, {who}, due {due}",
        amount=format_cents(fee.amount_cents),
        who=esc(who_is_billed(fee, buildings)),
        due=due,
    )
    return f"*{esc(fee.name)}* `{esc(fee.code)}`{off}\n{terms}"


def build_fee_list(
    year: str,
    fees: Sequence[tuple[FeeRecord, FeeCounts]],
    buildings: Mapping[int, str],
    secret: Keys,
) -> tuple[str, list[Block]]:
    new = {
        "type": "actions",
        "block_id": "fees.actions",
        "elements": [button(_("New fee"), FeeAction.NEW, "new")],
    }
    if not fees:
        text = _("There are no fees for {year} yet.", year=year)
        return text, [section(text + " " + _("Define one with *New fee*.")), new]
    blocks: list[Block] = [section(_("*Fees for {year}*", year=esc(year)))]
    for fee, counts in fees:
        billed = ngettext(
            "{count} student billed",
            "{count} students billed",
            counts.already_billed,
            count=_digits(counts.already_billed),
        )
        waiting = (
            ", " + _("{count} more would be", count=_digits(counts.to_bill))
            if counts.to_bill
            else ""
        )
        preview = button(_("Preview"), FeeAction.PREVIEW, pack(FeeRef(fee_id=fee.id), secret))
        blocks.append(section(f"{fee_line(fee, buildings)}\n{billed}{waiting}", accessory=preview))
    blocks.append(new)
    return _("Fees for {year}: {count}.", year=year, count=len(fees)), blocks


def build_fee_preview(
    preview: FeePreview, buildings: Mapping[int, str], secret: Keys
) -> tuple[str, list[Block]]:
    fee, counts = preview.fee, preview.counts
    lines = [
        _(
            "*Preview: {name}* `{code}` ({year}). Nothing has been billed yet.",
            name=esc(fee.name),
            code=esc(fee.code),
            year=esc(fee.school_year),
        ),
        _(
            "{amount} per student, {who}",
            amount=format_cents(fee.amount_cents),
            who=esc(who_is_billed(fee, buildings)),
        ),
        _("• Students to bill now: *{count}*", count=_digits(counts.to_bill)),
        _("• Total: *{total}*", total=format_cents(preview.total_cents)),
        _("• Already billed: {count}", count=_digits(counts.already_billed)),
    ]
    if counts.without_email:
        lines.append(
            ngettext(
                ":warning: {count} of them has no guardian email that works: their invoices "
                "are created but not emailed.",
                ":warning: {count} of them have no guardian email that works: their invoices "
                "are created but not emailed.",
                counts.without_email,
                count=_digits(counts.without_email),
            )
        )
    blocks: list[Block] = [section("\n".join(lines))]
    if counts.to_bill:
        label = _("Apply to {students}", students=_students(counts.to_bill))
        confirm = {
            "title": plain(_("Apply the fee?")),
            "text": {
                "type": "mrkdwn",
                "text": _(
                    "This creates an invoice for each of {students} ({total} in all) and "
                    "emails the families.",
                    students=_students(counts.to_bill),
                    total=format_cents(preview.total_cents),
                ),
            },
            "confirm": plain(_("Apply")),
            "deny": plain(_("Not now")),
        }
        blocks.append(
            {
                "type": "actions",
                "block_id": "fees.apply",
                "elements": [
                    button(
                        label,
                        FeeAction.APPLY,
                        pack(FeeRef(fee_id=fee.id), secret),
                        style="primary",
                        confirm=confirm,
                    )
                ],
            }
        )
    else:
        blocks.append(context_block(_("Every matching student has been billed for this fee.")))
    text = _(
        "{name} ({year}): {count} to bill, {total}.",
        name=fee.name,
        year=fee.school_year,
        count=_digits(counts.to_bill),
        total=format_cents(preview.total_cents),
    )
    return text, blocks


def applied_text(fee: FeeRecord, result: BillResult) -> str:
    name, year = esc(fee.name), esc(fee.school_year)
    if not result.created:
        return ngettext(
            ":information_source: Nobody new to bill for {name} ({year}): "
            "{count} student was already billed.",
            ":information_source: Nobody new to bill for {name} ({year}): "
            "{count} students were already billed.",
            result.already_billed,
            name=name,
            year=year,
            count=_digits(result.already_billed),
        )
    invoices = ngettext(
        "{count} invoice", "{count} invoices", result.created, count=_digits(result.created)
    )
    emails = ngettext(
        "{count} email", "{count} emails", result.notices, count=_digits(result.notices)
    )
    return _(
        ":white_check_mark: {name} ({year}): {invoices} created, {total} in all, "
        "{emails} queued to families.",
        name=name,
        year=year,
        invoices=invoices,
        total=format_cents(result.total_cents),
        emails=emails,
    )


# --- the new-fee modal ----------------------------------------------------------------------


def build_define_modal(
    year: str, buildings: Sequence[tuple[int, str]], private_metadata: str = ""
) -> Block:
    blocks = [
        input_block(
            FeeBlock.CODE, _("Code"), text_input(placeholder=_("e.g. tech-fee"), max_length=60)
        ),
        input_block(
            FeeBlock.NAME,
            _("Name families see"),
            text_input(placeholder=_("e.g. Technology fee"), max_length=200),
        ),
        input_block(
            FeeBlock.YEAR,
            _("School year"),
            text_input(placeholder=_("e.g. 2026-2027"), max_length=9, initial=year),
        ),
        input_block(
            FeeBlock.AMOUNT,
            _("Amount per student ($)"),
            text_input(placeholder=_("e.g. 25.00"), max_length=20),
        ),
        input_block(
            FeeBlock.GRADES,
            _("Only these grades"),
            text_input(placeholder=_("e.g. 6,7,8 (empty: every grade)"), max_length=100),
            optional=True,
        ),
    ]
    if buildings:
        blocks.append(
            input_block(
                FeeBlock.BUILDINGS,
                _("Only these buildings"),
                select_input(
                    [option(name, str(i)) for i, name in buildings[:100]],
                    placeholder=_("Every building"),
                    multi=True,
                ),
                optional=True,
            )
        )
    blocks.append(input_block(FeeBlock.DUE, _("Due date"), {"type": "datepicker"}, optional=True))
    blocks.append(
        context_block(
            _(
                "Without a due date, invoices get the district's default. A fee with the same "
                "code and year is updated instead."
            )
        )
    )
    return modal(
        FeeViewId.DEFINE,
        _("New fee"),
        blocks,
        submit=_("Save"),
        private_metadata=private_metadata,
    )


@dataclass(frozen=True)
class FeeForm:
    definition: FeeDefinition | None
    errors: dict[str, str] = field(default_factory=dict)


def read_define_form(values: Mapping[str, Any]) -> FeeForm:
    """The modal's state as a fee definition; bad input becomes errors next to the fields."""
    errors: dict[str, str] = {}

    def text(block_id: str) -> str:
        return str(element(values, block_id).get("value") or "").strip()

    cents = 0
    try:
        cents = parse_amount(text(FeeBlock.AMOUNT))
    except ValidationError as exc:
        errors[FeeBlock.AMOUNT] = exc.message
    grades: tuple[str, ...] = ()
    try:
        grades = parse_grades(text(FeeBlock.GRADES))
    except ValidationError as exc:
        errors[FeeBlock.GRADES] = exc.message
    building_ids: list[int] = []
    for o in element(values, FeeBlock.BUILDINGS).get("selected_options") or []:
        try:
            building_ids.append(int(o.get("value", "")))
        except ValueError:
            errors[FeeBlock.BUILDINGS] = _("One of the chosen buildings isn't valid.")
    due: date | None = None
    picked = element(values, FeeBlock.DUE).get("selected_date")
    if picked:
        try:
            due = date.fromisoformat(str(picked))
        except ValueError:
            errors[FeeBlock.DUE] = _("Pick a due date from the calendar.")
    if errors:
        return FeeForm(None, errors)
    return FeeForm(
        FeeDefinition(
            code=text(FeeBlock.CODE),
            name=text(FeeBlock.NAME),
            school_year=text(FeeBlock.YEAR),
            amount_cents=cents,
            grades=grades,
            building_ids=tuple(building_ids),
            due_date=due,
        )
    )


def defined_text(fee: FeeRecord, created: bool, buildings: Mapping[int, str]) -> str:
    year = esc(fee.school_year)
    if created:
        head = _(":white_check_mark: Added the fee for {year}:", year=year)
    else:
        head = _(":white_check_mark: Updated the fee for {year}:", year=year)
    hint = _(
        "`/billing fees preview {code} {year}` shows whom it would bill.",
        code=esc(fee.code),
        year=year,
    )
    return f"{head} {fee_line(fee, buildings)}\n{hint}"
