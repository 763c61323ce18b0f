"""Block Kit for incidents: the new-incident modal, the card, and the card actions' modals.

Builders are plain functions of plain values; the listeners in `bot.slack.incidents` gather
those values from the store. Every block, action and callback id is an enum member here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any

from bot.signing import Keys
from bot.slack.blocks import (
    button,
    context_block,
    date_input,
    fields_section,
    header,
    input_block,
    modal,
    mrkdwn,
    option,
    plain,
    section,
    select_input,
    text_input,
)
from bot.slack.ids import IncidentAction, IncidentRef
from bot.slack.invoice_blocks import audit_text
from bot.slack.metadata import Payload, pack
from bot.slack.photo_lines import photo_line
from workflows.i18n import N_, _, ngettext
from workflows.incident_status import IncidentStatus
from workflows.insurance import CoverageBadge
from workflows.invoice_audit import InvoiceAudit
from workflows.money import format_cents
from workflows.offenders import INCIDENT_FLAGS, flag_label

INCIDENT_COMMAND = "/incident"
PHOTO_FILETYPES = ("jpg", "jpeg", "png", "gif", "webp", "heic")
MAX_PHOTO_FILES = 10
MAX_OPTIONS = 100
_INPUT_MAX = 3000  # Slack's limit for a plain_text_input's max_length / initial_value
MAX_CARD_INVOICES = 5  # the latest ones; `/billing invoice` shows any of them


class IncidentView(StrEnum):
    """Callback ids of the modals this feature opens."""

    NEW = "incident.new_modal"
    CHANGE_STATUS = "incident.status_modal"
    ADD_NOTE = "incident.note_modal"
    ADD_PHOTOS = "incident.photos_modal"
    OPENED = "incident.opened_modal"


class IncidentShortcut(StrEnum):
    """The shortcuts, as named in the Slack app's manifest (bot/slack/manifest.yml)."""

    OPEN_FROM_MESSAGE = "open_damage_incident"  # on a message: it becomes the linked ticket
    NEW = "new_damage_incident"  # global


class IncidentField(StrEnum):
    """Block ids of the modals' inputs; each input's action id is the same string."""

    DEVICE = "incident_device"
    STUDENT = "incident_student"
    FLAGS = "incident_flags"
    OCCURRED_ON = "incident_occurred_on"
    DESCRIPTION = "incident_description"
    PHOTOS = "incident_photos"
    STATUS = "incident_status"
    NOTE = "incident_note"


class CardBlock(StrEnum):
    ACTIONS = "incident_card_actions"


# Which input a DomainError's `field` belongs next to.
NEW_INCIDENT_ERROR_BLOCKS: dict[str, str] = {
    "device": IncidentField.DEVICE,
    "student": IncidentField.DEVICE,
    "flags": IncidentField.FLAGS,
    "occurred_on": IncidentField.OCCURRED_ON,
    "description": IncidentField.DESCRIPTION,
    "photo": IncidentField.PHOTOS,
}


class NewIncidentMeta(Payload):
    """private_metadata of the new-incident modal."""

    ticket_ref: str | None = None  # the permalink of the message the shortcut was used on


@dataclass(frozen=True)
class IncidentCard:
    """Everything the incident card shows, read from the store at delivery time."""

    incident_id: int
    status: IncidentStatus
    occurred_on: date
    flags: tuple[str, ...]
    description: str
    device_serial: str
    device_asset_tag: str | None
    device_model: str
    student_name: str | None
    student_grade: str | None
    building: str | None
    reported_by: str | None
    coverage: CoverageBadge
    offender_flags: tuple[str, ...]
    photo_count: int
    note_count: int
    ticket_ref: str | None
    # The incident's invoices with their audit lines (workflows.invoice_audit), oldest first.
    invoices: tuple[CardInvoice, ...] = ()
    # Links to the newest photos (bot.slack.photo_lines), newest first.
    photo_urls: tuple[str, ...] = ()
    # An invoice is at the cap on a policy that allows overrides, and none is waiting: the
    # card offers Request override (the workflow checks the clicker's permission).
    override_requestable: bool = False


