"""Block Kit for `/billing report …` and `/billing invoice …`. Builders only; no I/O."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import date, tzinfo
from enum import StrEnum
from zoneinfo import ZoneInfo

from bot.signing import Keys
from bot.slack.blocks import (
    Block,
    button,
    context_block,
    esc,
    fields_section,
    fmt_date,
    fmt_when,
    header,
    mrkdwn,
    option,
    section,
)
from bot.slack.invoice_blocks import audit_text
from bot.slack.metadata import Payload, pack
from storage.billing_reports import (
    STATUS_ORDER,
    AutomationReport,
    CancelledReport,
    InvoiceHeader,
    InvoiceTimeline,
    TimelineEvent,
    status_label,
)
from workflows.errors import ValidationError
from workflows.i18n import N_, _, ngettext
from workflows.invoice_audit import InvoiceAudit
from workflows.invoices import MANUAL_STATUSES
from workflows.money import format_cents

REPORT_USAGE = N_(
    "Usage: `/billing report automation [on|off]` \u2014 open invoices by automation and "
    "status; `/billing report cancelled [from] [to]` \u2014 cancelled invoices, dates like "
    "2026-04-30 (from the 1st of this month to today unless given)."
)
MAX_SECTION = 2900  # Slack allows 3000 characters in a section's text
SHOWN_ROWS = 15
SHOWN_EVENTS = 20


class BillingInvoiceAction(StrEnum):
    STATUS = "billing_invoice.status"
    DUE_DATE = "billing_invoice.due_date"
    AUTOMATION = "billing_invoice.automation"
    OPEN = "billing_invoice.open"  # e.g. from the App Home: the invoice view, by DM


class InvoiceRef(Payload):
    """The value of an Open button: which invoice."""

    invoice_id: int


class InvoiceControls(Payload):
    """The block id of an invoice view's controls: which invoice they change."""

    invoice_id: int
    # A new block id each time the view is drawn: Slack keeps a control's last pick under an
    # unchanged block id, and the redrawn view must show the invoice as it now is.
    drawn: str = ""


class AutomationSwitch(Payload):
    """The automation button's value: the state it sets (not a toggle, so a replay is
    harmless)."""

    invoice_id: int
    enabled: bool


def typed_day(text: str) -> date:
    """A date someone typed or picked, or a ValidationError saying how to write one."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValidationError(
            _("\u201c{text}\u201d isn't a date; write it like 2026-04-30.", text=esc(text[:20])),
            field="date",
        ) from None


def _sections(lines: Sequence[str]) -> list[Block]:
    """Lines as few sections as Slack's length limit allows."""
    blocks: list[Block] = []
    chunk: list[str] = []
    size = 0
    for line in lines:
        if chunk and size + len(line) + 1 > MAX_SECTION:
            blocks.append(section("\n".join(chunk)))
            chunk, size = [], 0
        chunk.append(line[:MAX_SECTION])
        size += len(line) + 1
    if chunk:
        blocks.append(section("\n".join(chunk)))
    return blocks


def _fields(*texts: str) -> Block:
    return fields_section([mrkdwn(t) for t in texts])


def _invoices(n: int) -> str:
    return ngettext("{n} invoice", "{n} invoices", n)


def _reminders(n: int) -> str:
    return ngettext("{n} reminder", "{n} reminders", n)


# --- reports -----------------------------------------------------------------------------------


def _more(count: int, command: str) -> str:
    """The line under a cut list: how many are left out and the command that lists them."""
    return _("{count} more: {command} lists them all.", count=count, command=command)


def automation_report_text(report: AutomationReport) -> str:
    return _(
        "Open invoices: {on} with automation on ({on_balance}), {off} with it off ({off_balance}).",
        on=report.count(True),
        on_balance=format_cents(report.balance_cents(True)),
        off=report.count(False),
        off_balance=format_cents(report.balance_cents(False)),
    )


