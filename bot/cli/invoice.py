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
from workflows.i18n import N_, _
from workflows.money import format_cents

invoice_app = typer.Typer(help=N_("One invoice's record."), no_args_is_help=True)


def timeline_header(timeline: InvoiceTimeline, tz: tzinfo) -> Text:
    inv = timeline.invoice
    reminders = _("{count} reminder(s) sent", count=inv.reminder_count)
    if inv.last_reminder_at is not None:
        reminders += _(", the last {when}", when=local(inv.last_reminder_at, tz))
    money = _(
        "total {total}, paid {paid}",
        total=format_cents(inv.total_cents),
        paid=format_cents(inv.paid_cents),
    )
    if inv.waived_cents:
        money += _(", waived {amount}", amount=format_cents(inv.waived_cents))
    if inv.refunded_cents:
        money += _(", refunded {amount}", amount=format_cents(inv.refunded_cents))
    automation = _("on") if inv.automation_enabled else _("off")
    lines = [
        f"{inv.number} · {inv.student}",
        _("Status: {status}", status=_(inv.status_label)),
        _("Balance: {balance} ({money})", balance=format_cents(inv.balance_cents), money=money),
        _("Due: {day}", day=day(inv.due_date) or _("no due date")),
        _("Automation: {automation} · {reminders}", automation=automation, reminders=reminders),
    ]
    return Text("\n".join(lines))


def timeline_table(timeline: InvoiceTimeline, tz: tzinfo) -> Table:
    table = Table(title=_("Timeline"), title_justify="left")
    for column in (N_("when"), N_("what"), "", N_("by"), N_("note")):
        table.add_column(_(column) if column else "")
    for event in timeline.events:
        table.add_row(
            local(event.at, tz),
            event.kind.value,
            Text(event.summary),
            Text(event.actor or ""),
            Text(event.note or ""),
        )
    return table


@invoice_app.command(
    "timeline",
    help=N_(
        "Everything that happened to one invoice, and every email sent about it, in time order."
    ),
)
def invoice_timeline_command(
    number: Annotated[str, typer.Argument(help=N_("The invoice number, e.g. INV-000001."))],
) -> None:
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
            raise NotFound(_("There's no invoice {number}.", number=number.strip()))
        return found

    timeline = run_with_runtime(settings, work, console=console)
    console.print(timeline_header(timeline, settings.tz))
    console.print(timeline_table(timeline, settings.tz))
