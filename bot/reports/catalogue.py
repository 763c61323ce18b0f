"""Every report, declared once: its name, its command-line options, the query that computes it,
its CSV columns, how it reads in a terminal and the Slack commands that reach it.

The catalogue reports of storage.reports (a date range plus building, grade and model filters)
all share one declaration, made from their spec. The billing office's own reports (automation,
cancelled) and the weekly digest declare theirs below. `cancelled` is one report with two Slack
answers: `/report cancelled` posts it with its CSV, `/billing report cancelled` answers in the
channel only to the person who asked.

bot/cli/reports.py turns each entry into `devicecare report <name>`; bot/slack/reports.py
answers `/report <name>` and `/billing report <name>` from it.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import date, tzinfo
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from bot.reports import terminal
from bot.reports.csv_rows import write_csv_file, write_csv_pages
from bot.reports.delivery import chart_png, district_today, school_year
from bot.runtime import Runtime
from bot.slack.billing_report_blocks import (
    REPORT_USAGE,
    SHOWN_ROWS,
    build_automation_report,
    build_cancelled_report,
    typed_day,
)
from bot.slack.blocks import Block
from storage.billing_reports import (
    AUTOMATION,
    AutomationReport,
    CancelledReport,
    automation_report,
    cancelled_report,
    check_range,
)
from storage.reports import CATALOGUE, run_report
from storage.reports_money import CANCELLED
from storage.uow import SqlUnitOfWork
from storage.weekly_digest import WeeklyDigest, previous_week, weekly_digest
from workflows.errors import NotFound, ValidationError
from workflows.grades import clean_grades
from workflows.i18n import N_, _
from workflows.reports import (
    ReportFilters,
    ReportResult,
    ReportSpec,
    default_range,
    named_range,
    require_report,
)

REQUIRED = inspect.Parameter.empty
PAGE = 1000  # rows per query when a billing report writes its CSV
LISTED = 50  # rows of a billing report's listing printed; --csv has them all
MORE_LISTED = N_("… and {count} more; --csv PATH lists them all.")


@dataclass(frozen=True)
class Option:
    """One `devicecare report <name>` option: its parameter, typer annotation and default."""

    param: str
    annotation: Any
    default: Any = REQUIRED


class SlackDoor(StrEnum):
    """The Slack commands that reach a report."""

    REPORT = "/report"  # `/report <name>` or its form: a summary in the channel, CSV and chart
    BILLING = "/billing report"  # `/billing report <name>`: an answer only the asker sees
    DIGEST = "weekly digest"  # posted by the scheduler in WEEKLY_DIGEST_CHANNEL


@dataclass(frozen=True)
class Run:
    """What a report's query runs with: the runtime and one read snapshot."""

    runtime: Runtime
    store: SqlUnitOfWork

    @property
    def tz(self) -> tzinfo:
        return self.runtime.settings.tz

    @property
    def today(self) -> date:
        return district_today(self.runtime)


@dataclass(frozen=True)
class BillingAnswer:
    """`/billing report <name> …`: the words after the name (ValidationError when they don't
    fit), the query, and the ephemeral message."""

    words: Callable[[list[str], date], Any]
    compute: Callable[[SqlUnitOfWork, Any, tzinfo], Awaitable[Any]]
    render: Callable[[Any, tzinfo], tuple[str, list[Block]]]


@dataclass(frozen=True)
class Report:
    name: str
    help: str  # the command's help; its first sentence lists it in `devicecare report --help`
    options: tuple[Option, ...]
    # The options as the report's arguments; typer.BadParameter (or an Exit) for bad ones.
    read_options: Callable[[Mapping[str, Any], Console], Any]
    compute: Callable[[Run, Any], Awaitable[Any]]  # in one read snapshot
    show: Callable[[Any, Any, Console, tzinfo], None]  # the terminal; files after the run
    columns: ReportSpec | None  # its CSV columns (and title, audience); None: no CSV
    slack: frozenset[SlackDoor]
    billing: BillingAnswer | None = None

    def staff_help(self) -> str:
        """`help` in the staff language: a report made from a spec says its title and its
        description, each its own msgid."""
        spec = self.columns
        if spec is not None and self.help == spec_help(spec):
            return spec_help(spec, _(spec.title), _(spec.description))
        return _(self.help)