def build_automation_report(report: AutomationReport) -> tuple[str, list[Block]]:
    blocks: list[Block] = [
        header(_("Open invoices by automation")),
        _fields(
            _("*Automation on*")
            + f"\n{_invoices(report.count(True))} \u00b7 "
            + format_cents(report.balance_cents(True)),
            _("*Automation off*")
            + f"\n{_invoices(report.count(False))} \u00b7 "
            + format_cents(report.balance_cents(False)),
        ),
    ]
    figures = {(g.automation_enabled, g.status): g for g in report.groups}
    lines = []
    for status in STATUS_ORDER:
        on, off = figures.get((True, status)), figures.get((False, status))
        if on is None and off is None:
            continue
        lines.append(
            _(
                "\u2022 *{status}*: on {on} ({on_balance}) \u00b7 off {off} ({off_balance})",
                status=status_label(status),
                on=on.count if on else 0,
                on_balance=format_cents(on.balance_cents if on else 0),
                off=off.count if off else 0,
                off_balance=format_cents(off.balance_cents if off else 0),
            )
        )
    blocks += _sections(lines or [_("No open invoices.")])
    if report.automation is not None:
        which = "on" if report.automation else "off"  # the CLI's flag
        rows = [
            _(
                "\u2022 `{number}` {student} \u2014 {status}, {due}, {balance} owed, {reminders}",
                number=esc(r.number),
                student=esc(r.student),
                status=status_label(r.status),
                due=_("due {day}", day=fmt_date(r.due_date)) if r.due_date else _("no due date"),
                balance=format_cents(r.balance_cents),
                reminders=_reminders(r.reminder_count),
            )
            for r in report.rows
        ]
        if report.automation:
            title = _("*Automation on, most overdue first*")
            none = _("No open invoices with automation on.")
        else:
            title = _("*Automation off, most overdue first*")
            none = _("No open invoices with automation off.")
        blocks += _sections([title, *rows] if rows else [none])
        if report.listed > len(report.rows):
            command = f"`devicecare report automation --{which} --csv PATH`"
            blocks.append(context_block(_more(report.listed - len(report.rows), command)))
    else:
        blocks.append(
            context_block(
                _(
                    "List them with `/billing report automation on` or `off`; "
                    "`devicecare report automation --csv PATH` writes a spreadsheet."
                )
            )
        )
    return automation_report_text(report), blocks


def cancelled_report_text(report: CancelledReport) -> str:
    return _(
        "Cancelled {start} \u2013 {end}: {auto} auto-cancelled ({auto_amount}), "
        "{manual} by staff ({manual_amount}).",
        start=fmt_date(report.date_from),
        end=fmt_date(report.date_to),
        auto=report.auto_count,
        auto_amount=format_cents(report.auto_cents),
        manual=report.manual_count,
        manual_amount=format_cents(report.manual_cents),
    )


def build_cancelled_report(report: CancelledReport, tz: tzinfo) -> tuple[str, list[Block]]:
    blocks: list[Block] = [
        header(_("Cancelled invoices")),
        context_block(f"{fmt_date(report.date_from)} \u2013 {fmt_date(report.date_to)}"),
        _fields(
            _("*Auto-Cancelled*")
            + f"\n{_invoices(report.auto_count)} \u00b7 "
            + format_cents(report.auto_cents),
            _("*Cancelled by staff*")
            + f"\n{_invoices(report.manual_count)} \u00b7 "
            + format_cents(report.manual_cents),
        ),
    ]
    lines = []
    for r in report.rows:
        mark = _(":robot_face: *Auto-Cancelled*") if r.auto_cancelled else _("Cancelled")
        by = ""
        if r.cancelled_by and not r.auto_cancelled:
            by = " " + _("by {who}", who=esc(r.cancelled_by))
        reason = f" \u2014 _{esc(_one_line(r.reason))}_" if r.reason else ""
        lines.append(
            f"\u2022 `{esc(r.number)}` {esc(r.student)} \u2014 {format_cents(r.amount_cents)}, "
            f"{fmt_date(r.cancelled_at.astimezone(tz).date())} \u00b7 {mark}{by}{reason}"
        )
    blocks += _sections(lines or [_("No invoices were cancelled in that range.")])
    more = report.count - len(report.rows)
    command = (
        f"`devicecare report cancelled --from {report.date_from} --to {report.date_to} --csv PATH`"
    )
    if more > 0:
        blocks.append(context_block(_more(more, command)))
    elif report.rows:
        blocks.append(context_block(_("As a spreadsheet: {command}", command=command)))
    return cancelled_report_text(report), blocks


# --- one invoice -------------------------------------------------------------------------------


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _event_line(event: TimelineEvent, tz: ZoneInfo) -> str:
    by = f" \u2014 {esc(event.actor)}" if event.actor else ""
    note = f"\n      _{esc(_one_line(event.note))}_" if event.note else ""
    return f"`{fmt_when(event.at, tz)}` {esc(event.summary)}{by}{note}"


