"""`devicecare fees …`: define annual fees, see who they would bill, and apply them in bulk.

Commands act as the command line itself (a system actor, named in the activity log), or with
`--as EMAIL` as that staff member, who then needs Manage Fees.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bot.cli.run import (
    DAY_FORMATS,
    as_staff_option,
    cli_actor,
    in_store_as,
    log_refusal,
    run_with_runtime,
)
from bot.runtime import Runtime
from bot.settings import get_settings
from services.bulk_fees import BulkFeeBiller
from storage.fee_store import SqlFeeStore
from storage.uow import SqlUnitOfWork
from workflows.errors import PermissionDenied, ValidationError
from workflows.fees import (
    BillResult,
    FeeCounts,
    FeeDefinition,
    FeePreview,
    FeeRecord,
    apply_fee,
    clean_school_year,
    current_school_year,
    define_fee,
    find_fee,
    list_fees,
    preview_fee,
    who_is_billed,
)
from workflows.grades import parse_grades
from workflows.i18n import N_, _
from workflows.money import format_cents, parse_amount
from workflows.permissions import Actor
from workflows.ports import Context

fees_app = typer.Typer(
    help=N_("Annual fees (e.g. a technology fee): define, preview and bill them in bulk."),
    no_args_is_help=True,
)
console = Console()
T = TypeVar("T")
S = TypeVar("S")

AsEmail = Annotated[str | None, as_staff_option("Manage Fees")]
Year = Annotated[
    str | None,
    typer.Option(
        "--year",
        metavar="YYYY-YYYY",
        help=N_("School year, e.g. 2026-2027 (default: the current)."),
    ),
]
Code = Annotated[str, typer.Argument(metavar="CODE", help=N_("The fee's code, e.g. tech-fee."))]


def run_fee_command(work: Callable[[Runtime], Awaitable[T]]) -> T:
    """Run a fee command's work; a refusal is printed with "Nothing was changed."."""
    return run_with_runtime(get_settings(), work, console=console, nothing_changed=True)


def fail_unchanged(message: str) -> None:
    console.print(f"[red]{escape(message)} {_('Nothing was changed.')}[/red]")
    raise typer.Exit(1)


def run_fee_work(
    email: str | None,
    what: str,
    beside: Callable[[SqlUnitOfWork], S],
    work: Callable[[Context, S, Actor], Awaitable[T]],
) -> T:
    """Run `work` in one transaction, as the command line or the staff member `email`, with the
    store `beside` opens next to the main one; a refusal is printed with "Nothing was changed."."""

    async def main(runtime: Runtime) -> T:
        async def with_store(store: SqlUnitOfWork, actor: Actor) -> T:
            ctx = Context(store, runtime.clock, runtime.settings.tz)
            return await work(ctx, beside(store), actor)

        return await in_store_as(runtime, email, what, with_store)

    return run_fee_command(main)


async def _year(ctx: Context, year: str | None) -> str:
    if year:
        return clean_school_year(year)
    return current_school_year(await ctx.store.settings.get(), ctx.today())


def _split(text: str | None) -> list[str]:
    return [p.strip() for p in re.split(r",", text or "") if p.strip()]


@fees_app.command(
    "add", help=N_("Define a fee for a school year, or change the one with the same code and year.")
)
def add_command(
    code: Code,
    name: Annotated[
        str, typer.Option("--name", help=N_("What families see, e.g. Technology fee."))
    ],
    amount: Annotated[str, typer.Option("--amount", help=N_("Dollars per student, e.g. 25.00."))],
    year: Year = None,
    grades: Annotated[
        str | None,
        typer.Option("--grades", help=N_("Only these grades, e.g. 6,7,8 (default: all).")),
    ] = None,
    buildings: Annotated[
        str | None,
        typer.Option(
            "--buildings", help=N_('Only these buildings, by name: "North Middle,South Middle".')
        ),
    ] = None,
    due: Annotated[
        datetime | None,
        typer.Option(
            "--due", formats=DAY_FORMATS, help=N_("Due date, YYYY-MM-DD (default: the district's).")
        ),
    ] = None,
    as_email: AsEmail = None,
) -> None:
    try:
        cents = parse_amount(amount)
        grade_list = parse_grades(grades)
    except ValidationError as exc:
        fail_unchanged(exc.message)
        return

    async def work(ctx: Context, fees: SqlFeeStore, actor: Actor) -> tuple[FeeRecord, bool, str]:
        building_ids = await fees.building_ids_named(_split(buildings))
        definition = FeeDefinition(
            code=code,
            name=name,
            school_year=await _year(ctx, year),
            amount_cents=cents,
            grades=grade_list,
            building_ids=building_ids,
            due_date=None if due is None else due.date(),
        )
        fee, created = await define_fee(ctx, fees, actor, definition)
        names = await fees.building_names([int(b) for b in fee.building_ids])
        return fee, created, who_is_billed(fee, names)

    fee, created, who = run_fee_work(as_email, "fees add", SqlFeeStore.beside, work)
    said = (
        N_(
            "Added fee [bold]{code}[/bold] ({year}): {name}, {amount} per student, {who}, "
            "due {due}."
        )
        if created
        else N_(
            "Updated fee [bold]{code}[/bold] ({year}): {name}, {amount} per student, {who}, "
            "due {due}."
        )
    )
    due_text = fee.due_date.isoformat() if fee.due_date else _("the district's default")
    console.print(
        _(
            said,
            code=escape(fee.code),
            year=escape(fee.school_year),
            name=escape(fee.name),
            amount=format_cents(fee.amount_cents),
            who=escape(who),
            due=due_text,
        )
    )
    console.print(
        _(
            "See who it would bill with `devicecare fees preview {code} --year {year}`.",
            code=fee.code,
            year=fee.school_year,
        )
    )


