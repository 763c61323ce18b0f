"""`devicecare billing …`: run or preview a billing day, manage pauses, bootstrap the settings.

Changes act as the command line itself (a system actor, named in the activity log), or with
`--as EMAIL` as that staff member, who then needs Manage Settings.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Annotated, Any, TypeVar

import typer
from babel.dates import format_date
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bot.cli.run import CLI_ACTOR_NAME, DAY_FORMATS, as_staff_option, run_with_runtime
from bot.jobs.scheduler import billing_runner
from bot.runtime import Runtime
from bot.settings import get_settings
from services.billing_run import PlannedStep, RunResult
from workflows.administration import change_billing_settings
from workflows.billing import RunTotals, step_label
from workflows.billing_pauses import add_pause, list_pauses, remove_pause
from workflows.billing_settings import BillingSettings, billing_settings_from
from workflows.errors import NotFound, PermissionDenied, ValidationError
from workflows.i18n import N_, _, format_locale, staff_language
from workflows.invoices import InvoiceStatus
from workflows.money import format_cents, parse_amount
from workflows.permissions import Actor
from workflows.ports import Context

billing_app = typer.Typer(
    help=N_("The daily billing run: run or preview a day, pause windows, settings."),
    no_args_is_help=True,
)
pause_app = typer.Typer(
    help=N_("Days the billing run sends nothing and overdue clocks stand still (winter break)."),
    no_args_is_help=True,
)
settings_app = typer.Typer(help=N_("Billing automation settings."), no_args_is_help=True)
billing_app.add_typer(pause_app, name="pause")
billing_app.add_typer(settings_app, name="settings")

console = Console()
T = TypeVar("T")
_DAYS_RE = re.compile(r"^[0-9]{1,4}$")

AsEmail = Annotated[str | None, as_staff_option("Manage Settings")]


def _run(work: Callable[[Runtime], Awaitable[T]]) -> T:
    return run_with_runtime(get_settings(), work, console=console, nothing_changed=True)


async def _as_actor(
    runtime: Runtime,
    email: str | None,
    what: str,
    work: Callable[[Context, Actor], Awaitable[T]],
) -> T:
    """Run `work` in one transaction as the command line or the staff member `email`.

    A refusal is kept in the activity log, like one in Slack.
    """
    actor = Actor.system(CLI_ACTOR_NAME)
    try:
        async with runtime.stores() as store:
            if email is not None:
                staff = await store.people.actor_by_email(email)
                if staff is None:
                    raise NotFound(
                        _("No active staff member has the email {email}.", email=email),
                        field="as",
                    )
                actor = staff
            result = await work(Context(store, runtime.clock, runtime.settings.tz), actor)
            await store.commit()
            return result
    except PermissionDenied as exc:
        async with runtime.stores() as store:
            await store.activity.log_refusal(actor, what, exc.message)
            await store.commit()
        raise


def _run_as(email: str | None, what: str, work: Callable[[Context, Actor], Awaitable[T]]) -> T:
    """`work` run from the command line as `email` (see _as_actor)."""
    return _run(lambda runtime: _as_actor(runtime, email, what, work))


def _status(value: str) -> str:
    try:
        return _(InvoiceStatus(value).label)
    except ValueError:
        return value


# --- run ----------------------------------------------------------------------------------------


@billing_app.command(
    "run",
    help=N_("Run the billing for a day: reminders, overdue notices, status changes, auto-cancel."),
)
def run_command(
    day: Annotated[
        datetime | None,
        typer.Option(
            "--date",
            formats=DAY_FORMATS,
            help=N_("The day to run, YYYY-MM-DD (default: today in the district's time zone)."),
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help=N_("Show what the run would send and change; do nothing.")),
    ] = False,
) -> None:
    wanted = None if day is None else day.date()

    async def work(runtime: Runtime) -> RunResult:
        return await billing_runner(runtime).run(wanted, dry_run=dry_run)

    result = _run(work)
    if dry_run:
        _print_preview(result)
        return
    if not result.ran:
        console.print(
            f"[red]{escape(result.message)}[/red] " + _("Try again when it has finished.")
        )
        raise typer.Exit(1)
    console.print(_("[bold]Billing run for {day}[/bold]: done.", day=_long_day(result.day)))
    if result.totals is None or result.totals.paused:
        console.print(escape(result.message))
        return
    _print_covered(result.totals, planned=False)
    totals = result.totals
    if not (totals.reminders_by_step or totals.advanced or totals.auto_cancelled):
        console.print(_("Nothing was due."))
    _print_totals(totals, planned=False)


def _long_day(day: date) -> str:
    weekday = format_date(day, "EEEE", locale=format_locale(staff_language()))
    return f"{weekday} {day.isoformat()}"


def _print_covered(totals: RunTotals, *, planned: bool) -> None:
    first = totals.covered_since + timedelta(days=1)
    if first < totals.day:
        said = (
            N_("It would cover {first} to {last}, catching up {days} missed day(s).")
            if planned
            else N_("It covered {first} to {last}, catching up {days} missed day(s).")
        )
        days = (totals.day - first).days
        console.print(_(said, first=first.isoformat(), last=totals.day.isoformat(), days=days))


def _print_preview(result: RunResult) -> None:
    console.print(
        _(
            "[bold]Dry run for {day}[/bold]: nothing has been sent or changed.",
            day=_long_day(result.day),
        )
    )
    if result.totals is None:
        console.print(escape(result.message))
        return
    _print_covered(result.totals, planned=True)
    if result.planned:
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
        table.add_column(_("invoice"), no_wrap=True)
        table.add_column(_("step"), no_wrap=True)
        table.add_column(_("status"), no_wrap=True)
        table.add_column(_("emails"), justify="right", no_wrap=True)
        table.add_column(_("overdue"), justify="right", no_wrap=True)
        for step in result.planned:
            table.add_row(*_planned_row(step))
        console.print(table)
    else:
        console.print(_("Nothing would be due."))
    _print_totals(result.totals, planned=True)


def _planned_row(step: PlannedStep) -> tuple[str, ...]:
    change = (
        "" if step.to_status is None else f"{_status(step.from_status)} → {_status(step.to_status)}"
    )
    emails = step.to_status is None or step.step in ("first", "second", "final")
    return (
        escape(step.number),
        _(step_label(step.step)),
        change,
        str(step.recipients) if emails else _("none"),
        "" if not step.days_overdue else _("{days} days", days=step.days_overdue),
    )


def _print_totals(totals: RunTotals, *, planned: bool) -> None:
    table = Table(
        "",
        _("count"),
        title=_("Would happen") if planned else _("Totals"),
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    for name, count in totals.reminders_by_step:
        table.add_row(_(step_label(name)), str(count))
    for status, count in totals.advanced:
        table.add_row(_("moved to {status}", status=_status(status)), str(count))
    table.add_row(_("auto-cancelled"), str(totals.auto_cancelled))
    table.add_row(_("emails to families"), str(totals.emails_queued))
    table.add_row("  " + _("of them digests"), str(totals.digests))
    console.print(table)
    problems = list(totals.failures)
    if planned and totals.not_emailed:
        problems.append(
            _(
                "{count} invoice(s) with no guardian email address that works",
                count=totals.not_emailed,
            )
        )
    for problem in problems:
        console.print(_("[yellow]Needs attention: {problem}[/yellow]", problem=escape(problem)))


# --- pauses -------------------------------------------------------------------------------------


@pause_app.command("add", help=N_("Pause billing from one day to another, both included."))
def pause_add(
    starts_on: Annotated[
        datetime,
        typer.Option("--from", formats=DAY_FORMATS, help=N_("First paused day, YYYY-MM-DD.")),
    ],
    ends_on: Annotated[
        datetime,
        typer.Option(
            "--to", formats=DAY_FORMATS, help=N_("Last paused day (included), YYYY-MM-DD.")
        ),
    ],
    reason: Annotated[str, typer.Option("--reason", help=N_("What it is for, e.g. Winter break."))],
    as_email: AsEmail = None,
) -> None:
    added = _run_as(
        as_email,
        "billing pause",
        lambda ctx, actor: add_pause(ctx, actor, starts_on.date(), ends_on.date(), reason),
    )
    console.print(_("Added billing pause {pause}.", pause=escape(added.describe())))


@pause_app.command("list", help=N_("List the billing pauses."))
def pause_list(
    everything: Annotated[
        bool, typer.Option("--all", help=N_("Past pauses too, not only current and coming ones."))
    ] = False,
    as_email: AsEmail = None,
) -> None:
    pauses = _run_as(
        as_email,
        "billing pauses",
        lambda ctx, actor: list_pauses(ctx, actor, include_past=everything),
    )
    if not pauses:
        if everything:
            console.print(_("There are no billing pauses."))
        else:
            console.print(_("There are no current or coming billing pauses."))
        return
    table = Table(_("id"), _("from"), _("to"), _("days"), _("reason"))
    for p in pauses:
        table.add_row(
            str(p.id), p.starts_on.isoformat(), p.ends_on.isoformat(), str(p.days), escape(p.reason)
        )
    console.print(table)


@pause_app.command(
    "remove", help=N_("Remove a billing pause; its days count again from the next run on.")
)
def pause_remove(
    pause_id: Annotated[int, typer.Argument(metavar="ID", help=N_("The pause's id (see list)."))],
    as_email: AsEmail = None,
) -> None:
    removed = _run_as(
        as_email, "billing pause", lambda ctx, actor: remove_pause(ctx, actor, pause_id)
    )
    console.print(_("Removed billing pause {pause}.", pause=escape(removed.describe())))


# --- settings -----------------------------------------------------------------------------------


_SETTING_LABELS = {
    "default_due_days": N_("default due days"),
    "automation_default": N_("automation on new invoices"),
    "pre_due_enabled": N_("pre-due reminders"),
    "pre_due_days": N_("pre-due reminder days"),
    "overdue_enabled": N_("overdue notices"),
    "overdue_days": N_("overdue notice days"),
    "auto_cancel_enabled": N_("auto-cancellation"),
    "auto_cancel_days": N_("auto-cancel days after the final notice"),
    "stop_reminders_on_partial_payment": N_("stop reminders on a partial payment"),
    "daily_run_time": N_("daily run time"),
    "waiver_approval_cents": N_("waivers above this need approval"),
}


def _shown(value: Any, name: str = "") -> str:
    if name == "waiver_approval_cents" and isinstance(value, int):
        return format_cents(value)
    if isinstance(value, bool):
        return _("on") if value else _("off")
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


@settings_app.command("show", help=N_("Show the billing automation settings."))
def settings_show() -> None:
    async def work(runtime: Runtime) -> tuple[BillingSettings, str]:
        async with runtime.reads() as store:
            return billing_settings_from(
                await store.settings.get()
            ), runtime.settings.district_timezone

    current, tz = _run(work)
    table = Table(_("setting"), _("value"))
    for name, label in _SETTING_LABELS.items():
        value = _shown(getattr(current, name), name)
        if name == "daily_run_time":
            value += f" ({tz})"
        table.add_row(_(label), value)
    console.print(table)


def _day_list(text: str, option: str, field: str) -> tuple[int, ...]:
    parts = [p for p in re.split(r"[,\s]+", text) if p]
    if not parts or not all(_DAYS_RE.match(p) for p in parts):
        raise ValidationError(
            _(
                "{option} takes whole numbers of days separated by commas, e.g. 14,7,1.",
                option=option,
            ),
            field=field,
        )
    return tuple(int(p) for p in parts)


@settings_app.command(
    "set", help=N_("Change the billing automation settings given; the others stay as they are.")
)
def settings_set(
    default_due_days: Annotated[
        int | None, typer.Option("--default-due-days", help=N_("Days from creation to due date."))
    ] = None,
    automation_default: Annotated[
        bool | None,
        typer.Option(
            "--automation-default/--no-automation-default",
            help=N_("Whether new invoices have automation on."),
        ),
    ] = None,
    pre_due: Annotated[
        bool | None,
        typer.Option("--pre-due/--no-pre-due", help=N_("Reminders before the due date.")),
    ] = None,
    pre_due_days: Annotated[
        str | None,
        typer.Option(
            "--pre-due-days", metavar="DAYS", help=N_("Days before the due date: 14,7,1.")
        ),
    ] = None,
    overdue: Annotated[
        bool | None, typer.Option("--overdue/--no-overdue", help=N_("Overdue notices."))
    ] = None,
    overdue_days: Annotated[
        str | None,
        typer.Option(
            "--overdue-days",
            metavar="DAYS",
            help=N_("Days after the due date: first, second, final."),
        ),
    ] = None,
    auto_cancel: Annotated[
        bool | None, typer.Option("--auto-cancel/--no-auto-cancel", help=N_("Auto-cancellation."))
    ] = None,
    auto_cancel_days: Annotated[
        int | None, typer.Option("--auto-cancel-days", help=N_("Days after the final notice."))
    ] = None,
    stop_on_partial: Annotated[
        bool | None,
        typer.Option(
            "--stop-on-partial/--no-stop-on-partial",
            help=N_("Whether a partial payment stops the reminders."),
        ),
    ] = None,
    run_time: Annotated[
        str | None,
        typer.Option("--run-time", metavar="HH:MM", help=N_("Daily run time, district time zone.")),
    ] = None,
    waiver_approval: Annotated[
        str | None,
        typer.Option(
            "--waiver-approval",
            metavar="DOLLARS",
            help=N_("Waivers above this amount need an approver, e.g. 100.00 (0 for all)."),
        ),
    ] = None,
    as_email: AsEmail = None,
) -> None:
    given: dict[str, Any] = {
        "default_due_days": default_due_days,
        "automation_default": automation_default,
        "pre_due_enabled": pre_due,
        "overdue_enabled": overdue,
        "auto_cancel_enabled": auto_cancel,
        "auto_cancel_days": auto_cancel_days,
        "stop_reminders_on_partial_payment": stop_on_partial,
        "daily_run_time": run_time,
    }
    try:
        if pre_due_days is not None:
            given["pre_due_days"] = _day_list(pre_due_days, "--pre-due-days", "pre_due_days")
        if overdue_days is not None:
            given["overdue_days"] = _day_list(overdue_days, "--overdue-days", "overdue_days")
        if waiver_approval is not None:
            given["waiver_approval_cents"] = parse_amount(
                waiver_approval, field="waiver_approval_cents"
            )
    except ValidationError as exc:
        console.print(f"[red]{escape(exc.message)} {_('Nothing was changed.')}[/red]")
        raise typer.Exit(1) from exc
    changes = {name: value for name, value in given.items() if value is not None}
    if not changes:
        console.print(_("Give at least one setting to change; see --help."))
        raise typer.Exit(2)

    async def change(ctx: Context, actor: Actor) -> dict[str, tuple[Any, Any]]:
        current = billing_settings_from(await ctx.store.settings.get())
        return await change_billing_settings(ctx, actor, replace(current, **changes))

    changed = _run_as(as_email, "billing settings", change)
    if not changed:
        console.print(_("Billing automation settings unchanged: they already had those values."))
        return
    console.print(_("Billing automation settings saved:"))
    for name, (old, new) in changed.items():
        label = _(_SETTING_LABELS.get(name, name.replace("_", " ")))
        console.print(f"  {label}: {escape(_shown(old, name))} → {escape(_shown(new, name))}")