def _status_select(status: str) -> Block:
    options = [option(s.label, s.value) for s in MANUAL_STATUSES]
    element: Block = {
        "type": "static_select",
        "action_id": BillingInvoiceAction.STATUS,
        "placeholder": {"type": "plain_text", "text": _("Set status")},
        "options": options,
    }
    current = [o for o in options if o["value"] == status]
    if current:
        element["initial_option"] = current[0]
    return element


def _due_picker(due: date | None) -> Block:
    element: Block = {
        "type": "datepicker",
        "action_id": BillingInvoiceAction.DUE_DATE,
        "placeholder": {"type": "plain_text", "text": _("Due date")},
    }
    if due is not None:
        element["initial_date"] = due.isoformat()
    return element


def _balance(inv: InvoiceHeader) -> str:
    text = _(
        "{balance} (of {total})",
        balance=format_cents(inv.balance_cents),
        total=format_cents(inv.total_cents),
    )
    if inv.waived_cents:
        text += "\n" + _("{amount} waived", amount=format_cents(inv.waived_cents))
    if inv.refunded_cents:
        text += "\n" + _("{amount} refunded", amount=format_cents(inv.refunded_cents))
    return text


def build_invoice_view(
    timeline: InvoiceTimeline,
    *,
    tz: ZoneInfo,
    secret: Keys,
    can_edit: bool,
    can_automate: bool,
    notice: str | None = None,
    adjustments: Sequence[Block] = (),
    delivery: str | None = None,
    audit: InvoiceAudit | None = None,
) -> tuple[str, list[Block]]:
    """The invoice's facts, its emails (`delivery`: sent, viewed, paid), its controls (those
    the viewer may use), its waivers and refunds (`adjustments`, with their buttons) and its
    timeline."""
    inv = timeline.invoice
    owed = format_cents(inv.balance_cents)
    if inv.automation_enabled:
        text = _(
            "Invoice {number}: {status}, {amount} owed, automation on.",
            number=inv.number,
            status=inv.status_label,
            amount=owed,
        )
        automation = _("On")
    else:
        text = _(
            "Invoice {number}: {status}, {amount} owed, automation off.",
            number=inv.number,
            status=inv.status_label,
            amount=owed,
        )
        automation = _("Off")
    blocks: list[Block] = []
    if notice:
        blocks.append(section(notice))
    if inv.last_reminder_at is None:
        reminders = ngettext("{n} reminder sent", "{n} reminders sent", inv.reminder_count)
    else:
        reminders = ngettext(
            "{n} reminder sent, the last {when}",
            "{n} reminders sent, the last {when}",
            inv.reminder_count,
            when=fmt_when(inv.last_reminder_at, tz),
        )
    due = fmt_date(inv.due_date) if inv.due_date else _("No due date")
    blocks += [
        header(_("Invoice {number}", number=inv.number)),
        _fields(
            _("*Student*") + f"\n{esc(inv.student)}",
            _("*Status*") + f"\n{inv.status_label}",
            _("*Balance*") + f"\n{_balance(inv)}",
            _("*Due*") + f"\n{due}",
            _("*Automation*") + f"\n{automation}",
            _("*Reminders*") + f"\n{reminders}",
        ),
    ]
    if audit is not None:
        blocks.append(section(_("*Audit*") + "\n" + audit_text(audit)))
    if delivery:
        blocks.append(context_block(f":email: {esc(delivery)}"))
    elements: list[Block] = []
    if inv.is_open and can_edit:
        elements += [_status_select(inv.status), _due_picker(inv.due_date)]
    if inv.is_open and can_automate:
        turn_on = not inv.automation_enabled
        elements.append(
            button(
                _("Turn automation on") if turn_on else _("Turn automation off"),
                BillingInvoiceAction.AUTOMATION,
                pack(AutomationSwitch(invoice_id=inv.id, enabled=turn_on), secret),
                style="primary" if turn_on else None,
            )
        )
    if elements:
        blocks.append(
            {
                "type": "actions",
                "block_id": pack(
                    InvoiceControls(invoice_id=inv.id, drawn=secrets.token_hex(4)), secret
                ),
                "elements": elements,
            }
        )
    blocks += adjustments
    events = timeline.events[-SHOWN_EVENTS:]
    hidden = len(timeline.events) - len(events)
    lines = [_("*Timeline*")]
    if hidden:
        lines.append(
            ngettext(
                "_{n} earlier event(s): `devicecare invoice timeline {number}`_",
                "_{n} earlier event(s): `devicecare invoice timeline {number}`_",
                hidden,
                number=esc(inv.number),
            )
        )
    lines += [_event_line(e, tz) for e in events]
    blocks += _sections(lines)
    return text, blocks
