"""`devicecare insurance …`: enrollments in bulk, third-party device coverage, policy terms and
premiums, and coverage-expiring reminders.

Changes act as the command line itself (named in the activity log), or with `--as EMAIL` as
that staff member, who then needs the permission the change asks for.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bot.cli.run import (
    CLI_ACTOR_NAME,
    DAY_FORMATS,
    as_staff_option,
    cli_actor,
    log_refusal,
    run_with_runtime,
)
from bot.jobs.scheduler import send_coverage_reminders
from bot.runtime import Runtime
from bot.settings import get_settings
from services.enrollment_import import EnrollmentImport, Outcome, import_enrollments
from storage.csv_in import CsvFileError
from storage.device_coverage import CoverageImport, import_coverage
from storage.enrollment_store import all_policies
from workflows.enrollment import (
    CoverageStarts,
    PolicySetup,
    ReminderTotals,
    configure_policy,
)
from workflows.errors import PermissionDenied
from workflows.i18n import N_, _
from workflows.money import format_cents, parse_amount
from workflows.permissions import Actor
from workflows.ports import Context

insurance_app = typer.Typer(
    help=N_("Insurance enrollment and premiums, device coverage, reminders."), no_args_is_help=True
)
coverage_app = typer.Typer(
    help=N_("Third-party device coverage (AppleCare+ and the like)."), no_args_is_help=True
)
policy_app = typer.Typer(
    help=N_("Policies: term, premium, enrollment window."), no_args_is_help=True
)
insurance_app.add_typer(coverage_app, name="coverage")
insurance_app.add_typer(policy_app, name="policy")

console = Console()
T = TypeVar("T")

AsEmail = Annotated[str | None, as_staff_option()]
CsvFile = Annotated[
    Path,
    typer.Argument(exists=True, file_okay=True, dir_okay=False, readable=True, metavar="FILE.csv"),
]


def _run(work: Callable[[Runtime], Awaitable[T]]) -> T:
    return run_with_runtime(get_settings(), work, console=console)


# --- enrollments from CSV -------------------------------------------------------------------


@insurance_app.command(
    "import",
    help=N_(
        "Enroll students from a CSV (columns student_id, policy, optional waiver_reason).\n"
        "\n"
        "Without --apply nothing is written: every row's outcome is shown. With --apply the good\n"
        "rows are enrolled (a rerun changes nothing). Bad rows make the exit status 1."
    ),
)
def import_command(
    file: CsvFile,
    apply: Annotated[
        bool,
        typer.Option(
            "--apply", help=N_("Enroll the good rows (without it, only show what would).")
        ),
    ] = False,
    email: AsEmail = None,
) -> None:
    async def work(runtime: Runtime) -> EnrollmentImport:
        actor = await cli_actor(runtime, email)
        try:
            return await import_enrollments(
                runtime.stores, runtime.clock, runtime.settings.tz, actor, file, apply=apply
            )
        except PermissionDenied as exc:
            await log_refusal(runtime, actor, "enrollment import", exc.message)
            raise

    try:
        result = _run(work)
    except CsvFileError as exc:
        console.print(f"[red]{escape(str(exc))}[/red] " + _("Nothing was changed."))
        raise typer.Exit(1) from exc
    _print_enrollment_import(result)
    if not result.ok:
        raise typer.Exit(1)


_OUTCOME_STYLE = {
    Outcome.WOULD_ENROLL: "green",
    Outcome.ENROLLED: "green",
    Outcome.ALREADY: "dim",
    Outcome.ERROR: "red",
}


def _print_enrollment_import(result: EnrollmentImport) -> None:
    table = Table(box=box.SIMPLE_HEAD)
    for column in (N_("line"), N_("student"), N_("policy"), N_("outcome"), N_("detail")):
        table.add_column(_(column))
    for row in result.rows:
        style = _OUTCOME_STYLE[row.outcome]
        table.add_row(
            str(row.line),
            escape(row.student_sis_id),
            escape(row.policy),
            f"[{style}]{_(row.outcome.value)}[/{style}]",
            escape(row.reason),
        )
    console.print(table)
    bad = len(result.bad)
    if result.applied:
        console.print(
            _(
                "{enrolled} enrolled, {already} already enrolled, {bad} bad.",
                enrolled=result.count(Outcome.ENROLLED),
                already=result.count(Outcome.ALREADY),
                bad=bad,
            )
        )
    else:
        console.print(
            _(
                "{enrolled} would be enrolled, {already} already enrolled, {bad} bad. "
                "Nothing was changed; run again with --apply to enroll the good rows.",
                enrolled=result.count(Outcome.WOULD_ENROLL),
                already=result.count(Outcome.ALREADY),
                bad=bad,
            )
        )


# --- device coverage --------------------------------------------------------------------------


@coverage_app.command(
    "import",
    help=N_(
        "Load device coverage from a CSV (serial, plan, coverage start and end, optional\n"
        "provider), e.g. an Apple School Manager AppleCare export. Bad rows make the exit status 1."
    ),
)
def coverage_import_command(
    file: CsvFile,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help=N_("Show what would change; write nothing."))
    ] = False,
) -> None:
    async def work(runtime: Runtime) -> CoverageImport:
        async with runtime.stores() as store:
            result = await import_coverage(store, file, runtime.clock.now(), apply=not dry_run)
            if result.applied and (result.added or result.updated):
                await store.activity.log(
                    Actor.system(CLI_ACTOR_NAME),
                    "device_coverage",
                    None,
                    "imported",
                    after={
                        "file": file.name,
                        "added": result.added,
                        "updated": result.updated,
                        "problems": len(result.problems),
                    },
                )
            await store.commit()
            return result

    try:
        result = _run(work)
    except CsvFileError as exc:
        console.print(f"[red]{escape(str(exc))}[/red] " + _("Nothing was changed."))
        raise typer.Exit(1) from exc
    for problem in result.problems:
        console.print(f"[red]{escape(str(problem))}[/red]")
    said = (
        N_(
            "{added} coverage rows would be added, {updated} would be updated, "
            "{unchanged} unchanged, {bad} bad."
        )
        if dry_run
        else N_(
            "{added} coverage rows were added, {updated} were updated, "
            "{unchanged} unchanged, {bad} bad."
        )
    )
    console.print(
        _(
            said,
            added=result.added,
            updated=result.updated,
            unchanged=result.unchanged,
            bad=len(result.problems),
        )
    )
    if not result.ok:
        raise typer.Exit(1)


# --- policies -------------------------------------------------------------------------------


def _premium(text: str | None) -> int | None:
    return None if text is None else parse_amount(text, field="premium")


@policy_app.command(
    "set",
    help=N_(
        "Create or change a policy's term, premium, enrollment window and reminder\n"
        "(needs Manage Policies with --as)."
    ),
)
def policy_set_command(
    name: Annotated[str, typer.Argument(help=N_("The policy's name (created when new)."))],
    term_label: Annotated[
        str | None, typer.Option("--term-label", help=N_("e.g. 2026-2027"))
    ] = None,
    term_start: Annotated[
        datetime | None, typer.Option("--term-start", formats=DAY_FORMATS)
    ] = None,
    term_end: Annotated[datetime | None, typer.Option("--term-end", formats=DAY_FORMATS)] = None,
    premium: Annotated[
        str | None, typer.Option("--premium", help=N_("Dollars, e.g. 25.00 (0 for none)."))
    ] = None,
    window_opens: Annotated[
        datetime | None, typer.Option("--window-opens", formats=DAY_FORMATS)
    ] = None,
    window_closes: Annotated[
        datetime | None, typer.Option("--window-closes", formats=DAY_FORMATS)
    ] = None,
    coverage_starts: Annotated[
        CoverageStarts | None,
        typer.Option("--coverage-starts", help=N_("on_payment (default) or immediately.")),
    ] = None,
    expiry_reminder_days: Annotated[
        int | None,
        typer.Option("--expiry-reminder-days", help=N_("Remind families this many days before.")),
    ] = None,
    no_expiry_reminder: Annotated[
        bool, typer.Option("--no-expiry-reminder", help=N_("Send no coverage-expiring reminder."))
    ] = False,
    active: Annotated[
        bool | None, typer.Option("--active/--inactive", help=N_("Offer the policy or not."))
    ] = None,
    device_plan: Annotated[
        str | None,
        typer.Option(
            "--device-plan",
            help=(
                N_(
                    "Insure devices whose own coverage plan (synced from Apple School Manager or "
                    'imported) starts with this, e.g. "AppleCare+"; "" to stop.'
                )
            ),
        ),
    ] = None,
    email: AsEmail = None,
) -> None:
    async def work(runtime: Runtime) -> str:
        setup = PolicySetup(
            name=name,
            term_label=term_label,
            term_start=None if term_start is None else term_start.date(),
            term_end=None if term_end is None else term_end.date(),
            premium_cents=_premium(premium),
            enroll_opens_on=None if window_opens is None else window_opens.date(),
            enroll_closes_on=None if window_closes is None else window_closes.date(),
            coverage_starts=coverage_starts,
            expiry_reminder_days=expiry_reminder_days,
            no_expiry_reminder=no_expiry_reminder,
            active=active,
            device_plan=device_plan,
        )
        actor = await cli_actor(runtime, email)
        try:
            async with runtime.stores() as store:
                ctx = Context(store, runtime.clock, runtime.settings.tz)
                policy, changes = await configure_policy(ctx, actor, setup)
                lines = [_("Policy #{id} {name}:", id=policy.id, name=policy.name)]
                lines += [
                    f"  {f.replace('_', ' ')}: {old} → {new}" for f, (old, new) in changes.items()
                ]
                if not changes:
                    lines.append("  " + _("nothing changed."))
                await store.commit()
                return "\n".join(lines)
        except PermissionDenied as exc:
            await log_refusal(runtime, actor, "policy settings", exc.message)
            raise

    console.print(escape(_run(work)))


@policy_app.command(
    "list", help=N_("Every policy with its term, premium, enrollment window and reminder.")
)
def policy_list_command() -> None:
    async def work(runtime: Runtime) -> Table:
        async with runtime.reads() as store:
            policies = await all_policies(store)
        table = Table(box=box.SIMPLE_HEAD)
        for column in (
            "#",
            N_("name"),
            N_("term"),
            N_("premium"),
            N_("window"),
            N_("coverage starts"),
            N_("reminder"),
        ):
            table.add_column(_(column))
        for p in policies:
            term = (
                f"{p.term_label or ''} {p.term_start} – {p.term_end}".strip()
                if p.term_start
                else "—"
            )
            window = f"{p.enroll_opens_on or '…'} – {p.enroll_closes_on or '…'}"
            reminder = (
                "—"
                if p.expiry_reminder_days is None
                else _("{days} days", days=p.expiry_reminder_days)
            )
            name = escape(p.name) + ("" if p.active else " " + _("[dim](inactive)[/dim]"))
            table.add_row(
                str(p.id),
                name,
                escape(term),
                format_cents(p.premium_cents),
                escape(window),
                _(CoverageStarts(p.coverage_starts).label),
                reminder,
            )
        return table

    console.print(_run(work))


# --- reminders --------------------------------------------------------------------------------


@insurance_app.command(
    "remind",
    help=N_("Queue coverage-expiring reminders due on a day (what the scheduler does daily)."),
)
def remind_command(
    day: Annotated[
        datetime | None,
        typer.Option(
            "--date", formats=DAY_FORMATS, help=N_("The day to run for (default: today).")
        ),
    ] = None,
) -> None:
    async def work(runtime: Runtime) -> ReminderTotals:
        return await send_coverage_reminders(runtime, None if day is None else day.date())

    totals = _run(work)
    console.print(
        _(
            "{queued} families reminded; {skipped} enrollments skipped "
            "(no premium invoice to email about).",
            queued=totals.queued,
            skipped=totals.no_invoice,
        )
    )
