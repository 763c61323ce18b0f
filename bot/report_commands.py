"""`devicecare report <name>` for every report in the catalogue, and `report weekly-digest`.

Each prints the summary and the first rows; `--csv PATH` writes every row (the same file Slack
uploads) and `--chart PATH` the trend's PNG. The numbers are the ones `/report` posts: both run
storage.reports.run_report in one read snapshot. `--as EMAIL` runs it as that staff member,
whose role must allow the report; without it the command line may run any report.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from bot.cli_runtime import run_with_runtime
from bot.report_cli import report_app
from bot.report_csv import csv_row, write_csv_file
from bot.report_delivery import chart_png, district_today, school_year, snapshot
from bot.runtime import Runtime
from bot.settings import get_settings
from storage.reports import CATALOGUE, run_report
from storage.weekly_digest import WeeklyDigest, previous_week, weekly_digest
from workflows.errors import NotFound, ValidationError
from workflows.grades import clean_grades
from workflows.labels import flags_text
from workflows.money import format_cents
from workflows.reports import (
    ReportFilters,
    ReportResult,
    ReportSpec,
    default_range,
    named_range,
    require_report,
)

SHOWN = 20  # rows printed; --csv has them all


def _console() -> Console:
    # Made per command so the terminal width is read when the command runs.
    return Console()


def _day(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ValidationError(f"{option} {text!r} isn't a date; write YYYY-MM-DD.") from None


def build_filters(
    today: date,
    *,
    start_month: int,
    start_day: int,
    date_from: str | None,
    date_to: str | None,
    range_name: str | None,
    buildings: list[str],
    grades: list[str],
    models: list[str],
) -> ReportFilters:
    """The options as filters: `--range` or `--from`/`--to`, else the school year so far."""
    if range_name and (date_from or date_to):
        raise ValidationError("Give --range or --from/--to, not both.")
    if range_name:
        picked = named_range(range_name, today, start_month=start_month, start_day=start_day)
        if picked is None:
            raise ValidationError(
                f"--range {range_name!r} isn't a range; use this-year, last-year, this-month, "
                "last-month, this-week, last-week, last-30-days or ytd."
            )
        start, end = picked
    else:
        start, end = default_range(today, start_month=start_month, start_day=start_day)
        if date_from:
            start = _day(date_from, "--from")
        if date_to:
            end = _day(date_to, "--to")
    split = [v.strip() for g in grades for v in g.split(",") if v.strip()]
    return ReportFilters(
        date_from=start,
        date_to=end,
        buildings=tuple(b.strip() for b in buildings if b.strip()),
        grades=clean_grades(split, field="grade"),
        models=tuple(x.strip() for x in models if x.strip()),
    )


def rows_table(result: ReportResult, tz: Any) -> Table:
    spec = result.spec
    table = Table(title=spec.title, title_justify="left")
    for name in spec.headers:
        table.add_column(name, justify="right" if name in spec.money else "left")
    for row in result.rows[:SHOWN]:
        table.add_row(*(Text(v) for v in csv_row(spec, row, tz)))
    return table


def run_named_report(
    name: str,
    *,
    date_from: str | None,
    date_to: str | None,
    range_name: str | None,
    buildings: list[str],
    grades: list[str],
    models: list[str],
    csv_path: Path | None,
    chart_path: Path | None,
    as_email: str | None,
) -> None:
    spec = CATALOGUE[name]
    settings = get_settings()
    console = _console()
    if chart_path is not None and not spec.has_trend:
        console.print(f"[red]{escape(spec.title)} has no trend, so no chart.[/red]")
        raise typer.Exit(1)

    async def work(runtime: Runtime) -> ReportResult:
        async with snapshot(runtime) as store:
            if as_email:
                actor = await store.actor_by_email(as_email)
                if actor is None:
                    raise NotFound(f"No active staff member has the email {as_email}.")
                require_report(actor, spec)
            year = await school_year(store)
            today = district_today(runtime)
            filters = build_filters(
                today,
                start_month=year.start_month,
                start_day=year.start_day,
                date_from=date_from,
                date_to=date_to,
                range_name=range_name,
                buildings=buildings,
                grades=grades,
                models=models,
            )
            return await run_report(
                store.session, name, filters, tz=runtime.settings.tz, today=today
            )

    result = run_with_runtime(settings, work, console=console)
    tz = settings.tz
    for sentence in result.summary:
        console.print(Text(sentence))
    if result.rows:
        console.print(rows_table(result, tz))
        if len(result.rows) > SHOWN and csv_path is None:
            console.print(f"… and {len(result.rows) - SHOWN} more; --csv PATH writes them all.")
    else:
        console.print("No rows.")
    if csv_path is not None:
        written = write_csv_file(result, csv_path, tz)
        console.print(Text(f"Wrote {written} row(s) to {csv_path}."))
    if chart_path is not None:
        png = chart_png(result)
        assert png is not None
        chart_path.write_bytes(png)
        console.print(Text(f"Wrote the chart to {chart_path}."))


def _command_for(spec: ReportSpec) -> Callable[..., None]:
    def command(
        date_from: Annotated[
            str | None,
            typer.Option("--from", metavar="YYYY-MM-DD", help="First day (district time)."),
        ] = None,
        date_to: Annotated[
            str | None,
            typer.Option("--to", metavar="YYYY-MM-DD", help="Last day, included (default today)."),
        ] = None,
        range_name: Annotated[
            str | None,
            typer.Option(
                "--range",
                help="this-year (the default), last-year, this-month, last-month, this-week, "
                "last-week, last-30-days, ytd.",
            ),
        ] = None,
        building: Annotated[
            list[str] | None, typer.Option("--building", help="A building (repeatable).")
        ] = None,
        grade: Annotated[
            list[str] | None, typer.Option("--grade", help="A grade, or 7,8 (repeatable).")
        ] = None,
        model: Annotated[
            list[str] | None, typer.Option("--model", help="A device model (repeatable).")
        ] = None,
        csv_path: Annotated[
            Path | None, typer.Option("--csv", metavar="PATH", help="Write every row as CSV.")
        ] = None,
        chart_path: Annotated[
            Path | None,
            typer.Option("--chart", metavar="PATH", help="Write the trend's chart as PNG."),
        ] = None,
        as_email: Annotated[
            str | None,
            typer.Option("--as", metavar="EMAIL", help="Run as this staff member (role checked)."),
        ] = None,
    ) -> None:
        run_named_report(
            spec.name,
            date_from=date_from,
            date_to=date_to,
            range_name=range_name,
            buildings=building or [],
            grades=grade or [],
            models=model or [],
            csv_path=csv_path,
            chart_path=chart_path,
            as_email=as_email,
        )

    command.__doc__ = f"{spec.title}: {spec.description}"
    return command


def _existing_names() -> set[str]:
    names = set()
    for info in report_app.registered_commands:
        callback = info.callback
        fallback = callback.__name__.replace("_", "-") if callback is not None else ""
        names.add(info.name or fallback)
    return names


def register_report_commands() -> None:
    """One command per catalogue report that the group doesn't define already."""
    taken = _existing_names()
    for name in sorted(CATALOGUE):
        if name not in taken:
            report_app.command(name)(_command_for(CATALOGUE[name]))


# --- the weekly digest ------------------------------------------------------------------------


def weekly_digest_command(
    week: Annotated[
        str | None,
        typer.Option(
            "--week",
            metavar="YYYY-MM-DD",
            help="Any day of the week to show (default: last week, Monday to Sunday).",
        ),
    ] = None,
) -> None:
    """Last week's digest: incidents, money recovered, overdue now, new repeat offenders."""
    settings = get_settings()
    console = _console()

    async def work(runtime: Runtime) -> WeeklyDigest:
        today = district_today(runtime)
        start = _day(week, "--week") if week else previous_week(today)
        async with snapshot(runtime) as store:
            return await weekly_digest(store.session, start, tz=runtime.settings.tz, as_of=today)

    digest = run_with_runtime(settings, work, console=console)
    for line in digest_lines(digest):
        console.print(Text(line))


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


register_report_commands()
if "weekly-digest" not in _existing_names():
    report_app.command("weekly-digest")(weekly_digest_command)
