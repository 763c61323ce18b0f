"""How reports read in a terminal: rich tables and lines for `devicecare report <name>`."""

from __future__ import annotations

from datetime import date, datetime, tzinfo

from rich.table import Table
from rich.text import Text

from bot.reports.csv_rows import csv_row
from storage.billing_reports import STATUS_ORDER, AutomationReport, CancelledReport, status_label
from storage.weekly_digest import WeeklyDigest
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
    table = Table(title=spec.title, title_justify="left")
    for name in spec.headers:
        table.add_column(name, justify="right" if name in spec.money else "left")
    for row in result.rows[:SHOWN]:
        table.add_row(*(Text(v) for v in csv_row(spec, row, tz)))
    return table


def automation_summary_table(report: AutomationReport) -> Table:
    table = Table(title="Open invoices by automation", title_justify="left")
    table.add_column("status")
    for column in ("automation on", "balance", "automation off", "balance"):
        table.add_column(column, justify="right")
    figures = {(g.automation_enabled, g.status): g for g in report.groups}
    statuses = [s for s in STATUS_ORDER if any(g.status == s for g in report.groups)]
    for status in statuses:
        on, off = figures.get((True, status)), figures.get((False, status))
        table.add_row(
            status_label(status),
            str(on.count if on else 0),
            format_cents(on.balance_cents if on else 0),
            str(off.count if off else 0),
            format_cents(off.balance_cents if off else 0),
        )
    table.add_row(
        Text("total", style="bold"),
        str(report.count(True)),
        format_cents(report.balance_cents(True)),
        str(report.count(False)),
        format_cents(report.balance_cents(False)),
    )
    return table


def automation_listing_table(report: AutomationReport, tz: tzinfo) -> Table:
    table = Table(title="Invoices, most overdue first", title_justify="left")
    for column in ("invoice", "student", "status", "due", "balance", "automation", "reminders"):
        table.add_column(column, justify="right" if column in ("balance", "reminders") else "left")
    table.add_column("last reminder")
    for row in report.rows:
        table.add_row(
            row.number,
            Text(row.student),
            status_label(row.status),
            day(row.due_date),
            format_cents(row.balance_cents),
            "on" if row.automation_enabled else "off",
            str(row.reminder_count),
            local(row.last_reminder_at, tz),
        )
    return table


def cancelled_tables(report: CancelledReport, tz: tzinfo) -> tuple[Table, Table]:
    totals = Table(
        title=f"Cancelled invoices, {report.date_from} to {report.date_to}", title_justify="left"
    )
    totals.add_column("")
    totals.add_column("invoices", justify="right")
    totals.add_column("amount", justify="right")
    totals.add_row("Auto-Cancelled", str(report.auto_count), format_cents(report.auto_cents))
    totals.add_row(
        "Cancelled by staff", str(report.manual_count), format_cents(report.manual_cents)
    )
    totals.add_row(
        Text("total", style="bold"), str(report.count), format_cents(report.amount_cents)
    )
    listing = Table()
    for column in ("invoice", "student", "amount", "cancelled", "designation", "by", "reason"):
        listing.add_column(column, justify="right" if column == "amount" else "left")
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
        names += f"; and {more} more"
    return [
        f"Weekly digest {digest.week_start} to {digest.week_end}",
        f"Incidents opened: {digest.incidents_opened}",
        f"Incidents closed: {digest.incidents_closed}",
        f"Money recovered: {format_cents(digest.recovered_cents)} (payments "
        f"{format_cents(digest.payments_cents)}, refunds {format_cents(digest.refunds_cents)})",
        f"Overdue now: {digest.overdue_count} invoice(s), {format_cents(digest.overdue_cents)} "
        f"(as of {digest.as_of})",
        f"New repeat offenders: {digest.offender_count}" + (f": {names}" if names else ""),
    ]
