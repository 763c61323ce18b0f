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
from workflows.money import format_cents, parse_amount

USAGE = (
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


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def fee_line(fee: FeeRecord, buildings: Mapping[int, str]) -> str:
    due = fmt_date(fee.due_date) if fee.due_date else "the district's default due date"
    off = " _(switched off)_" if not fee.active else ""
    return (
        f"*{esc(fee.name)}* `{esc(fee.code)}`{off}\n{format_cents(fee.amount_cents)} per student, "
        f"{esc(who_is_billed(fee, buildings))}, due {due}"
    )


def build_fee_list(
    year: str,
    fees: Sequence[tuple[FeeRecord, FeeCounts]],
    buildings: Mapping[int, str],
    secret: Keys,
) -> tuple[str, list[Block]]:
    new = {
        "type": "actions",
        "block_id": "fees.actions",
        "elements": [button("New fee", FeeAction.NEW, "new")],
    }
    if not fees:
        text = f"There are no fees for {year} yet."
        return text, [section(f"{text} Define one with *New fee*."), new]
    blocks: list[Block] = [section(f"*Fees for {esc(year)}*")]
    for fee, counts in fees:
        billed = f"{_count(counts.already_billed, 'student')} billed"
        waiting = f", {counts.to_bill:,} more would be" if counts.to_bill else ""
        blocks.append(
            section(
                f"{fee_line(fee, buildings)}\n{billed}{waiting}",
                accessory=button("Preview", FeeAction.PREVIEW, pack(FeeRef(fee_id=fee.id), secret)),
            )
        )
    blocks.append(new)
    return f"Fees for {year}: {len(fees)}.", blocks


def build_fee_preview(
    preview: FeePreview, buildings: Mapping[int, str], secret: Keys
) -> tuple[str, list[Block]]:
    fee, counts = preview.fee, preview.counts
    lines = [
        f"*Preview: {esc(fee.name)}* `{esc(fee.code)}` ({esc(fee.school_year)}). "
        "Nothing has been billed yet.",
        f"{format_cents(fee.amount_cents)} per student, {esc(who_is_billed(fee, buildings))}",
        f"• Students to bill now: *{counts.to_bill:,}*",
        f"• Total: *{format_cents(preview.total_cents)}*",
        f"• Already billed: {counts.already_billed:,}",
    ]
    if counts.without_email:
        lines.append(
            f":warning: {_count(counts.without_email, 'of them has', 'of them have')} no guardian "
            "email that works: their invoices are created but not emailed."
        )
    blocks: list[Block] = [section("\n".join(lines))]
    if counts.to_bill:
        label = f"Apply to {_count(counts.to_bill, 'student')}"
        confirm = {
            "title": plain("Apply the fee?"),
            "text": {
                "type": "mrkdwn",
                "text": f"This creates an invoice for each of {_count(counts.to_bill, 'student')} "
                f"({format_cents(preview.total_cents)} in all) and emails the families.",
            },
            "confirm": plain("Apply"),
            "deny": plain("Not now"),
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
        blocks.append(context_block("Every matching student has been billed for this fee."))
    text = (
        f"{fee.name} ({fee.school_year}): {counts.to_bill:,} to bill, "
        f"{format_cents(preview.total_cents)}."
    )
    return text, blocks


def applied_text(fee: FeeRecord, result: BillResult) -> str:
    if not result.created:
        return (
            f":information_source: Nobody new to bill for {esc(fee.name)} ({esc(fee.school_year)}):"
            f" {_count(result.already_billed, 'student was', 'students were')} already billed."
        )
    return (
        f":white_check_mark: {esc(fee.name)} ({esc(fee.school_year)}): "
        f"{_count(result.created, 'invoice')} created, {format_cents(result.total_cents)} in all, "
        f"{_count(result.notices, 'email')} queued to families."
    )


# --- the new-fee modal ----------------------------------------------------------------------


def build_define_modal(
    year: str, buildings: Sequence[tuple[int, str]], private_metadata: str = ""
) -> Block:
    blocks = [
        input_block(FeeBlock.CODE, "Code", text_input(placeholder="e.g. tech-fee", max_length=60)),
        input_block(
            FeeBlock.NAME,
            "Name families see",
            text_input(placeholder="e.g. Technology fee", max_length=200),
        ),
        input_block(
            FeeBlock.YEAR,
            "School year",
            text_input(placeholder="e.g. 2026-2027", max_length=9, initial=year),
        ),
        input_block(
            FeeBlock.AMOUNT,
            "Amount per student ($)",
            text_input(placeholder="e.g. 25.00", max_length=20),
        ),
        input_block(
            FeeBlock.GRADES,
            "Only these grades",
            text_input(placeholder="e.g. 6,7,8 (empty: every grade)", max_length=100),
            optional=True,
        ),
    ]
    if buildings:
        blocks.append(
            input_block(
                FeeBlock.BUILDINGS,
                "Only these buildings",
                select_input(
                    [option(name, str(i)) for i, name in buildings[:100]],
                    placeholder="Every building",
                    multi=True,
                ),
                optional=True,
            )
        )
    blocks.append(input_block(FeeBlock.DUE, "Due date", {"type": "datepicker"}, optional=True))
    blocks.append(
        context_block(
            "Without a due date, invoices get the district's default. A fee with the same "
            "code and year is updated instead."
        )
    )
    return modal(
        FeeViewId.DEFINE, "New fee", blocks, submit="Save", private_metadata=private_metadata
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
            errors[FeeBlock.BUILDINGS] = "One of the chosen buildings isn't valid."
    due: date | None = None
    picked = element(values, FeeBlock.DUE).get("selected_date")
    if picked:
        try:
            due = date.fromisoformat(str(picked))
        except ValueError:
            errors[FeeBlock.DUE] = "Pick a due date from the calendar."
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
    verb = "Added" if created else "Updated"
    return (
        f":white_check_mark: {verb} the fee for {esc(fee.school_year)}: "
        f"{fee_line(fee, buildings)}\n"
        f"`/billing fees preview {esc(fee.code)} {esc(fee.school_year)}` shows whom it would bill."
    )
