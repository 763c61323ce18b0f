"""Block Kit primitives every feature builds with: text objects, sections, buttons, modals,
escaping and dates, and reading an input's value back out of a submitted form. No I/O."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_time

from workflows.i18n import (
    DEFAULT_LANGUAGE,
    _,
    format_locale,
    format_short_date,
    staff_language,
)

Block = dict[str, Any]

MINUS = "\u2212"  # a typographic minus: insurance reads as a deduction


def esc(text: str | None) -> str:
    """Text people typed, made inert in mrkdwn (no mentions, links or broadcasts)."""
    return (text or "").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def fmt_date(day: date) -> str:
    language = staff_language()
    if language != DEFAULT_LANGUAGE:
        return format_short_date(day, language)
    return f"{day:%b} {day.day}, {day.year}"


def fmt_when(at: datetime, tz: ZoneInfo) -> str:
    local = at.astimezone(tz)
    language = staff_language()
    if language != DEFAULT_LANGUAGE:
        time = format_time(local, "short", locale=format_locale(language))
        return f"{fmt_date(local.date())} {time} {local.tzname()}"
    hour = local.hour % 12 or 12
    return f"{fmt_date(local.date())} {hour}:{local:%M} {local:%p} {local.tzname()}"


def plain(text: str, limit: int = 150) -> Block:
    if len(text) > limit:
        text = text[: limit - 1] + "\u2026"
    return {"type": "plain_text", "text": text, "emoji": True}


def mrkdwn(text: str) -> Block:
    return {"type": "mrkdwn", "text": text[:3000]}


def section(text: str, *, block_id: str | None = None, accessory: Block | None = None) -> Block:
    block: Block = {"type": "section", "text": mrkdwn(text)}
    if block_id:
        block["block_id"] = block_id
    if accessory:
        block["accessory"] = accessory
    return block


def fields_section(fields: list[Block], *, block_id: str | None = None) -> Block:
    """A section of short facts side by side (Slack shows at most 10)."""
    block: Block = {"type": "section", "fields": fields[:10]}
    if block_id:
        block["block_id"] = block_id
    return block


def context_block(*texts: str) -> Block:
    return {"type": "context", "elements": [mrkdwn(t) for t in texts if t][:10]}


def header(text: str) -> Block:
    return {"type": "header", "text": plain(text)}


def button(
    text: str, action_id: str, value: str, *, style: str | None = None, confirm: Block | None = None
) -> Block:
    element: Block = {
        "type": "button",
        "text": plain(text, 75),
        "action_id": action_id,
        "value": value,
    }
    if style:
        element["style"] = style
    if confirm:
        element["confirm"] = confirm
    return element


def modal(
    callback_id: str,
    title: str,
    blocks: list[Block],
    *,
    submit: str | None = None,
    close: str | None = None,
    private_metadata: str = "",
) -> Block:
    view: Block = {
        "type": "modal",
        "callback_id": callback_id,
        "title": plain(title, 24),
        "close": plain(_("Cancel") if close is None else close, 24),
        "blocks": blocks,
        "private_metadata": private_metadata,
    }
    if submit:
        view["submit"] = plain(submit, 24)
    return view


def option(text: str, value: str) -> Block:
    return {"text": plain(text, 75), "value": value}


# --- a modal's inputs ------------------------------------------------------------------------


def input_block(
    block_id: str,
    label: str,
    element: Block,
    *,
    optional: bool = False,
    hint: str | None = None,
    dispatch_action: bool = False,
    action_id: str | None = None,
) -> Block:
    """An input. Its element's action id is the block id unless told otherwise: our convention,
    so that `element()` reads the value back by one name."""
    block: Block = {
        "type": "input",
        "block_id": block_id,
        "optional": optional,
        "label": plain(label),
        "element": {**element, "action_id": action_id or block_id},
    }
    if hint:
        block["hint"] = plain(hint)
    if dispatch_action:
        block["dispatch_action"] = True
    return block


def text_input(
    *,
    placeholder: str | None = None,
    max_length: int | None = None,
    multiline: bool = False,
    initial: str | None = None,
    on_enter: bool = False,  # the input's own action fires on Enter (a scanner sends one)
) -> Block:
    element: Block = {"type": "plain_text_input"}
    if multiline:
        element["multiline"] = True
    if max_length is not None:
        element["max_length"] = max_length
    if placeholder:
        element["placeholder"] = plain(placeholder)
    if initial:
        element["initial_value"] = initial
    if on_enter:
        element["dispatch_action_config"] = {"trigger_actions_on": ["on_enter_pressed"]}
    return element


def date_input(initial: date) -> Block:
    return {"type": "datepicker", "initial_date": initial.isoformat()}


def select_input(
    options: list[Block],
    *,
    placeholder: str | None = None,
    initial: Block | None = None,
    multi: bool = False,
    initial_options: list[Block] | None = None,  # with `multi`: those picked already
) -> Block:
    element: Block = {"type": "multi_static_select" if multi else "static_select"}
    if placeholder:
        element["placeholder"] = plain(placeholder)
    element["options"] = options
    if initial is not None:
        element["initial_option"] = initial
    if initial_options:
        element["initial_options"] = initial_options
    return element


def checkbox(choice: Block, *, checked: bool) -> Block:
    """One checkbox to tick (an override, a confirmation); `choice` is its option."""
    element: Block = {"type": "checkboxes", "options": [choice]}
    if checked:
        element["initial_options"] = [choice]
    return element


# --- reading a submitted form ---------------------------------------------------------------


def form_values(view: Mapping[str, Any]) -> Mapping[str, Any]:
    """A submitted (or updated) view's input state: {block_id: {action_id: element}}."""
    return (view.get("state") or {}).get("values") or {}


def element(values: Mapping[str, Any], block_id: str) -> dict[str, Any]:
    """The input in block `block_id` whose action id is the same string (our convention), or
    {} when the form doesn't have it; a value from outside may be any JSON type."""
    block = values.get(block_id)
    found = block.get(block_id) if isinstance(block, dict) else None
    return found if isinstance(found, dict) else {}


def has_input(values: Mapping[str, Any], block_id: str) -> bool:
    """Whether the form showed that input at all (some inputs appear only for some people)."""
    block = values.get(block_id)
    return isinstance(block, dict) and isinstance(block.get(block_id), dict)
