"""`devicecare ledger check`: does every invoice's money add up?

Exit status: 0 when every invoice is consistent, 1 when any is not (each is listed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from bot.cli.run import run_with_runtime
from bot.runtime import Runtime
from bot.settings import get_settings
from storage.reconcile import Discrepancy, discrepancies, invoice_count
from workflows.i18n import N_, _

ledger_app = typer.Typer(
    help=N_("The invoices' money, checked against its records."), no_args_is_help=True
)
console = Console()
EXIT_INCONSISTENT = 1


@dataclass(frozen=True)
class LedgerCheck:
    invoices: int
    found: list[Discrepancy]


@ledger_app.command(
    "check",
    help=N_(
        "Check every invoice: billed = covered + collected + waived + refunded + outstanding,\n"
        "paid, waived and refunded each equal to the rows behind them, and no negative balance."
    ),
)
def check_command(
    limit: Annotated[
        int,
        typer.Option("--limit", min=1, help=N_("List at most this many inconsistent invoices.")),
    ] = 1000,
) -> None:
    async def work(runtime: Runtime) -> LedgerCheck:
        # One read transaction: the count and the check see the same snapshot.
        async with runtime.reads() as store:
            count = await invoice_count(store)
            found = await discrepancies(store, limit=limit + 1)
        return LedgerCheck(int(count), found)

    result = run_with_runtime(get_settings(), work, console=console)
    if not result.found:
        console.print(_("{count} invoices checked, all consistent", count=result.invoices))
        return
    shown = result.found[:limit]
    for d in shown:
        # One line each, never cut short: this output is what someone will go and fix.
        console.print(
            f"{escape(d.number)} ({escape(d.status)}): {escape('; '.join(d.problems()))}",
            soft_wrap=True,
        )
    if len(result.found) > limit:
        said = _(
            "[red]{count} (or more) of {total} invoices checked are inconsistent.[/red]",
            count=len(shown),
            total=result.invoices,
        )
    else:
        said = _(
            "[red]{count} of {total} invoices checked are inconsistent.[/red]",
            count=len(shown),
            total=result.invoices,
        )
    console.print(said)
    raise typer.Exit(EXIT_INCONSISTENT)