@fees_app.command(
    "list",
    help=N_("The fees of a school year, with how many students each billed and would bill now."),
)
def list_command(year: Year = None, as_email: AsEmail = None) -> None:
    async def work(
        ctx: Context, fees: SqlFeeStore, actor: Actor
    ) -> tuple[str, list[tuple[FeeRecord, FeeCounts, str]]]:
        shown, found = await list_fees(ctx, fees, actor, year)
        names = {b.id: b.name for b in await fees.buildings()}
        return shown, [(fee, counts, who_is_billed(fee, names)) for fee, counts in found]

    shown, found = run_fee_work(as_email, "fees list", SqlFeeStore.beside, work)
    if not found:
        console.print(
            _(
                "There are no fees for {year}. Add one with `devicecare fees add`.",
                year=escape(shown),
            )
        )
        return
    table = Table(title=shown)
    for column in (
        N_("code"),
        N_("name"),
        N_("amount"),
        N_("who"),
        N_("due"),
        N_("billed"),
        N_("to bill"),
    ):
        table.add_column(_(column), no_wrap=column in ("code", "amount", "due"))
    for fee, counts, who in found:
        table.add_row(
            escape(fee.code),
            escape(fee.name) + ("" if fee.active else " " + _("(off)")),
            format_cents(fee.amount_cents),
            escape(who),
            fee.due_date.isoformat() if fee.due_date else _("default"),
            str(counts.already_billed),
            str(counts.to_bill),
        )
    console.print(table)


@fees_app.command(
    "preview",
    help=N_("How many students applying the fee now would bill, and the total; changes nothing."),
)
def preview_command(code: Code, year: Year = None, as_email: AsEmail = None) -> None:
    async def work(ctx: Context, fees: SqlFeeStore, actor: Actor) -> FeePreview:
        fee = await find_fee(fees, code, await _year(ctx, year))
        return await preview_fee(ctx, fees, actor, fee.id)

    preview = run_fee_work(as_email, "fees preview", SqlFeeStore.beside, work)
    fee, counts = preview.fee, preview.counts
    console.print(
        _(
            "[bold]{code}[/bold] ({year}), {name}, {amount} per student. "
            "Nothing has been billed by this preview.",
            code=escape(fee.code),
            year=escape(fee.school_year),
            name=escape(fee.name),
            amount=format_cents(fee.amount_cents),
        )
    )
    # Labels padded to one width, so the numbers line up in every language.
    rows = (
        (_("students to bill now:"), str(counts.to_bill)),
        (_("total:"), format_cents(preview.total_cents)),
        (_("already billed:"), str(counts.already_billed)),
    )
    width = max(25, *(len(label) + 1 for label, _value in rows))
    for label, value in rows:
        console.print(f"  {label.ljust(width)}{value}")
    if counts.without_email:
        console.print(
            _(
                "[yellow]  {count} of them have no guardian email that works; "
                "their invoices are created but not emailed.[/yellow]",
                count=counts.without_email,
            )
        )


@fees_app.command(
    "apply",
    help=N_(
        "Bill every matching student not yet billed for the fee and email each family.\n"
        "\n"
        "A rerun bills only students who weren't billed yet (e.g. new enrolments)."
    ),
)
def apply_command(code: Code, year: Year = None, as_email: AsEmail = None) -> None:
    async def main(runtime: Runtime) -> tuple[FeeRecord, BillResult]:
        actor = await cli_actor(runtime, as_email)
        async with runtime.reads() as store:
            ctx = Context(store, runtime.clock, runtime.settings.tz)
            fee = await find_fee(SqlFeeStore.beside(store), code, await _year(ctx, year))
        biller = BulkFeeBiller(
            runtime.sessions,
            runtime.clock,
            runtime.settings.tz,
            mail_domain=runtime.settings.mail_domain,
        )
        try:
            return fee, await apply_fee(biller, actor, fee.id)
        except PermissionDenied as exc:
            await log_refusal(runtime, actor, "fees apply", exc.message)
            raise

    fee, result = run_fee_command(main)
    console.print(
        _(
            "[bold]{code}[/bold] ({year}): {created} invoice(s) created, {amount} in all, "
            "{notices} email(s) queued.",
            code=escape(fee.code),
            year=escape(fee.school_year),
            created=result.created,
            amount=format_cents(result.total_cents),
            notices=result.notices,
        )
    )
    if result.already_billed:
        console.print(
            _(
                "{count} student(s) had already been billed for it.",
                count=result.already_billed,
            )
        )
    if not result.created:
        console.print(_("Nobody new to bill."))
