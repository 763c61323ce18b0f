"""`devicecare invoice timeline`: one invoice's record, everything that happened to it in order."""

from __future__ import annotations

from datetime import tzinfo
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from bot.cli.run import run_with_runtime
from bot.reports.delivery import snapshot
from bot.reports.terminal import day, local
from bot.runtime import Runtime
from bot.settings import get_settings
from storage.billing_reports import InvoiceTimeline, find_invoice_id, invoice_timeline
from workflows.errors import NotFound
from workflows.money import format_cents

invoice_app = typer.Typer(help="One invoice's record.", no_args_is_help=True)


def timeline_header(timeline: InvoiceTimeline, tz: tzinfo) -> Text:
    inv = timeline.invoice
    reminders = f"{inv.reminder_count} reminder(s) sent"
    if inv.last_reminder_at is not None:
        reminders += f", the last {local(inv.last_reminder_at, tz)}"
    money = f"total {format_cents(inv.total_cents)}, paid {format_cents(inv.paid_cents)}"
    if inv.waived_cents:
        money += f", waived {format_cents(inv.waived_cents)}"
    if inv.refunded_cents:
        money += f", refunded {format_cents(inv.refunded_cents)}"
    lines = [
        f"{inv.number} · {inv.student}",
        f"Status: {inv.status_label}",
        f"Balance: {format_cents(inv.balance_cents)} ({money})",
        f"Due: {day(inv.due_date) or 'no due date'}",
        f"Automation: {'on' if inv.automation_enabled else 'off'} · {reminders}",
    ]
    return Text("\n".join(lines))


def timeline_table(timeline: InvoiceTimeline, tz: tzinfo) -> Table:
    table = Table(title="Timeline", title_justify="left")
    for column in ("when", "what", "", "by", "note"):
        table.add_column(column)
    for event in timeline.events:
        table.add_row(
            local(event.at, tz),
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
    settings = get_settings()
    console = Console()

    async def work(runtime: Runtime) -> InvoiceTimeline:
        async with snapshot(runtime) as store:
            invoice_id = await find_invoice_id(store, number)
            found = (
                None
                if invoice_id is None
                else await invoice_timeline(store, invoice_id, tz=settings.tz)
            )
        if found is None:
            raise NotFound(f"There's no invoice {number.strip()}.")
        return found

    timeline = run_with_runtime(settings, work, console=console)
    console.print(timeline_header(timeline, settings.tz))
    console.print(timeline_table(timeline, settings.tz))