@dataclass(frozen=True)
class CardInvoice:
    number: str
    status_label: str
    audit: InvoiceAudit
    as_of: str  # when the card read it ("Mar 2, 2026 9:00 AM CST"): payments move the balance
    # Where its emails stand (storage.notice_queries.delivery_summary): queued, sent, failed...
    delivery: str = ""


# --- text helpers ----------------------------------------------------------------------------


def escape_mrkdwn(text: str) -> str:
    """User-written text shown in mrkdwn: no mentions, links or markup can be smuggled in."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\n": "\n>"}


def quote_mrkdwn(text: str, limit: int = _INPUT_MAX - 100) -> str:
    """User-written text as an escaped mrkdwn quote of at most `limit` characters (escaping
    grows the text, so it is cut after escaping, never inside an entity)."""
    out = [">"]
    length = 1
    for ch in text.strip():
        piece = _ESCAPES.get(ch, ch)
        if length + len(piece) > limit - 1:
            out.append("…")
            break
        out.append(piece)
        length += len(piece)
    return "".join(out)


def unescape_message_text(text: str) -> str:
    """A Slack message's text as plain text for an input (Slack escapes &, < and >)."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def day_text(day: date) -> str:
    return f"{day:%b} {day.day}, {day.year}"


def device_label(serial: str, asset_tag: str | None, model: str) -> str:
    return " · ".join(part for part in (serial, asset_tag, model) if part)


def device_option(
    device_id: int, serial: str, asset_tag: str | None, model: str, student_name: str | None
) -> dict[str, Any]:
    """ "SERIAL · tag · model — Student Name", the type-ahead's option for a device."""
    label = device_label(serial, asset_tag, model)
    label += f" — {student_name}" if student_name else " — " + _("not assigned")
    return option(label, str(device_id))


def _flag_options(flags: Iterable[str]) -> list[dict[str, Any]]:
    return [option(flag_label(f), f) for f in flags]


def ticket_link(ticket_ref: str) -> str:
    """A linked ticket as mrkdwn: a link when it is a web address, plain text otherwise."""
    if ticket_ref.startswith(("https://", "http://")) and not any(c in ticket_ref for c in "<>|"):
        label = _("linked ticket")
        return f"<{ticket_ref}|{label}>"
    return escape_mrkdwn(ticket_ref)


# --- the new-incident modal ------------------------------------------------------------------


def build_new_incident_modal(
    *,
    metadata: str,
    today: date,
    device: dict[str, Any] | None = None,
    student_line: str | None = None,
    description: str = "",
) -> dict[str, Any]:
    """Device (type-ahead), who has it, incident types, date, description and photos.

    `device` is the selected option when the modal is redrawn after a pick; inputs keep what
    the user entered because block and action ids stay the same.
    """
    device_select: dict[str, Any] = {
        "type": "external_select",
        "placeholder": plain(_("Serial, asset tag or student name")),
        "min_query_length": 2,
    }
    if device is not None:
        device_select["initial_option"] = device
    description_input = text_input(
        multiline=True,
        max_length=_INPUT_MAX,
        placeholder=_("What happened, what's broken, anything the family said"),
        initial=description[:_INPUT_MAX],
    )
    blocks: list[dict[str, Any]] = [
        input_block(IncidentField.DEVICE, _("Device"), device_select, dispatch_action=True),
        {
            "type": "context",
            "block_id": IncidentField.STUDENT,
            "elements": [mrkdwn(student_line or _("Pick a device to see which student has it."))],
        },
        input_block(
            IncidentField.FLAGS,
            _("What happened"),
            select_input(
                _flag_options(INCIDENT_FLAGS),
                placeholder=_("Screen, keyboard, liquid damage…"),
                multi=True,
            ),
        ),
        input_block(IncidentField.OCCURRED_ON, _("Date it happened"), date_input(today)),
        input_block(IncidentField.DESCRIPTION, _("Description"), description_input, optional=True),
        _photos_input(),
    ]
    return modal(
        IncidentView.NEW,
        _("New damage incident"),
        blocks,
        submit=_("Open incident"),
        private_metadata=metadata,
    )


def _photos_input(*, optional: bool = True) -> dict[str, Any]:
    files = {"type": "file_input", "filetypes": list(PHOTO_FILETYPES), "max_files": MAX_PHOTO_FILES}
    return input_block(
        IncidentField.PHOTOS,
        _("Photos"),
        files,
        optional=optional,
        hint=_("Up to 10 photos (JPEG, PNG, GIF, WebP or HEIC), 5 MB each."),
    )


