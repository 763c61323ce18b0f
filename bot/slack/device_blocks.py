"""Block Kit for devices: the replace-device modal and the `/device` lifetime record."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from bot.signing import Keys
from bot.slack.blocks import (
    Block,
    button,
    context_block,
    element,
    esc,
    fmt_date,
    header,
    input_block,
    modal,
    mrkdwn,
    plain,
    section,
    text_input,
)
from bot.slack.metadata import Payload, pack
from bot.slack.photo_lines import photo_line
from storage import models as m
from storage.device_search import DeviceMatch
from storage.repositories.devices import DeviceHistory
from storage.sync_provenance import HolderSuggestion
from workflows.devices import ReplaceDevice
from workflows.enrollment import EnrollmentStatus
from workflows.i18n import N_, _
from workflows.insurance import CoverageBadge
from workflows.invoices import InvoiceStatus
from workflows.labels import (
    device_status_label,
    flags_text,
    incident_status_label,
    invoice_status_label,
)
from workflows.money import format_cents

DEVICE_COMMAND = "/device"
MAX_MATCHES = 10
MAX_ROWS = 10  # assignments and incidents shown in a record; the rest are counted
NOTE_PREVIEW = 200


class DeviceView(StrEnum):
    REPLACE = "device.replace"
    REPLACED = "device.replaced"


class DeviceBlock(StrEnum):
    """Block ids; each input's action id is the same string."""

    CURRENT = "device.current"
    NEW_SERIAL = "device.new_serial"
    NEW_ASSET_TAG = "device.new_asset_tag"
    NEW_MODEL = "device.new_model"
    REASON = "device.reason"


class DeviceAction(StrEnum):
    SHOW = "device.show"
    ASSIGN_SUGGESTED = "device.assign_suggested"


class DeviceRef(Payload):
    """The value of a "Show" button in a list of matches."""

    device_id: int


class SuggestedHolderRef(Payload):
    """The value of "Assign to …" under a source's most recent user: the holder as shown, so
    that a stale button can't undo a change made since."""

    device_id: int
    student_id: int
    shown_holder_id: int | None
    source: str


class ReplaceDeviceModal(Payload):
    """The replace-device modal's private_metadata."""

    incident_id: int
    device_id: int


FIELD_BLOCKS: dict[str, str] = {
    "new_serial": DeviceBlock.NEW_SERIAL,
    "new_asset_tag": DeviceBlock.NEW_ASSET_TAG,
    "device": DeviceBlock.NEW_SERIAL,
}

USAGE = N_(
    "Look a device up by serial, asset tag or student name, for example "
    "`/device 5CD1234XYZ`, `/device LMS-0001` or `/device Ana Rivera`."
)


# --- replace device -------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplaceForm:
    serial: str
    asset_tag: str | None
    model: str | None
    reason: str
    errors: dict[str, str] = field(default_factory=dict)

    def command(self, device_id: int) -> ReplaceDevice:
        return ReplaceDevice(
            old_device_id=device_id,
            new_serial=self.serial,
            new_asset_tag=self.asset_tag,
            new_model=self.model,
            reason=self.reason,
        )


def _text_of(values: Mapping[str, Any], block_id: str) -> str:
    return str(element(values, block_id).get("value") or "").strip()


def read_replace_form(values: Mapping[str, Any]) -> ReplaceForm:
    serial = _text_of(values, DeviceBlock.NEW_SERIAL)
    errors: dict[str, str] = {}
    if not serial:
        errors[DeviceBlock.NEW_SERIAL] = _("Enter the new device's serial number.")
    return ReplaceForm(
        serial=serial,
        asset_tag=_text_of(values, DeviceBlock.NEW_ASSET_TAG) or None,
        model=_text_of(values, DeviceBlock.NEW_MODEL) or None,
        reason=_text_of(values, DeviceBlock.REASON) or "replacement",
        errors=errors,
    )


def _input(block_id: str, text: str, placeholder: str, *, optional: bool, max_length: int) -> Block:
    element = text_input(placeholder=placeholder, max_length=max_length)
    return input_block(block_id, text, element, optional=optional)


