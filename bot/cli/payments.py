"""`devicecare payments import FILE.csv`: reconcile a school payment portal's export.

Acts as the command line itself (a system actor, named in the activity log), or with
`--as EMAIL` as that staff member, who then needs Record Payments.

Exit status: 0 when the file was processed (even with unmatched or rejected rows), 1 when the
file or the mapping can't be used (nothing is changed), 2 when the permission is refused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, NoReturn, TextIO

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bot.cli.run import as_staff_option, cli_actor, run_with_runtime
from bot.csv_out import Number, csv_writer
from bot.runtime import Runtime
from bot.settings import get_settings
from services.portal_import import PortalImporter
from storage.portal_file import read_export
from workflows.errors import NotFound, PermissionDenied
from workflows.i18n import N_, _
from workflows.money import format_cents
from workflows.portal_import import (
    ImportReport,
    MappingChoices,
    MappingProblem,
    Outcome,
    PortalFile,
    RowResult,
    build_mapping,
    choices_from_toml,
    portal_source,
)

payments_app = typer.Typer(
    help=N_("Payments made outside DeviceCare: import a school payment portal's export."),
    no_args_is_help=True,
)
console = Console()
EXIT_UNUSABLE = 1
EXIT_REFUSED = 2
REPORT_HEADERS = (
    "line",
    "outcome",
    "reference",
    "invoice",
    "amount",
    "date",
    "payer",
    "reason",
)
_OUTCOME_STYLE = {
    Outcome.APPLIED: "green",
    Outcome.ALREADY: "dim",
    Outcome.UNMATCHED: "yellow",
    Outcome.EXCESS: "yellow",
    Outcome.REVERSAL: "yellow",
    Outcome.REJECTED: "red",
}


@dataclass(frozen=True)
class Refused:
    message: str


@payments_app.command(
    "import",
    help=N_(
        "Apply the payments in a school payment portal's CSV export to the invoices.\n"
        "\n"
        "Every row is applied once: importing the same file again applies nothing twice."
    ),
)
def import_command(
    file: Annotated[
        Path, typer.Argument(metavar="FILE.csv", help=N_("The portal's payment export (CSV)."))
    ],
    preset: Annotated[
        str | None,
        typer.Option(
            "--preset",
            metavar="NAME",
            # The presets are named in full for the catalogue (a test checks they are all).
            help=N_(
                "The portal's usual column names (myschoolbucks, revtrak, schoolcash); "
                "any column option overrides its column."
            ),
        ),
    ] = None,
    mapping: Annotated[
        Path | None,
        typer.Option(
            "--mapping",
            metavar="FILE.toml",
            help=N_("Column names (and preset, portal, date_format) kept in a TOML file."),
        ),
    ] = None,
    invoice_column: Annotated[
        str | None,
        typer.Option(
            "--invoice-column",
            metavar="HEADER",
            help=N_("Column with the invoice number (or a memo naming it)."),
        ),
    ] = None,
    amount_column: Annotated[
        str | None,
        typer.Option("--amount-column", metavar="HEADER", help=N_("Column with the amount paid.")),
    ] = None,
    date_column: Annotated[
        str | None,
        typer.Option(
            "--date-column", metavar="HEADER", help=N_("Column with the day it was paid.")
        ),
    ] = None,
    reference_column: Annotated[
        str | None,
        typer.Option(
            "--reference-column",
            metavar="HEADER",
            help=N_('Column with the portal\'s transaction id; "" when the file has none.'),
        ),
    ] = None,
    payer_column: Annotated[
        str | None,
        typer.Option(
            "--payer-column", metavar="HEADER", help=N_("Column with who paid (optional).")
        ),
    ] = None,
    date_format: Annotated[
        str | None,
        typer.Option(
            "--date-format",
            metavar="FORMAT",
            help=N_("How dates are written, e.g. %m/%d/%Y (default: iso, 2026-03-05)."),
        ),
    ] = None,
    portal: Annotated[
        str | None,
        typer.Option(
            "--portal",
            metavar="NAME",
            help=N_(
                "The portal's name, part of each row's identity (default: PAYMENT_PORTAL_NAME)."
            ),
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help=N_("Show what would happen; change nothing."))
    ] = False,
    report: Annotated[
        Path | None,
        typer.Option(
            "--report",
            metavar="FILE.csv",
            help=N_(
                "Write the rows that need the business office (unmatched, excess, "
                "reversals, rejected) with the reasons."
            ),
        ),
    ] = None,
    as_email: Annotated[str | None, as_staff_option("Record Payments")] = None,
) -> None:
    settings = get_settings()
    try:
        given = MappingChoices(
            preset=preset,
            portal=portal,
            invoice=invoice_column,
            amount=amount_column,
            date=date_column,
            reference=reference_column,
            payer=payer_column,
            date_format=date_format,
        )
        if mapping is not None:
            given = given.over(choices_from_toml(_read_text(mapping), source=mapping.name))
        columns = build_mapping(given)
        source = portal_source(given.portal or settings.payment_portal_name)
    except MappingProblem as exc:
        _unusable(exc.message)
    try:
        export = read_export(file, columns)
    except MappingProblem as exc:
        _unusable(f"{file}: {exc.message}")
    if report is not None:
        _check_report(report)

    async def work(runtime: Runtime) -> ImportReport | Refused:
        importer = PortalImporter(runtime.stores, runtime.clock, runtime.settings.tz)
        try:
            actor = await cli_actor(runtime, as_email)
        except NotFound as exc:  # an unknown --as is a refusal here, like a missing permission
            return Refused(exc.message)
        try:
            return await importer.run(
                actor,
                export,
                source=source,
                date_format=columns.date_format,
                dry_run=dry_run,
            )
        except PermissionDenied as exc:
            return Refused(exc.message)

    result = run_with_runtime(settings, work, console=console)
    if isinstance(result, Refused):
        console.print(f"[red]{escape(result.message)} {_('Nothing was changed.')}[/red]")
        raise typer.Exit(EXIT_REFUSED)
    _print_report(result, export, file.name)
    if report is not None:
        try:
            with report.open("w", newline="", encoding="utf-8-sig") as handle:
                write_report(handle, result.attention)
        except OSError as exc:
            console.print(
                _(
                    "[red]The report {report} can't be written ({problem}); "
                    "the import above stands.[/red]",
                    report=escape(str(report)),
                    problem=escape(exc.strerror or str(exc)),
                )
            )
            raise typer.Exit(EXIT_UNUSABLE) from exc
        console.print(
            _(
                "Wrote {count} row(s) that need attention to {report}.",
                count=len(result.attention),
                report=escape(str(report)),
            )
        )


def _unusable(message: str) -> NoReturn:
    console.print(f"[red]{escape(message)} {_('Nothing was changed.')}[/red]")
    raise typer.Exit(EXIT_UNUSABLE)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise MappingProblem(
            _("The mapping file {name} can't be read ({problem}).", name=path.name, problem=exc)
        ) from exc


def _check_report(path: Path) -> None:
    """Before the import, so a report that can't be written stops it from starting."""
    folder = path.parent
    if path.is_dir() or not folder.is_dir() or not os.access(folder, os.W_OK):
        _unusable(_("The report {report} can't be written there.", report=path))
    if path.exists() and not os.access(path, os.W_OK):
        _unusable(_("The report {report} can't be overwritten.", report=path))


