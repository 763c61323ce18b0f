"""Block Kit for `/collect`: one modal that alternates between scanning a device and checking it
in, so a technician at a table never leaves it.

Block ids carry a step number: Slack keeps what was typed in an input whose block id survives
a view update, and every scan must start from an empty input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

from bot.slack.blocks import (
    Block,
    context_block,
    esc,
    input_block,
    modal,
    option,
    section,
    select_input,
    text_input,
)
from bot.slack.invoice_blocks import fee_label
from bot.slack.metadata import Payload
from workflows.collection import (
    CollectionPreview,
    CollectionReason,
    CollectionResult,
    device_name,
)
from workflows.errors import ValidationError
from workflows.i18n import _, ngettext
from workflows.money import format_cents

COLLECT_COMMAND = "/collect"
MAX_CHECKBOXES = 10  # Slack's limit for checkboxes; longer schedules get a multi-select
MAX_SELECT_OPTIONS = 100
NOTE_MAX = 1000


class CollectView(StrEnum):
    SCAN = "collect.scan_modal"
    CHECK_IN = "collect.check_in_modal"


class CollectField(StrEnum):
    """Action ids of the inputs; their block ids are `<field>.<step>`."""

    TAG = "collect_tag"
    MISSING = "collect_missing"
    REASON = "collect_reason"
    NOTE = "collect_note"

    def block(self, step: int) -> str:
        return f"{self.value}.{step}"


class CollectSession(Payload):
    """private_metadata of the scan step: the table's running tally and last reason."""

    step: int = 0
    checked_in: int = 0
    billed_cents: int = 0
    reason: str = CollectionReason.END_OF_YEAR.value


class CheckInForm(Payload):
    """private_metadata of the check-in step: the scanned device and a key for this submit."""

    session: CollectSession
    device_id: int
    nonce: str


# --- reading the modals -------------------------------------------------------------------------


def _element(values: Mapping[str, Any], field: CollectField) -> dict[str, Any]:
    for block_id, actions in values.items():
        if block_id == field.value or str(block_id).startswith(f"{field.value}."):
            element = (actions or {}).get(field.value)
            if isinstance(element, dict):
                return element
    return {}


def read_code(values: Mapping[str, Any]) -> str:
    return str(_element(values, CollectField.TAG).get("value") or "")


def read_fee_ids(values: Mapping[str, Any]) -> tuple[int, ...]:
    ids: list[int] = []
    for chosen in _element(values, CollectField.MISSING).get("selected_options") or []:
        value = str((chosen or {}).get("value") or "")
        if not (value.isascii() and value.isdigit() and len(value) <= 12):
            raise ValidationError(_("One of the chosen items isn't valid."), field="missing")
        ids.append(int(value))
    return tuple(ids)


def read_reason(values: Mapping[str, Any]) -> str:
    chosen = _element(values, CollectField.REASON).get("selected_option") or {}
    return str(chosen.get("value") or "")


def read_note(values: Mapping[str, Any]) -> str:
    return str(_element(values, CollectField.NOTE).get("value") or "")


def error_block(field: str | None, step: int, *, fees_shown: bool) -> str | None:
    """The check-in input a workflow error belongs next to, or None to go back to scanning."""
    if field == "missing" and fees_shown:
        return CollectField.MISSING.block(step)
    if field == "note":
        return CollectField.NOTE.block(step)
    if field == "reason":
        return CollectField.REASON.block(step)
    return None


# --- text -------------------------------------------------------------------------------------


def _student_name(result: CollectionResult) -> str | None:
    s = result.student
    return None if s is None else f"{s.first_name} {s.last_name}".strip()


def result_line(result: CollectionResult) -> str:
    """One line for the top of the next scan, e.g.
    "✓ CB-1042 checked in from Ana Ruiz — invoice INV-000123 $35.00 (Charger)"."""
    name = _student_name(result)
    device = esc(device_name(result.device))
    if name:
        head = _(
            ":white_check_mark: *{device}* checked in from {student}",
            device=device,
            student=esc(name),
        )
    else:
        head = _(":white_check_mark: *{device}* checked in (not assigned to anyone)", device=device)
    items = ", ".join(esc(str(i.get("name", ""))) for i in result.items)
    if result.invoice is not None:
        tail = _(
            "invoice {number} {amount} ({items})",
            number=esc(result.invoice.number),
            amount=format_cents(result.invoice.total_cents),
            items=items,
        )
    elif result.items and name is None:
        tail = _("nothing billed, nobody holds it ({items} recorded as missing)", items=items)
    elif result.items:
        tail = _("nothing to bill ({items} recorded)", items=items)
    else:
        tail = _("nothing missing")
    again = " " + _("_(already recorded)_") if not result.created else ""
    return f"{head} \u2014 {tail}{again}"


