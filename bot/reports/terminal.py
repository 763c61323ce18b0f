"""How reports read in a terminal: rich tables and lines for `devicecare report <name>`."""

from __future__ import annotations

from datetime import date, datetime, tzinfo

from rich.table import Table
from rich.text import Text

from bot.reports.csv_rows import csv_row
from storage.billing_reports import STATUS_ORDER, AutomationReport, CancelledReport, status_label
from storage.weekly_digest import WeeklyDigest
from workflows.i18n import N_, _
from workflows.labels import flags_text
from workflows.money import format_cents
from workflows.reports import ReportResult

SHOWN = 20  # rows of a catalogue report printed; --csv has them all


def local(at: datetime | None, tz: tzinfo) -> str:
    return "" if at is None else at.astimezone(tz).strftime("%Y-%m-%d %H:%M")


def day(value: date | None) -> str:
    return "" if value is None else value.isoformat()


def rows_table(result: ReportResult, tz: tzinfo) -> Table:
    """A report's first rows, cells written as its CSV writes them."""
    spec = result.spec
    table = Table(title=_(spec.title), title_justify="left")
    for name in spec.headers:
        table.add_column(name, justify="right" if name in spec.money else "left")
    for row in result.rows[:SHOWN]:
        table.add_row(*(Text(v) for v in csv_row(spec, row, tz)))
    return table


def automation_summary_table(report: AutomationReport) -> Table:
    table = Table(title=_("Open invoices by automation"), title_justify="left")
    table.add_column(_("status"))
    for column in (N_("automation on"), N_("balance"), N_("automation off"), N_("balance")):
        table.add_column(_(column), justify="right")
    figures = {(g.automation_enabled, g.status): g for g in report.groups}
    statuses = [s for s in STATUS_ORDER if any(g.status == s for g in report.groups)]
    for status in statuses:
        on, off = figures.get((True, status)), figures.get((False, status))
        table.add_row(
            _(status_label(status)),
            str(on.count if on else 0),
            format_cents(on.balance_cents if on else 0),
            str(off.count if off else 0),
            format_cents(off.balance_cents if off else 0),
        )
    table.add_row(
        Text(_("total"), style="bold"),
        str(report.count(True)),
        format_cents(report.balance_cents(True)),
        str(report.count(False)),
        format_cents(report.balance_cents(False)),
    )
    return table


def automation_listing_table(report: AutomationReport, tz: tzinfo) -> Table:
    table = Table(title=_("Invoices, most overdue first"), title_justify="left")
    for column in (
        N_("invoice"),
        N_("student"),
        N_("status"),
        N_("due"),
        N_("balance"),
        N_("automation"),
        N_("reminders"),
    ):
        table.add_column(
            _(column), justify="right" if column in ("balance", "reminders") else "left"
        )
    table.add_column(_("last reminder"))
    for row in report.rows:
        table.add_row(
            row.number,
            Text(row.student),
            _(status_label(row.status)),
            day(row.due_date),
            format_cents(row.balance_cents),
            _("on") if row.automation_enabled else _("off"),
            str(row.reminder_count),
            local(row.last_reminder_at, tz),
        )
    return table


def cancelled_tables(report: CancelledReport, tz: tzinfo) -> tuple[Table, Table]:
    totals = Table(
        title=_("Cancelled invoices, {start} to {end}", start=report.date_from, end=report.date_to),
        title_justify="left",
    )
    totals.add_column("")
    totals.add_column(_("invoices"), justify="right")
    totals.add_column(_("amount"), justify="right")
    totals.add_row(_("Auto-Cancelled"), str(report.auto_count), format_cents(report.auto_cents))
    totals.add_row(
        _("Cancelled by staff"), str(report.manual_count), format_cents(report.manual_cents)
    )
    totals.add_row(
        Text(_("total"), style="bold"), str(report.count), format_cents(report.amount_cents)
    )
    listing = Table()
    for column in (
        N_("invoice"),
        N_("student"),
        N_("amount"),
        N_("cancelled"),
        N_("designation"),
        N_("by"),
        N_("reason"),
    ):
        listing.add_column(_(column), justify="right" if column == "amount" else "left")
    for row in report.rows:
        listing.add_row(
            row.number,
            Text(row.student),
            format_cents(row.amount_cents),
            local(row.cancelled_at, tz),
            row.designation,
            Text(row.cancelled_by or ""),
            Text(row.reason or ""),
        )
    return totals, listing


def digest_lines(digest: WeeklyDigest) -> list[str]:
    names = "; ".join(f"{o.student} ({flags_text(o.flags)})" for o in digest.offenders)
    more = digest.offender_count - len(digest.offenders)
    if more > 0:
        names += "; " + _("and {count} more", count=more)
    offenders = _("New repeat offenders: {count}", count=digest.offender_count)
    return [
        _("Weekly digest {start} to {end}", start=digest.week_start, end=digest.week_end),
        _("Incidents opened: {count}", count=digest.incidents_opened),
        _("Incidents closed: {count}", count=digest.incidents_closed),
        _(
            "Money recovered: {recovered} (payments {payments}, refunds {refunds})",
            recovered=format_cents(digest.recovered_cents),
            payments=format_cents(digest.payments_cents),
            refunds=format_cents(digest.refunds_cents),
        ),
        _(
            "Overdue now: {count} invoice(s), {amount} (as of {day})",
            count=digest.overdue_count,
            amount=format_cents(digest.overdue_cents),
            day=digest.as_of,
        ),
        offenders + (f": {names}" if names else ""),
    ]