def write_report(handle: TextIO, rows: list[RowResult]) -> None:
    """The rows the business office must look at, with why, as CSV."""
    writer = csv_writer(handle)  # the shared writer: no cell from the file runs as a formula
    writer.writerow(REPORT_HEADERS)
    for r in rows:
        writer.writerow(
            [
                r.line,
                r.outcome.value,
                r.reference,
                r.invoice_number or r.invoice_text,
                r.amount_text if r.amount_cents is None else Number(_dollars(r.amount_cents)),
                r.date_text,
                r.payer,
                r.reason,
            ]
        )


def _dollars(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"


def _print_report(result: ImportReport, export: PortalFile, name: str) -> None:
    said = (
        N_("[bold]Dry run of {file}[/bold] as {source}: {count} row(s).")
        if result.dry_run
        else N_("[bold]Imported {file}[/bold] as {source}: {count} row(s).")
    )
    console.print(_(said, file=escape(name), source=escape(result.source), count=len(result.rows)))
    if result.dry_run:
        console.print(_("Nothing has been changed; this is what the import would do."))
    if export.columns.reference is None:
        console.print(
            _(
                "[yellow]The file has no transaction id column: each row is known by its "
                "content, so two identical rows count as one payment.[/yellow]"
            )
        )
    if result.rows:
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        table.add_column(_("line"), justify="right", no_wrap=True)
        table.add_column(_("outcome"), no_wrap=True)
        table.add_column(_("reference"), no_wrap=True)
        table.add_column(_("invoice"), no_wrap=True)
        table.add_column(_("amount"), justify="right", no_wrap=True)
        table.add_column(_("applied"), justify="right", no_wrap=True)
        table.add_column(_("date"), no_wrap=True)
        table.add_column(_("payer"))
        table.add_column(_("reason"))
        for r in result.rows:
            style = _OUTCOME_STYLE[r.outcome]
            table.add_row(
                str(r.line),
                f"[{style}]{r.outcome.value}[/{style}]",
                escape(r.reference),
                escape(r.invoice_number or r.invoice_text),
                format_cents(r.amount_cents)
                if r.amount_cents is not None
                else escape(r.amount_text),
                format_cents(r.applied_cents) if r.applied_cents else "",
                r.date_text and escape(r.date_text),
                escape(r.payer),
                escape(r.reason),
            )
        console.print(table)
    totals = Table(
        _("outcome"),
        _("rows"),
        _("amount"),
        title=_("Would happen") if result.dry_run else _("Totals"),
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    for total in result.totals():
        totals.add_row(total.outcome.value, str(total.rows), format_cents(total.amount_cents))
    console.print(totals)
    applied = (
        N_("would be applied to invoices: {amount}")
        if result.dry_run
        else N_("applied to invoices: {amount}")
    )
    console.print(_(applied, amount=format_cents(result.applied_cents)))
    if result.excess_cents:
        console.print(
            _("over what was owed (to refund): {amount}", amount=format_cents(result.excess_cents))
        )
    if result.attention:
        console.print(
            _(
                "[yellow]{count} row(s) need the business office: "
                "see the reasons above (or --report).[/yellow]",
                count=len(result.attention),
            )
        )