def tally_line(session: CollectSession) -> str:
    if not session.checked_in:
        return ""
    return ngettext(
        "This session: {n} device checked in \u00b7 {billed} billed",
        "This session: {n} devices checked in \u00b7 {billed} billed",
        session.checked_in,
        billed=format_cents(session.billed_cents),
    )


# --- the scan step ------------------------------------------------------------------------------


def build_scan_modal(
    session: CollectSession,
    metadata: str,
    *,
    result: str | None = None,
    error: str | None = None,
) -> Block:
    """An empty asset-tag input that looks the device up on Enter (a scanner presses it)."""
    blocks: list[Block] = []
    if result:
        blocks.append(section(result))
    tally = tally_line(session)
    if tally:
        blocks.append(context_block(tally))
    tag = text_input(
        max_length=100, placeholder=_("Scan or type it, then press Enter"), on_enter=True
    )
    blocks.append(
        input_block(
            CollectField.TAG.block(session.step),
            _("Asset tag or serial"),
            {**tag, "focus_on_load": True},
            dispatch_action=True,
            action_id=CollectField.TAG,
        )
    )
    if error:
        blocks.append(context_block(f":warning: {esc(error)}"))
    return modal(
        CollectView.SCAN,
        _("Collect devices"),
        blocks,
        submit=_("Look up"),
        close=_("Done"),
        private_metadata=metadata,
    )


# --- the check-in step ----------------------------------------------------------------------


def _device_text(preview: CollectionPreview) -> str:
    d = preview.device
    parts = [f"*{esc(device_name(d))}*", esc(d.model) if d.model else ""]
    if d.asset_tag:
        parts.append(_("serial {serial}", serial=esc(d.serial)))
    text = " \u00b7 ".join(p for p in parts if p)
    s = preview.student
    if s is None:
        text += "\n" + _(
            ":warning: Not assigned to anyone: it can be checked in, and what you mark is "
            "recorded, but nothing can be billed."
        )
    else:
        grade = " (" + _("grade {grade}", grade=esc(s.grade)) + ")" if s.grade else ""
        held = _(
            ":bust_in_silhouette: Held by *{first_name} {last_name}*",
            first_name=esc(s.first_name),
            last_name=esc(s.last_name),
        )
        text += f"\n{held}{grade}"
    return text


def _missing_block(fees: Sequence[Any], step: int) -> Block:
    options = [option(fee_label(f), str(f.id)) for f in list(fees)[:MAX_SELECT_OPTIONS]]
    element: Block
    if len(options) <= MAX_CHECKBOXES:
        element = {"type": "checkboxes", "options": options}
    else:
        element = select_input(options, placeholder=_("Missing or damaged items"), multi=True)
    return input_block(
        CollectField.MISSING.block(step),
        _("Missing or damaged"),
        element,
        optional=True,
        hint=_("Leave empty when everything came back."),
        action_id=CollectField.MISSING,
    )


def build_check_in_modal(preview: CollectionPreview, form: CheckInForm, metadata: str) -> Block:
    step = form.session.step
    blocks: list[Block] = [section(_device_text(preview))]
    if preview.fees:
        blocks.append(_missing_block(preview.fees, step))
    else:
        blocks.append(
            context_block(_("No collection fees are set up, so nothing can be marked missing."))
        )
    reasons = [option(r.label, r.value) for r in CollectionReason]
    chosen = next((o for o in reasons if o["value"] == form.session.reason), reasons[0])
    radio = {"type": "radio_buttons", "options": reasons, "initial_option": chosen}
    blocks.append(
        input_block(
            CollectField.REASON.block(step), _("Reason"), radio, action_id=CollectField.REASON
        )
    )
    note = text_input(
        multiline=True,
        max_length=NOTE_MAX,
        placeholder=_("Anything worth keeping on the device's record"),
    )
    blocks.append(
        input_block(
            CollectField.NOTE.block(step),
            _("Note"),
            note,
            optional=True,
            action_id=CollectField.NOTE,
        )
    )
    tally = tally_line(form.session)
    if tally:
        blocks.append(context_block(tally))
    return modal(
        CollectView.CHECK_IN,
        _("Collect devices"),
        blocks,
        submit=_("Check in"),
        close=_("Done"),
        private_metadata=metadata,
    )


def _block_ids(view: Mapping[str, Any], field: CollectField) -> list[str]:
    return [
        str(b.get("block_id"))
        for b in view.get("blocks") or []
        if str(b.get("block_id") or "").startswith(f"{field.value}.")
    ]


def has_fee_input(view: Mapping[str, Any]) -> bool:
    return bool(_block_ids(view, CollectField.MISSING))


def tag_block(view: Mapping[str, Any]) -> str:
    """The block id of the scan input actually on screen (errors must name it)."""
    found = _block_ids(view, CollectField.TAG)
    return found[0] if found else CollectField.TAG.block(0)