def spec_help(spec: ReportSpec, title: str | None = None, description: str | None = None) -> str:
    """The help of a report made from `spec`: its title and description (English unless given)."""
    return f"{title or spec.title}: {description or spec.description}"


# --- the options --------------------------------------------------------------------------------

DAY, PATH = "YYYY-MM-DD", "PATH"


def option(param: str, kind: Any, flag: str, text: str, default: Any = None, **more: Any) -> Option:
    """`--flag` for parameter `param` of type `kind`; `default=REQUIRED` makes it required."""
    return Option(param, Annotated[kind, typer.Option(flag, help=text, **more)], default)


def _csv(text: str) -> Option:
    return option("csv_path", Path | None, "--csv", text, metavar=PATH)


FILTER_OPTIONS = (
    option("date_from", str | None, "--from", N_("First day (district time)."), metavar=DAY),
    option("date_to", str | None, "--to", N_("Last day, included (default today)."), metavar=DAY),
    option(
        "range_name",
        str | None,
        "--range",
        N_(
            "this-year (the default), last-year, this-month, last-month, this-week, last-week, "
            "last-30-days, ytd."
        ),
    ),
    option("building", list[str] | None, "--building", N_("A building (repeatable).")),
    option("grade", list[str] | None, "--grade", N_("A grade, or 7,8 (repeatable).")),
    option("model", list[str] | None, "--model", N_("A device model (repeatable).")),
    _csv(N_("Write every row as CSV.")),
    option(
        "chart_path", Path | None, "--chart", N_("Write the trend's chart as PNG."), metavar=PATH
    ),
    option(
        "as_email",
        str | None,
        "--as",
        N_("Run as this staff member (role checked)."),
        metavar="EMAIL",
    ),
)


def _day(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ValidationError(f"{option} {text!r} isn't a date; write YYYY-MM-DD.") from None


def _option_day(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} isn't a date like 2026-04-30", param_hint=option
        ) from None