def student_line(name: str | None, grade: str | None, building: str | None, on: date) -> str:
    if name is None:
        return _("No student had this device on {date}.", date=day_text(on))
    in_grade = _("grade {grade}", grade=grade) if grade else None
    details = ", ".join(p for p in (in_grade, building) if p)
    who = f"*{escape_mrkdwn(name)}*" + (f" ({escape_mrkdwn(details)})" if details else "")
    return _(":bust_in_silhouette: {who} had this device on {date}.", who=who, date=day_text(on))


def build_incident_opened_modal(
    incident_id: int | None, channel: str | None, photo_count: int
) -> dict[str, Any]:
    """What the new-incident modal turns into: "being opened" at once (`incident_id` None),
    then the number once it is open."""
    where = _(" in {channel}", channel=f"<#{channel}>") if channel else ""
    if incident_id is None:
        text = _(
            ":hourglass_flowing_sand: Opening the incident. Its card will appear{where}; "
            "DeviceCare will message you if anything stops it.",
            where=where,
        )
    else:
        text = _(
            ":white_check_mark: Incident *#{number}* is open. Its card will appear{where}.",
            number=incident_id,
            where=where,
        )
    if photo_count:
        text += "\n" + ngettext(
            ":camera: {n} photo being checked; you'll hear about any that can't be used.",
            ":camera: {n} photos being checked; you'll hear about any that can't be used.",
            photo_count,
        )
    return modal(IncidentView.OPENED, _("Incident opened"), [section(text)], close=_("Done"))


# --- the card --------------------------------------------------------------------------------


def _coverage_text(badge: CoverageBadge) -> str:
    icon = {"active": ":shield:", "exhausted": ":warning:", "none": ":no_entry_sign:"}
    return f"{icon.get(badge.state, ':shield:')} *{escape_mrkdwn(badge.label)}* · {badge.detail}"


def build_incident_card_message(card: IncidentCard, secret: Keys) -> dict[str, Any]:
    """The card: `{"text", "blocks"}` for chat.postMessage, chat.update or an ephemeral reply."""
    flags = ", ".join(flag_label(f) for f in card.flags) or _("Incident")
    device = device_label(card.device_serial, card.device_asset_tag, card.device_model)
    student = _("Not assigned")
    if card.student_name:
        student = escape_mrkdwn(card.student_name)
        if card.student_grade:
            student = _(
                "{student} (grade {grade})",
                student=student,
                grade=escape_mrkdwn(card.student_grade),
            )
    fields = [
        mrkdwn(_("*Device*\n{device}", device=escape_mrkdwn(device))),
        mrkdwn(_("*Student*\n{student}", student=student)),
        mrkdwn(_("*Building*\n{building}", building=escape_mrkdwn(card.building or "—"))),
        mrkdwn(_("*Status*\n{status}", status=card.status.label)),
        mrkdwn(_("*Happened*\n{date}", date=day_text(card.occurred_on))),
        mrkdwn(_("*Reported by*\n{who}", who=escape_mrkdwn(card.reported_by or "—"))),
    ]
    blocks: list[dict[str, Any]] = [
        header(_("Incident #{number} · {flags}", number=card.incident_id, flags=flags)),
        fields_section(fields),
    ]
    if card.description:
        blocks.append(section(quote_mrkdwn(card.description)))
    badges = [_coverage_text(card.coverage)]
    if card.offender_flags:
        names = ", ".join(flag_label(f) for f in card.offender_flags)
        badges.append(_(":rotating_light: *Repeat offender:* {flags}", flags=escape_mrkdwn(names)))
    blocks.append(context_block(*badges))
    facts = [photo_line(card.photo_count, card.photo_urls)]
    if card.note_count:
        facts.append(ngettext(":memo: {n} note", ":memo: {n} notes", card.note_count))
    if card.ticket_ref:
        facts.append(f":link: {ticket_link(card.ticket_ref)}")
    blocks.append(context_block(" · ".join(facts)))
    for invoice in card.invoices[-MAX_CARD_INVOICES:]:
        number = escape_mrkdwn(invoice.number)
        heading = _(
            ":page_facing_up: *Invoice {number}* · {status} · balance *{balance}* · "
            "_as of {as_of}_",
            number=number,
            status=invoice.status_label,
            balance=format_cents(invoice.audit.owed_cents),
            as_of=invoice.as_of,
        )
        blocks.append(section(f"{heading}\n{audit_text(invoice.audit)}"[:2900]))
        if invoice.delivery:
            blocks.append(context_block(f":email: {escape_mrkdwn(invoice.delivery)}"[:2900]))
    ref = pack(IncidentRef(incident_id=card.incident_id), secret)
    buttons = [
        button(_("Change status"), IncidentAction.CHANGE_STATUS, ref),
        button(_("Add note"), IncidentAction.ADD_NOTE, ref),
        button(_("Add photos"), IncidentAction.ADD_PHOTOS, ref),
        button(_("Create invoice"), IncidentAction.CREATE_INVOICE, ref),
        button(_("Replace device"), IncidentAction.REPLACE_DEVICE, ref),
    ]
    if card.override_requestable:
        buttons.append(button(_("Request override"), IncidentAction.REQUEST_OVERRIDE, ref))
    if card.status is not IncidentStatus.CLOSED:
        buttons.append(button(_("Close"), IncidentAction.CLOSE, ref, style="danger"))
    blocks.append({"type": "actions", "block_id": CardBlock.ACTIONS, "elements": buttons})
    text = _(
        "Incident #{number}: {serial} · {flags} · {status}",
        number=card.incident_id,
        serial=card.device_serial,
        flags=flags,
        status=card.status.label,
    )
    return {"text": escape_mrkdwn(text), "blocks": blocks}