def build_replace_device_modal(
    *,
    incident_id: int,
    device: m.Device,
    holder_name: str | None,
    secret: Keys,
) -> Block:
    tag = _(" \u00b7 tag {tag}", tag=esc(device.asset_tag)) if device.asset_tag else ""
    holder = esc(holder_name) if holder_name else _("_nobody_")
    blocks: list[Block] = [
        section(
            _(
                "Replacing *{serial}*{tag} \u00b7 {model}\nHeld by {holder}. The student moves "
                "to the new device; the old one keeps its history and is marked replaced.",
                serial=esc(device.serial),
                tag=tag,
                model=esc(device.model),
                holder=holder,
            ),
            block_id=DeviceBlock.CURRENT,
        ),
        _input(
            DeviceBlock.NEW_SERIAL,
            _("New serial number"),
            _("e.g. 5CD9876ABC"),
            optional=False,
            max_length=100,
        ),
        _input(
            DeviceBlock.NEW_ASSET_TAG,
            _("New asset tag"),
            _("Leave empty if none"),
            optional=True,
            max_length=100,
        ),
        _input(
            DeviceBlock.NEW_MODEL,
            _("New model"),
            _("Same as before: {model}", model=device.model)[:150],
            optional=True,
            max_length=200,
        ),
        # The placeholder is the reason stored when none is given, so it stays as stored.
        _input(DeviceBlock.REASON, _("Reason"), "replacement", optional=True, max_length=200),
    ]
    return modal(
        DeviceView.REPLACE,
        _("Replace device"),
        blocks,
        submit=_("Replace"),
        private_metadata=pack(
            ReplaceDeviceModal(incident_id=incident_id, device_id=device.id), secret
        ),
    )


def replaced_text(old: m.Device, new: m.Device, student_name: str) -> str:
    tag = _(" (tag {tag})", tag=esc(new.asset_tag)) if new.asset_tag else ""
    return _(
        "{student} now has *{serial}*{tag}; {old} is marked replaced and keeps its history.",
        student=esc(student_name),
        serial=esc(new.serial),
        tag=tag,
        old=esc(old.serial),
    )


def build_device_replacing_modal() -> Block:
    """The form's answer, at once; the replacement then shows in its place."""
    text = _(":hourglass_flowing_sand: Replacing the device; the result will show here.")
    return modal(DeviceView.REPLACED, _("Device replaced"), [section(text)], close=_("Done"))


def build_device_replaced_modal(
    old: m.Device, new: m.Device, student_name: str, *, again: bool = False
) -> Block:
    blocks = [section(":white_check_mark: " + replaced_text(old, new, student_name))]
    if again:
        blocks.append(context_block(_("_This form was already submitted; nothing else changed._")))
    return modal(DeviceView.REPLACED, _("Device replaced"), blocks, close=_("Done"))


def replaced_thread_text(old: m.Device, new: m.Device, student_name: str, by: str) -> str:
    return _(
        ":arrows_counterclockwise: Device replaced by {who}: {old} \u2192 {replaced}",
        who=esc(by),
        old=esc(old.serial),
        replaced=replaced_text(old, new, student_name),
    )


# --- /device ---------------------------------------------------------------------------------


def _student(student: m.Student) -> str:
    if not student.grade:
        return esc(student.full_name)
    return _("{student} (grade {grade})", student=esc(student.full_name), grade=esc(student.grade))


_BADGE_MARK = {
    "active": ":large_green_circle:",
    "exhausted": ":large_orange_circle:",
    "none": ":white_circle:",
}


def _assignment_lines(history: DeviceHistory, tz: ZoneInfo) -> list[str]:
    rows = history.assignments
    lines: list[str] = []
    for index, (assignment, student) in enumerate(rows):
        start = fmt_date(assignment.assigned_at.astimezone(tz).date())
        end = (
            _("now")
            if assignment.returned_at is None
            else fmt_date(assignment.returned_at.astimezone(tz).date())
        )
        line = f"\u2022 {esc(student.full_name)}: {start} \u2013 {end}"
        if index == 0 and history.replaces:
            serials = ", ".join(esc(d.serial) for d in history.replaces)
            line += _(" \u00b7 replaces {serials}", serials=serials)
        last = index == len(rows) - 1
        if last and assignment.returned_at is not None and history.replaced_by is not None:
            line += _(" \u00b7 replaced by {serial}", serial=esc(history.replaced_by.serial))
        elif assignment.returned_at is not None and assignment.return_reason:
            line += _(" \u00b7 returned ({reason})", reason=esc(assignment.return_reason))
        lines.append(line)
    lines.reverse()  # newest first
    if len(lines) > MAX_ROWS:
        lines = lines[:MAX_ROWS] + [_("_\u2026and {count} earlier_", count=len(lines) - MAX_ROWS)]
    return lines


def _invoice_text(invoice: m.Invoice) -> str:
    status = invoice_status_label(invoice.status)
    if invoice.status == InvoiceStatus.CANCELLED:
        return _("{number} cancelled", number=esc(invoice.number))
    text = _(
        "{number} {amount} owed",
        number=esc(invoice.number),
        amount=format_cents(invoice.total_cents),
    )
    if invoice.insurance_cents:
        text += _(" (insurance {amount})", amount=format_cents(invoice.insurance_cents))
    return text + f", {status}"


