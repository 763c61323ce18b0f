"""`devicecare report …` and `devicecare invoice timeline`: the business office's billing reports.

Tables go to stdout; `--csv PATH` writes every row (paged from the database) with fixed headers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import date, datetime, tzinfo
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy.ext.asyncio import AsyncSession

from bot.csv_out import Number, csv_writer
from bot.settings import Settings, get_settings
from storage import migrate
from storage.billing_reports import (
    STATUS_ORDER,
    AutomationReport,
    AutomationRow,
    CancelledReport,
    CancelledRow,
    InvoiceTimeline,
    automation_report,
    cancelled_report,
    check_range,
    find_invoice_id,
    invoice_timeline,
    status_label,
)
from storage.db import create_engine, is_sqlite, session_factory
from workflows.errors import DomainError, NotFound
from workflows.money import format_cents, to_decimal

report_app = typer.Typer(help="Billing reports for the business office.", no_args_is_help=True)
invoice_app = typer.Typer(help="One invoice's record.", no_args_is_help=True)

T = TypeVar("T")
PAGE = 1000  # rows per query when writing a CSV
SHOWN = 50  # rows in a terminal listing; --csv has them all

AUTOMATION_HEADERS = (
    "invoice_number",
    "student",
    "status",
    "due_date",
    "balance",
    "automation",
    "reminder_count",
    "last_reminder_at",
)
CANCELLED_HEADERS = (
    "invoice_number",
    "student",
    "amount",
    "cancelled_at",
    "auto_cancelled",
    "cancelled_by",
    "reason",
)
_SNAPSHOT = {"isolation_level": "REPEATABLE READ"}


def _console() -> Console:
    # Made per command so the terminal width is read when the command runs.
    return Console()


def _read(work: Callable[[AsyncSession, Settings], Awaitable[T]]) -> T:
    """Check the schema, run `work` in one read-only session, close; domain errors exit cleanly.

    The session reads one snapshot (SQLite's WAL read transaction; REPEATABLE READ on
    PostgreSQL), so a CSV written page by page adds up even while invoices change.
    """
    settings = get_settings()
    url = settings.database_url
    migrate.ensure_schema(url)

    async def main() -> T:
        engine = create_engine(url, **({} if is_sqlite(url) else _SNAPSHOT))
        try:
            async with session_factory(engine, read_only=True)() as session:
                return await work(session, settings)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except DomainError as exc:
        _console().print(Text(exc.message, style="red"))
        raise typer.Exit(1) from exc


def _iso(at: datetime | None, tz: tzinfo) -> str:
    return "" if at is None else at.astimezone(tz).isoformat(timespec="seconds")


def _local(at: datetime | None, tz: tzinfo) -> str:
    return "" if at is None else at.astimezone(tz).strftime("%Y-%m-%d %H:%M")


def _day(day: date | None) -> str:
    return "" if day is None else day.isoformat()


def automation_csv_row(row: AutomationRow, tz: tzinfo) -> list[str]:
    return [
        row.number,
        row.student,
        status_label(row.status),
        _day(row.due_date),
        Number(to_decimal(row.balance_cents)),
        "on" if row.automation_enabled else "off",
        str(row.reminder_count),
        _iso(row.last_reminder_at, tz),
    ]


def cancelled_csv_row(row: CancelledRow, tz: tzinfo) -> list[str]:
    return [
        row.number,
        row.student,
        Number(to_decimal(row.amount_cents)),
        _iso(row.cancelled_at, tz),
        "yes" if row.auto_cancelled else "no",
        row.cancelled_by or "",
        row.reason or "",
    ]


async def write_csv(
    path: Path, headers: tuple[str, ...], page: Callable[[int], Awaitable[list[list[str]]]]
) -> int:
    """Every row, fetched PAGE at a time by `page(offset)`; returns how many were written.

    Through the shared writer, so no name or reason is ever run as a formula."""
    count = 0
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv_writer(out)
        writer.writerow(headers)
        while True:
            rows = await page(count)
            writer.writerows(rows)
            count += len(rows)
            if len(rows) < PAGE:
                return count


# --- report automation -------------------------------------------------------------------------


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
            _day(row.due_date),
            format_cents(row.balance_cents),
            "on" if row.automation_enabled else "off",
            str(row.reminder_count),
            _local(row.last_reminder_at, tz),
        )
    return table


@report_app.command("automation")
def report_automation(
    on: Annotated[
        bool, typer.Option("--on", help="List only invoices with automation on.")
    ] = False,
    off: Annotated[
        bool, typer.Option("--off", help="List only invoices with automation off.")
    ] = False,
    csv_path: Annotated[
        Path | None,
        typer.Option("--csv", metavar="PATH", help="Write every listed invoice to this CSV."),
    ] = None,
) -> None:
    """Open invoices by automation on/off and status (counts and balances), and the list."""
    if on and off:
        raise typer.BadParameter("choose --on or --off, not both")
    automation = True if on else False if off else None

    async def work(session: AsyncSession, settings: Settings) -> tuple[AutomationReport, int]:
        report = await automation_report(session, automation=automation, limit=SHOWN)

        async def page(offset: int) -> list[list[str]]:
            found = await automation_report(
                session, automation=automation, limit=PAGE, offset=offset
            )
            return [automation_csv_row(r, settings.tz) for r in found.rows]

        written = 0 if csv_path is None else await write_csv(csv_path, AUTOMATION_HEADERS, page)
        return report, written

    report, written = _read(work)
    console = _console()
    console.print(automation_summary_table(report))
    which = {None: "", True: " with automation on", False: " with automation off"}[automation]
    if csv_path is not None:
        console.print(Text(f"Wrote {written} open invoice(s){which} to {csv_path}."))
        return
    if not report.rows:
        console.print(f"No open invoices{which}.")
        return
    console.print(automation_listing_table(report, get_settings().tz))
    if report.listed > len(report.rows):
        console.print(f"… and {report.listed - len(report.rows)} more; --csv PATH lists them all.")


# --- report cancelled --------------------------------------------------------------------------


def _parse_day(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} isn't a date like 2026-04-30", param_hint=option
        ) from None


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
            _local(row.cancelled_at, tz),
            row.designation,
            Text(row.cancelled_by or ""),
            Text(row.reason or ""),
        )
    return totals, listing


@report_app.command("cancelled")
def report_cancelled(
    date_from: Annotated[
        str, typer.Option("--from", metavar="YYYY-MM-DD", help="First day (district time).")
    ],
    date_to: Annotated[str, typer.Option("--to", metavar="YYYY-MM-DD", help="Last day, included.")],
    csv_path: Annotated[
        Path | None,
        typer.Option("--csv", metavar="PATH", help="Write every cancelled invoice to this CSV."),
    ] = None,
) -> None:
    """Invoices cancelled in a date range, with who and why, and the Auto-Cancelled ones."""
    start, end = _parse_day(date_from, "--from"), _parse_day(date_to, "--to")
    try:
        check_range(start, end)
    except DomainError as exc:
        raise typer.BadParameter(exc.message, param_hint="--to") from exc

    async def work(session: AsyncSession, settings: Settings) -> tuple[CancelledReport, int]:
        tz = settings.tz
        report = await cancelled_report(session, start, end, tz=tz, limit=SHOWN)

        async def page(offset: int) -> list[list[str]]:
            found = await cancelled_report(session, start, end, tz=tz, limit=PAGE, offset=offset)
            return [cancelled_csv_row(r, tz) for r in found.rows]

        written = 0 if csv_path is None else await write_csv(csv_path, CANCELLED_HEADERS, page)
        return report, written

    report, written = _read(work)
    console = _console()
    totals, listing = cancelled_tables(report, get_settings().tz)
    console.print(totals)
    if csv_path is not None:
        console.print(Text(f"Wrote {written} cancelled invoice(s) to {csv_path}."))
        return
    if report.rows:
        console.print(listing)
    if report.count > len(report.rows):
        console.print(f"… and {report.count - len(report.rows)} more; --csv PATH lists them all.")


# --- invoice timeline --------------------------------------------------------------------------


def timeline_header(timeline: InvoiceTimeline, tz: tzinfo) -> Text:
    inv = timeline.invoice
    reminders = f"{inv.reminder_count} reminder(s) sent"
    if inv.last_reminder_at is not None:
        reminders += f", the last {_local(inv.last_reminder_at, tz)}"
    money = f"total {format_cents(inv.total_cents)}, paid {format_cents(inv.paid_cents)}"
    if inv.waived_cents:
        money += f", waived {format_cents(inv.waived_cents)}"
    if inv.refunded_cents:
        money += f", refunded {format_cents(inv.refunded_cents)}"
    lines = [
        f"{inv.number} · {inv.student}",
        f"Status: {inv.status_label}",
        f"Balance: {format_cents(inv.balance_cents)} ({money})",
        f"Due: {_day(inv.due_date) or 'no due date'}",
        f"Automation: {'on' if inv.automation_enabled else 'off'} · {reminders}",
    ]
    return Text("\n".join(lines))


def timeline_table(timeline: InvoiceTimeline, tz: tzinfo) -> Table:
    table = Table(title="Timeline", title_justify="left")
    for column in ("when", "what", "", "by", "note"):
        table.add_column(column)
    for event in timeline.events:
        table.add_row(
            _local(event.at, tz),
            event.kind.value,
            Text(event.summary),
            Text(event.actor or ""),
            Text(event.note or ""),
        )
    return table


@invoice_app.command("timeline")
def invoice_timeline_command(
    number: Annotated[str, typer.Argument(help="The invoice number, e.g. INV-000001.")],
) -> None:
    """Everything that happened to one invoice, and every email sent about it, in time order."""

    async def work(session: AsyncSession, settings: Settings) -> InvoiceTimeline:
        invoice_id = await find_invoice_id(session, number)
        found = (
            None
            if invoice_id is None
            else await invoice_timeline(session, invoice_id, tz=settings.tz)
        )
        if found is None:
            raise NotFound(f"There's no invoice {number.strip()}.")
        return found

    timeline = _read(work)
    tz = get_settings().tz
    console = _console()
    console.print(timeline_header(timeline, tz))
    console.print(timeline_table(timeline, tz))
