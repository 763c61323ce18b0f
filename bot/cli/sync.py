"""`devicecare sync apple|google|oneroster [--dry-run] [--allow-removals]` and `sync status`.

Exit status: 0 applied, nothing to change, or a dry run; 1 failed (nothing was changed);
2 the source isn't configured; 3 held (it would take away too much; nothing was changed);
4 another sync of the same source is running (this one did nothing).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bot.cli.run import run_with_runtime
from bot.runtime import Runtime
from bot.settings import Settings, get_settings
from bot.sync.registry import SOURCES, close_jobs, not_configured, sync_jobs
from bot.sync.runner import SyncRunResult, run_sync
from storage import models as m
from storage.sync_runs import last_runs
from workflows.i18n import N_, _
from workflows.sync import SOURCE_LABELS

EXIT_CODES = {"applied": 0, "no_changes": 0, "dry_run": 0, "failed": 1, "held": 3, "busy": 4}
EXIT_NOT_CONFIGURED = 2
STATUS_WORDS = {
    "running": N_("running"),
    "applied": N_("applied"),
    "no_changes": N_("no changes"),
    "dry_run": N_("dry run"),
    "held": N_("held"),
    "failed": N_("failed"),
}

sync_app = typer.Typer(
    help=N_("Syncs from the district's systems (Apple School Manager, Google Admin, OneRoster)."),
    no_args_is_help=True,
)
console = Console()

DryRun = Annotated[
    bool, typer.Option("--dry-run", help=N_("Show what the sync would change; change nothing."))
]
AllowRemovals = Annotated[
    bool,
    typer.Option(
        "--allow-removals",
        help=N_("Apply even when it retires or unassigns more than SYNC_MAX_CHANGE_SHARE."),
    ),
]


def configured(settings: Settings, source: str) -> bool:
    entry = SOURCES.get(source)
    return entry is not None and entry.configured(settings)


def counts_line(counts: dict[str, int]) -> str:
    return ", ".join(f"{kind} {n}" for kind, n in counts.items()) or _("nothing read")


def print_result(result: SyncRunResult) -> None:
    color = {"failed": "red", "held": "yellow", "busy": "yellow"}.get(result.status, "green")
    console.print(f"[{color}]{escape(result.message)}[/{color}]")
    if result.plan is None:
        return
    console.print(_("Counts: {counts}", counts=escape(counts_line(result.plan.counts))))
    if result.plan.sample:
        console.print(_("First rows:"))
        for line in result.plan.sample:
            console.print(f"  {escape(line)}")


def sync_source(source: str, dry_run: bool, allow_removals: bool) -> None:
    settings = get_settings()
    if not configured(settings, source):
        console.print(f"[red]{escape(not_configured(source))}[/red]")
        raise typer.Exit(EXIT_NOT_CONFIGURED)

    async def work(runtime: Runtime) -> SyncRunResult:
        job = sync_jobs(runtime)[source]
        try:
            return await run_sync(
                runtime, job, dry_run=dry_run, trigger="cli", allow_removals=allow_removals
            )
        finally:
            await close_jobs([job])

    result = run_with_runtime(settings, work, console=console)
    print_result(result)
    raise typer.Exit(EXIT_CODES[result.status])


def _command(source: str) -> Callable[[bool, bool], None]:
    def command(dry_run: DryRun = False, allow_removals: AllowRemovals = False) -> None:
        sync_source(source, dry_run, allow_removals)

    command.__doc__ = f"Sync devices and records from {SOURCE_LABELS[source]} now."
    return command


for _source in SOURCE_LABELS:
    sync_app.command(_source)(_command(_source))


def _when(at: datetime | None, settings: Settings) -> str:
    return "" if at is None else at.astimezone(settings.tz).strftime("%Y-%m-%d %H:%M")


@sync_app.command("status", help=N_("Each source's last run: when, how it ended, and its counts."))
def status_command() -> None:
    settings = get_settings()

    async def work(runtime: Runtime) -> dict[str, m.SyncRun]:
        async with runtime.reads() as store:
            return await last_runs(store)

    runs = run_with_runtime(settings, work, console=console)
    table = Table()
    # Names and times stay whole on a narrow terminal; the counts wrap instead.
    for header in (N_("source"), N_("last run"), N_("trigger"), N_("status")):
        table.add_column(_(header), no_wrap=True)
    table.add_column(_("counts"))
    for source, name in SOURCE_LABELS.items():
        run = runs.get(source)
        if run is None:
            state = _("never run") if configured(settings, source) else _("not configured")
            table.add_row(name, "", "", state, "")
            continue
        words = _(STATUS_WORDS.get(run.status, run.status)) + (
            " " + _("(dry run)") if run.dry_run and run.status != "dry_run" else ""
        )
        detail = run.error if run.status == "failed" and run.error else counts_line(run.counts)
        table.add_row(name, _when(run.started_at, settings), run.trigger, words, escape(detail))
    Console().print(table)  # made now, so it takes the terminal width (COLUMNS) of now