def _incident_lines(history: DeviceHistory) -> list[str]:
    lines: list[str] = []
    for incident, invoices in history.incidents[:MAX_ROWS]:
        status = incident_status_label(incident.status)
        flags = flags_text(incident.flag_names)
        day = fmt_date(incident.occurred_on)
        line = f"\u2022 #{incident.id} \u00b7 {day} \u00b7 {flags} \u00b7 {status}"
        if invoices:
            line += " \u00b7 " + "; ".join(_invoice_text(i) for i in invoices)
        else:
            line += " \u00b7 " + _("not invoiced")
        lines.append(line)
    if len(history.incidents) > MAX_ROWS:
        lines.append(_("_\u2026and {count} earlier_", count=len(history.incidents) - MAX_ROWS))
    return lines


def _note_lines(history: DeviceHistory, tz: ZoneInfo) -> list[str]:
    lines = []
    for note in history.notes:
        body = note.body if len(note.body) <= NOTE_PREVIEW else note.body[:NOTE_PREVIEW] + "\u2026"
        when = fmt_date(note.created_at.astimezone(tz).date())
        lines.append(f"\u2022 {when} \u00b7 {esc(note.author_label)}: {esc(body)}")
    if history.note_count > len(history.notes):
        lines.append(_("_\u2026and {count} older_", count=history.note_count - len(history.notes)))
    return lines


def _third_party_line(coverage: m.DeviceCoverage) -> str:
    plan = esc(coverage.plan)
    if coverage.provider and coverage.provider.lower() not in coverage.plan.lower():
        plan += f" ({esc(coverage.provider)})"
    return _(
        ":large_blue_circle: {plan} until {date}", plan=plan, date=fmt_date(coverage.coverage_end)
    )


def _enrollment_line(enrollment: m.InsuranceEnrollment, today: date | None) -> str:
    name = f"{esc(enrollment.policy.name)} {esc(enrollment.term_label)}"
    if enrollment.status == EnrollmentStatus.PENDING_PAYMENT:
        return _(":hourglass: {name}: awaiting premium; not covered until it is paid", name=name)
    if today is not None and enrollment.term_start > today:
        return _(
            ":calendar: {name}: active from {date}", name=name, date=fmt_date(enrollment.term_start)
        )
    return _(
        ":large_green_circle: {name}: active since {start}, until {end}",
        name=name,
        start=fmt_date(enrollment.term_start),
        end=fmt_date(enrollment.term_end),
    )


def coverage_lines(
    third_party: Sequence[m.DeviceCoverage],
    enrollments: Sequence[m.InsuranceEnrollment],
    today: date | None = None,
) -> list[str]:
    """The device's own coverage (e.g. AppleCare+) and the holder's enrollments."""
    return [_third_party_line(c) for c in third_party] + [
        _enrollment_line(e, today) for e in enrollments
    ]


def build_device_record(
    history: DeviceHistory,
    badge: CoverageBadge | None,
    tz: ZoneInfo,
    *,
    third_party: Sequence[m.DeviceCoverage] = (),
    enrollments: Sequence[m.InsuranceEnrollment] = (),
    today: date | None = None,
    photo_urls: Sequence[str] = (),
    synced: Sequence[Block] = (),
) -> tuple[str, list[Block]]:
    """The lifetime record: the device, who has it, coverage today and everything since;
    `synced` says where its facts came from (bot.slack.sync_blocks.sync_context)."""
    device = history.device
    building = esc(history.building.name) if history.building else _("no building")
    tag = esc(device.asset_tag) if device.asset_tag else _("none")
    blocks: list[Block] = [
        header(_("Device {serial}", serial=device.serial)),
        section(
            _(
                "*{model}* \u00b7 {kind}\nSerial *{serial}* \u00b7 asset tag *{tag}* \u00b7 "
                "status *{status}* \u00b7 {building}",
                model=esc(device.model) or _("Unknown model"),
                kind=esc(device.kind),
                serial=esc(device.serial),
                tag=tag,
                status=device_status_label(device.status),
                building=building,
            )
        ),
        *synced,
    ]
    links = []
    if history.replaced_by is not None:
        replaced_by = esc(history.replaced_by.serial)
        links.append(_(":arrow_right: Replaced by *{serial}*", serial=replaced_by))
    if history.replaces:
        serials = ", ".join(esc(d.serial) for d in history.replaces)
        links.append(_(":arrow_left: Replaces *{serials}*", serials=serials))
    if links:
        blocks.append(context_block(*links))
    holder = history.holder
    if holder is None:
        blocks.append(section(_("*Current holder*\n_Not assigned to anyone_")))
    else:
        blocks.append(section(_("*Current holder*\n{holder}", holder=_student(holder))))
        if badge is not None:
            mark = _BADGE_MARK.get(badge.state, "")
            blocks.append(
                section(
                    _(
                        "*Coverage today*\n{mark} {label} \u2014 {detail}",
                        mark=mark,
                        label=esc(badge.label),
                        detail=esc(badge.detail),
                    )
                )
            )
    extra = coverage_lines(third_party, enrollments, today)
    if extra:
        title = _("*Coverage*") if holder is None or badge is None else _("*Plans*")
        blocks.append(section(title + "\n" + "\n".join(extra)))
    assignments = _assignment_lines(history, tz)
    blocks.append(
        section(
            _("*Assignments* ({count})", count=len(history.assignments))
            + "\n"
            + ("\n".join(assignments) or _("_Never assigned_"))
        )
    )
    incidents = _incident_lines(history)
    blocks.append(
        section(
            _("*Incidents* ({count})", count=len(history.incidents))
            + "\n"
            + ("\n".join(incidents) or _("_None_"))
        )
    )
    notes = _note_lines(history, tz)
    blocks.append(
        section(
            _("*Notes* ({count})", count=history.note_count)
            + "\n"
            + ("\n".join(notes) or _("_None_"))
        )
    )
    blocks.append(context_block(photo_line(history.photo_count, photo_urls)))
    held = _("not assigned") if holder is None else _("held by {name}", name=holder.full_name)
    text = _(
        "Device {serial} ({model}): {status}, {held}",
        serial=device.serial,
        model=device.model,
        status=device_status_label(device.status),
        held=held,
    )
    return text, blocks