# --- the card actions' modals ----------------------------------------------------------------


def build_status_modal(
    *, metadata: str, incident_id: int, current: IncidentStatus, choices: Sequence[IncidentStatus]
) -> dict[str, Any]:
    """Only the statuses this user may move the incident to (the card itself is shared)."""
    statuses = select_input([option(s.label, s.value) for s in choices])
    return modal(
        IncidentView.CHANGE_STATUS,
        _("Incident #{number}", number=incident_id),
        [
            section(_("Now *{status}*.", status=current.label)),
            input_block(IncidentField.STATUS, _("New status"), statuses),
        ],
        submit=_("Change status"),
        private_metadata=metadata,
    )


def build_note_modal(*, metadata: str, incident_id: int) -> dict[str, Any]:
    note = input_block(
        IncidentField.NOTE,
        _("Note"),
        text_input(multiline=True, max_length=_INPUT_MAX),
        hint=_("Kept with the device for life, and posted in the card's thread."),
    )
    return modal(
        IncidentView.ADD_NOTE,
        _("Note on #{number}", number=incident_id),
        [note],
        submit=_("Add note"),
        private_metadata=metadata,
    )


def build_photos_modal(*, metadata: str, incident_id: int) -> dict[str, Any]:
    return modal(
        IncidentView.ADD_PHOTOS,
        _("Photos for #{number}", number=incident_id),
        [_photos_input(optional=False)],
        submit=_("Add photos"),
        private_metadata=metadata,
    )


# --- messages ---------------------------------------------------------------------------------


USAGE = N_(
    "*/incident* opens a new damage incident.\n*/incident 42* shows incident #42 and its actions."
)


def build_photo_report_message(
    incident_id: int,
    attached: Sequence[str],
    refused: Sequence[str],
    duplicates: Sequence[str] = (),
) -> str:
    """What happened to the files: names of those attached, and why the others weren't.

    `refused` holds complete sentences that already name their file.
    """
    lines: list[str] = []
    if attached:
        names = ", ".join(escape_mrkdwn(n) for n in attached)
        lines.append(
            ngettext(
                ":camera: Added {n} photo to incident #{incident}: {names}",
                ":camera: Added {n} photos to incident #{incident}: {names}",
                len(attached),
                incident=incident_id,
                names=names,
            )
        )
    lines.extend(
        _(
            ":paperclip: {name} is already on the record of incident #{incident} "
            "(the same photo was added before).",
            name=escape_mrkdwn(name),
            incident=incident_id,
        )
        for name in duplicates
    )
    lines.extend(f":warning: {escape_mrkdwn(reason)}" for reason in refused)
    return "\n".join(lines)
