"""`devicecare import`: load a district's roster and device inventory from CSV exports."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table
from rich.text import Text

from bot.cli.run import run_with_runtime
from bot.runtime import Runtime
from bot.settings import async_database_url, get_settings, supported_database_url
from services.roster import (
    CsvFileError,
    ImportResult,
    ProgressCallback,
    RosterFileError,
    check_files,
    import_roster,
    roster_files,
)
from workflows.i18n import N_, _

# Below this many rows a file imports in a blink and a progress bar would only flicker.
LARGE_FILE_ROWS = 2000
MAX_PROBLEMS_SHOWN = 50


def import_command(
    folder: Annotated[
        Path,
        typer.Argument(
            help=N_("Folder holding the OneRoster 1.1 CSV files (orgs.csv and users.csv)."),
            exists=True,
            file_okay=False,
            dir_okay=True,
        ),
    ],
    devices: Annotated[
        Path | None,
        typer.Option(
            "--devices",
            metavar="FILE",
            help=N_("Device inventory CSV, as exported from Google Admin (Chrome devices)."),
            exists=True,
            file_okay=True,
            dir_okay=False,
        ),
    ] = None,
    strict: Annotated[
        bool,
        typer.Option("--strict", help=N_("Write nothing at all if any row has a problem.")),
    ] = False,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help=N_("Database to import into. Defaults to DATABASE_URL from the settings."),
        ),
    ] = None,
) -> None:
    """Import buildings, students, guardians and devices from the district's CSV exports.

    Rows are matched by sourcedId and serial, so running it again with the same files changes
    nothing. Rows with problems are listed with their line and skipped; the others are imported
    (exit status 0, or 1 with --strict). A file that isn't UTF-8 CSV or lacks a column it needs
    changes nothing and exits 1.
    """
    try:
        roster_files(folder)  # fail on a missing file before touching the database
    except RosterFileError as exc:
        raise typer.BadParameter(str(exc), param_hint="FOLDER") from exc
    try:
        given = supported_database_url(async_database_url(database_url)) if database_url else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--database-url") from exc
    console = Console()
    settings = get_settings()
    if given:
        settings = settings.model_copy(update={"database_url": given})
    try:
        check_files(folder, devices)  # not text, or a wrong header: before the database too

        async def work(runtime: Runtime) -> ImportResult:
            return await _import(runtime, folder, devices, strict, console)

        result = run_with_runtime(settings, work, console=console)
    except CsvFileError as exc:
        console.print(Text(f"{exc} {_('Nothing was changed.')}", style="red"))
        raise typer.Exit(1) from exc
    print_report(console, result)
    if strict and result.problems:
        raise typer.Exit(code=1)


async def _import(
    runtime: Runtime, folder: Path, devices: Path | None, strict: bool, console: Console
) -> ImportResult:
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        transient=True,
    ) as bars:
        progress: ProgressCallback = ProgressBars(bars)
        return await import_roster(
            runtime.sessions,
            folder,
            devices,
            strict=strict,
            clock=runtime.clock,
            progress=progress,
        )


class ProgressBars:
    """Turns the import's progress reports into rich bars, for large files only."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._tasks: dict[str, TaskID] = {}
        self._large = False

    def __call__(self, stage: str, done: int, total: int) -> None:
        task = self._tasks.get(stage)
        if task is None:
            # Saving is shown once some file was large enough to make it worth watching.
            self._large = self._large or total >= LARGE_FILE_ROWS
            if not self._large:
                return
            task = self._tasks[stage] = self._progress.add_task(stage, total=total)
        self._progress.update(task, completed=done, total=total)


def print_report(console: Console, result: ImportResult) -> None:
    """The summary table, then the first problems and how many there were."""
    title = _("Roster import")
    if not result.written:
        title += " " + _("(strict mode: nothing was written)")
    table = Table(title=title, title_justify="left")
    table.add_column("")
    for column in (N_("created"), N_("updated"), N_("unchanged"), N_("skipped")):
        table.add_column(_(column), justify="right")
    for name, counts in result.counts().items():
        table.add_row(
            name,
            str(counts.created),
            str(counts.updated),
            str(counts.unchanged),
            str(counts.skipped),
        )
    console.print(table)
    if not result.problems:
        console.print(_("No problems."))
        return
    console.print(_("Problems ({count} in total):", count=len(result.problems)), style="bold")
    for problem in result.problems[:MAX_PROBLEMS_SHOWN]:
        # Plain Text: a CSV value must never be read as rich markup.
        console.print(Text(f"  {problem}"))
    hidden = len(result.problems) - MAX_PROBLEMS_SHOWN
    if hidden > 0:
        console.print("  " + _("… and {count} more", count=hidden))
    if not result.written:
        console.print(
            _(
                "Nothing was written (the counts show what would have been): fix the "
                "{count} problem(s), or run without --strict to import the good rows.",
                count=len(result.problems),
            )
        )