def build_device_matches(
    query: str,
    devices: Sequence[DeviceMatch],
    *,
    secret: Keys,
    more: bool = False,
) -> tuple[str, list[Block]]:
    text = _(
        "{count} devices match \u201c{query}\u201d; pick one.", count=len(devices), query=query
    )
    blocks: list[Block] = [
        section(
            _("{count} devices match \u201c{query}\u201d:", count=len(devices), query=esc(query))
        )
    ]
    for device in devices:
        tag = _(" \u00b7 tag {tag}", tag=esc(device.asset_tag)) if device.asset_tag else ""
        who = esc(device.holder_name) if device.holder_name else _("_not assigned_")
        blocks.append(
            section(
                f"*{esc(device.serial)}*{tag} \u00b7 {esc(device.model)}\n"
                f"{who} \u00b7 {device_status_label(device.status)}",
                accessory=button(
                    _("Show"),
                    DeviceAction.SHOW,
                    pack(DeviceRef(device_id=device.device_id), secret),
                ),
            )
        )
    if more:
        blocks.append(context_block(_("More devices match; type more of the name or serial.")))
    return text, blocks


def suggested_holder_button(
    device_id: int,
    suggestion: HolderSuggestion,
    holder_id: int | None,
    holder_name: str | None,
    *,
    secret: Keys,
) -> Block | None:
    """ "Assign to Ana Rivera": the source's most recent user made the holder, only when that
    user is a student in DeviceCare; replacing someone staff assigned asks first."""
    if suggestion.student_id is None or suggestion.student_id == holder_id:
        return None
    ref = SuggestedHolderRef(
        device_id=device_id,
        student_id=suggestion.student_id,
        shown_holder_id=holder_id,
        source=suggestion.source,
    )
    name = suggestion.student_name or suggestion.email
    confirm = None
    if holder_name is not None:
        confirm = {
            "title": plain(_("Reassign this device?")),
            "text": mrkdwn(
                _(
                    "DeviceCare has it assigned to *{holder}*. Assign it to *{name}* instead, "
                    "as {source} says?",
                    holder=esc(holder_name),
                    name=esc(name),
                    source=esc(suggestion.label),
                )
            ),
            "confirm": plain(_("Reassign")),
            "deny": plain(_("Cancel")),
        }
    return button(
        _("Assign to {name}", name=name),
        DeviceAction.ASSIGN_SUGGESTED,
        pack(ref, secret),
        confirm=confirm,
    )


def holder_assigned_text(serial: str, student_name: str, *, changed: bool) -> str:
    if changed:
        return _(
            ":white_check_mark: *{serial}* is now assigned to {student}.",
            serial=esc(serial),
            student=esc(student_name),
        )
    return _(
        ":white_check_mark: *{serial}* was already assigned to {student}.",
        serial=esc(serial),
        student=esc(student_name),
    )


def no_match_text(query: str) -> str:
    return _(
        ":mag: No device matches \u201c{query}\u201d. Type part of a serial or asset "
        "tag (three characters or more), or of a student's name or id.",
        query=esc(query),
    )