# --- the catalogue reports (a range and filters) ------------------------------------------------


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
        raise ValidationError(_("Give --range or --from/--to, not both."))
    if range_name:
        picked = named_range(range_name, today, start_month=start_month, start_day=start_day)
        if picked is None:
            raise ValidationError(
                _(
                    "--range {name} isn't a range; use this-year, last-year, this-month, "
                    "last-month, this-week, last-week, last-30-days or ytd.",
                    name=repr(range_name),
                )
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


def _catalogue_report(spec: ReportSpec) -> Report:
    def read_options(options: Mapping[str, Any], console: Console) -> Mapping[str, Any]:
        if options["chart_path"] is not None and not spec.has_trend:
            console.print(
                _("[red]{report} has no trend, so no chart.[/red]", report=escape(_(spec.title)))
            )
            raise typer.Exit(1)
        return options

    async def compute(run: Run, options: Mapping[str, Any]) -> ReportResult:
        store = run.store
        if options["as_email"]:
            actor = await store.people.actor_by_email(options["as_email"])
            if actor is None:
                raise NotFound(
                    _("No active staff member has the email {email}.", email=options["as_email"])
                )
            require_report(actor, spec)
        year = await school_year(store)
        today = run.today
        filters = build_filters(
            today,
            start_month=year.start_month,
            start_day=year.start_day,
            date_from=options["date_from"],
            date_to=options["date_to"],
            range_name=options["range_name"],
            buildings=options["building"] or [],
            grades=options["grade"] or [],
            models=options["model"] or [],
        )
        return await run_report(store, spec.name, filters, tz=run.tz, today=today)

    def show(
        result: ReportResult, options: Mapping[str, Any], console: Console, tz: tzinfo
    ) -> None:
        csv_path, chart_path = options["csv_path"], options["chart_path"]
        for sentence in result.summary:
            console.print(Text(sentence))
        if result.rows:
            console.print(terminal.rows_table(result, tz))
            if len(result.rows) > terminal.SHOWN and csv_path is None:
                console.print(
                    _(
                        "… and {count} more; --csv PATH writes them all.",
                        count=len(result.rows) - terminal.SHOWN,
                    )
                )
        else:
            console.print(_("No rows."))
        if csv_path is not None:
            written = write_csv_file(result, csv_path, tz)
            console.print(Text(_("Wrote {count} row(s) to {path}.", count=written, path=csv_path)))
        if chart_path is not None:
            png = chart_png(result)
            assert png is not None
            chart_path.write_bytes(png)
            console.print(Text(_("Wrote the chart to {path}.", path=chart_path)))

    return Report(
        name=spec.name,
        help=spec_help(spec),
        options=FILTER_OPTIONS,
        read_options=read_options,
        compute=compute,
        show=show,
        columns=spec,
        slack=frozenset({SlackDoor.REPORT}),
    )


# --- automation ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AutomationAsked:
    automation: bool | None  # None lists both
    csv_path: Path | None = None


def _automation_options(options: Mapping[str, Any], console: Console) -> AutomationAsked:
    on, off = options["on"], options["off"]
    if on and off:
        raise typer.BadParameter(_("choose --on or --off, not both"))
    return AutomationAsked(True if on else False if off else None, options["csv_path"])


async def _automation(run: Run, asked: AutomationAsked) -> tuple[AutomationReport, int]:
    store = run.store
    report = await automation_report(store, automation=asked.automation, limit=LISTED)

    async def page(offset: int) -> list[tuple[Any, ...]]:
        found = await automation_report(
            store, automation=asked.automation, limit=PAGE, offset=offset
        )
        return [r.values() for r in found.rows]

    if asked.csv_path is None:
        return report, 0
    return report, await write_csv_pages(asked.csv_path, AUTOMATION, page, run.tz, size=PAGE)


def _show_automation(
    found: tuple[AutomationReport, int], asked: AutomationAsked, console: Console, tz: tzinfo
) -> None:
    report, written = found
    console.print(terminal.automation_summary_table(report))
    wrote = {
        None: N_("Wrote {count} open invoice(s) to {path}."),
        True: N_("Wrote {count} open invoice(s) with automation on to {path}."),
        False: N_("Wrote {count} open invoice(s) with automation off to {path}."),
    }
    none = {
        None: N_("No open invoices."),
        True: N_("No open invoices with automation on."),
        False: N_("No open invoices with automation off."),
    }
    if asked.csv_path is not None:
        said = _(wrote[asked.automation], count=written, path=asked.csv_path)
        console.print(Text(said))
        return
    if not report.rows:
        console.print(_(none[asked.automation]))
        return
    console.print(terminal.automation_listing_table(report, tz))
    if report.listed > len(report.rows):
        console.print(_(MORE_LISTED, count=report.listed - len(report.rows)))


def _automation_words(words: list[str], today: date) -> bool | None:
    if not words:
        return None
    if len(words) == 1 and words[0] in ("on", "off"):
        return words[0] == "on"
    raise ValidationError(REPORT_USAGE)


async def _automation_answer(
    store: SqlUnitOfWork, automation: bool | None, tz: tzinfo
) -> AutomationReport:
    shown = SHOWN_ROWS if automation is not None else 0  # the listing comes with on or off
    return await automation_report(store, automation=automation, limit=shown)


AUTOMATION_REPORT = Report(
    name=AUTOMATION.name,
    help=N_("Open invoices by automation on/off and status (counts and balances), and the list."),
    options=(
        option("on", bool, "--on", N_("List only invoices with automation on."), False),
        option("off", bool, "--off", N_("List only invoices with automation off."), False),
        _csv(N_("Write every listed invoice to this CSV.")),
    ),
    read_options=_automation_options,
    compute=_automation,
    show=_show_automation,
    columns=AUTOMATION,
    slack=frozenset({SlackDoor.BILLING}),
    billing=BillingAnswer(
        words=_automation_words,
        compute=_automation_answer,
        render=lambda report, tz: build_automation_report(report),
    ),
)


# --- cancelled ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    date_from: date
    date_to: date
    csv_path: Path | None = None


def _cancelled_options(options: Mapping[str, Any], console: Console) -> Span:
    start = _option_day(options["date_from"], "--from")
    end = _option_day(options["date_to"], "--to")
    try:
        check_range(start, end)
    except ValidationError as exc:
        raise typer.BadParameter(exc.message, param_hint="--to") from exc
    return Span(start, end, options["csv_path"])


async def _cancelled(run: Run, span: Span) -> tuple[CancelledReport, int]:
    store, tz = run.store, run.tz
    report = await cancelled_report(store, span.date_from, span.date_to, tz=tz, limit=LISTED)

    async def page(offset: int) -> list[tuple[Any, ...]]:
        found = await cancelled_report(
            store, span.date_from, span.date_to, tz=tz, limit=PAGE, offset=offset
        )
        return [r.values() for r in found.rows]

    if span.csv_path is None:
        return report, 0
    return report, await write_csv_pages(span.csv_path, CANCELLED, page, tz, size=PAGE)


def _show_cancelled(
    found: tuple[CancelledReport, int], span: Span, console: Console, tz: tzinfo
) -> None:
    report, written = found
    totals, listing = terminal.cancelled_tables(report, tz)
    console.print(totals)
    if span.csv_path is not None:
        console.print(
            Text(
                _(
                    "Wrote {count} cancelled invoice(s) to {path}.",
                    count=written,
                    path=span.csv_path,
                )
            )
        )
        return
    if report.rows:
        console.print(listing)
    if report.count > len(report.rows):
        console.print(_(MORE_LISTED, count=report.count - len(report.rows)))


def _cancelled_words(words: list[str], today: date) -> Span:
    """`[from] [to]`: from the 1st of this month to today unless given."""
    if len(words) > 2:
        raise ValidationError(REPORT_USAGE)
    start = typed_day(words[0]) if words else today.replace(day=1)
    end = typed_day(words[1]) if len(words) > 1 else today
    check_range(start, end)
    return Span(start, end)


async def _cancelled_answer(store: SqlUnitOfWork, span: Span, tz: tzinfo) -> CancelledReport:
    return await cancelled_report(store, span.date_from, span.date_to, tz=tz, limit=SHOWN_ROWS)


CANCELLED_REPORT = Report(
    name=CANCELLED.name,
    help=N_("Invoices cancelled in a date range, with who and why, and the Auto-Cancelled ones."),
    options=(
        option("date_from", str, "--from", N_("First day (district time)."), REQUIRED, metavar=DAY),
        option("date_to", str, "--to", N_("Last day, included."), REQUIRED, metavar=DAY),
        _csv(N_("Write every cancelled invoice to this CSV.")),
    ),
    read_options=_cancelled_options,
    compute=_cancelled,
    show=_show_cancelled,
    columns=CANCELLED,
    slack=frozenset({SlackDoor.REPORT, SlackDoor.BILLING}),
    billing=BillingAnswer(
        words=_cancelled_words, compute=_cancelled_answer, render=build_cancelled_report
    ),
)


# --- the weekly digest --------------------------------------------------------------------------


async def _digest(run: Run, week: str | None) -> WeeklyDigest:
    today = run.today
    start = _day(week, "--week") if week else previous_week(today)
    return await weekly_digest(run.store, start, tz=run.tz, as_of=today)


def _show_digest(digest: WeeklyDigest, week: str | None, console: Console, tz: tzinfo) -> None:
    for line in terminal.digest_lines(digest):
        console.print(Text(line))


WEEKLY_DIGEST = Report(
    name="weekly-digest",
    help=N_("Last week's digest: incidents, money recovered, overdue now, new repeat offenders."),
    options=(
        option(
            "week",
            str | None,
            "--week",
            N_("Any day of the week to show (default: last week, Monday to Sunday)."),
            metavar=DAY,
        ),
    ),
    read_options=lambda options, console: options["week"],
    compute=_digest,
    show=_show_digest,
    columns=None,
    slack=frozenset({SlackDoor.DIGEST}),
)


# --- the catalogue ------------------------------------------------------------------------------

_OWN = {r.name: r for r in (AUTOMATION_REPORT, CANCELLED_REPORT)}
# The order `devicecare report --help` lists them in: the billing office's own reports, the
# catalogue reports by name, the digest.
REPORTS: dict[str, Report] = {
    **_OWN,
    **{name: _catalogue_report(CATALOGUE[name]) for name in sorted(CATALOGUE) if name not in _OWN},
    WEEKLY_DIGEST.name: WEEKLY_DIGEST,
}


def reached_by(door: SlackDoor) -> dict[str, Report]:
    """The reports a Slack command reaches, by name."""
    return {name: r for name, r in REPORTS.items() if door in r.slack}


def channel_reports() -> dict[str, ReportSpec]:
    """What `/report` offers, by name, in the order the queries are registered."""
    posted = reached_by(SlackDoor.REPORT)
    return {name: spec for name, spec in CATALOGUE.items() if name in posted}
