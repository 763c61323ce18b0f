"""`devicecare settings …`: the district's facts families are told (name, where to mail a
check, the business office's phone, hours and email), shown and changed from the command line.

Changes go through the same check as `/billing settings` in Slack
(`workflows.administration.change_district_facts`) and are audited with who made them: the
command line itself, or with `--as EMAIL` that staff member, who needs Manage Settings.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

# The same --as as `devicecare billing settings`: both need Manage Settings.
from bot.cli.billing import AsEmail
from bot.cli.run import in_store_as, run_with_runtime
from bot.runtime import Runtime
from bot.settings import get_settings
from storage.uow import SqlUnitOfWork
from workflows.administration import change_district_facts
from workflows.district_facts import COLUMNS, LABELS, DistrictFacts, facts_from, ways_to_pay
from workflows.i18n import N_, _
from workflows.permissions import Actor
from workflows.ports import Context

settings_app = typer.Typer(
    help=N_("What families are told about the district: name, check address, office contact."),
    no_args_is_help=True,
)
console = Console()
Changed = tuple[dict[str, tuple[str, str]], DistrictFacts]  # what changed, and the facts now

_LABEL_BY_COLUMN = {COLUMNS[fact]: label for fact, label in LABELS.items()}


def _shown(value: str) -> str:
    return escape(", ".join(value.split("\n"))) if value else _("[dim](not set)[/dim]")


def _facts_table(facts: DistrictFacts) -> Table:
    table = Table(show_header=False, box=None)
    for fact, label in LABELS.items():
        table.add_row(_(label), _shown(getattr(facts, fact)))
    return table


@settings_app.command(
    "show", help=N_("Show the district's facts and the ways to pay families are offered.")
)
def show_command() -> None:
    settings = get_settings()

    async def work(runtime: Runtime) -> DistrictFacts:
        async with runtime.reads() as store:
            return facts_from(await store.settings.get())

    facts = run_with_runtime(settings, work, console=console)
    console.print(_facts_table(facts))
    ways = ways_to_pay(
        facts, stripe=settings.stripe_enabled, portal=bool(settings.payment_portal_url_template)
    )
    offered = [
        _(name)
        for name, on in (
            (N_("online (Stripe)"), ways.online),
            (N_("the payment portal"), ways.portal),
            (N_("check by mail"), ways.check_by_mail),
            (N_("in person at the business office"), ways.in_person),
        )
        if on
    ]
    console.print(
        _(
            "Ways to pay offered: {ways}",
            ways=", ".join(offered) if offered else _("none (families are asked to reply)"),
        )
    )


@settings_app.command(
    "set",
    help=N_(
        'Change some of the district\'s facts; "" clears one. Checked as in Slack, and audited.'
    ),
)
def set_command(
    district_name: Annotated[
        str | None,
        typer.Option("--district-name", help=N_("The district's name, as families see it.")),
    ] = None,
    check_payable_to: Annotated[
        str | None,
        typer.Option(
            "--check-payable-to", help=N_("Who checks are made out to (default: the name).")
        ),
    ] = None,
    check_address: Annotated[
        str | None,
        typer.Option(
            "--check-address",
            help=N_(
                'Where checks are mailed; separate lines with " / " '
                '(e.g. "Business Office / 410 Harbor Rd / Lakeview, MN 55001").'
            ),
        ),
    ] = None,
    office_phone: Annotated[
        str | None, typer.Option("--office-phone", help=N_("The business office's phone number."))
    ] = None,
    office_hours: Annotated[
        str | None,
        typer.Option(
            "--office-hours",
            help=N_("When (and where) families can pay in person, e.g. Mon-Fri 8-4."),
        ),
    ] = None,
    office_email: Annotated[
        str | None, typer.Option("--office-email", help=N_("The business office's email address."))
    ] = None,
    it_contact_name: Annotated[
        str | None,
        typer.Option(
            "--it-contact-name",
            help=N_("Whom staff not yet in DeviceCare ask to be added, e.g. Dana Reyes."),
        ),
    ] = None,
    it_contact: Annotated[
        str | None,
        typer.Option(
            "--it-contact",
            help=N_(
                "Their email address or Slack channel, e.g. helpdesk@district.org or #it-help."
            ),
        ),
    ] = None,
    as_email: AsEmail = None,
) -> None:
    changes = {
        "name": district_name,
        "check_payable_to": check_payable_to,
        "check_address": check_address,
        "office_phone": office_phone,
        "office_hours": office_hours,
        "office_email": office_email,
        "it_contact_name": it_contact_name,
        "it_contact": it_contact,
    }
    if all(value is None for value in changes.values()):
        console.print(_("[red]Give at least one setting to change, e.g. --office-phone.[/red]"))
        raise typer.Exit(2)

    async def work(runtime: Runtime) -> Changed:
        async def change(store: SqlUnitOfWork, actor: Actor) -> Changed:
            done = await change_district_facts(
                Context(store, runtime.clock, runtime.settings.tz), actor, changes
            )
            return done, facts_from(await store.settings.get())

        return await in_store_as(runtime, as_email, "district settings", change)

    done, facts = run_with_runtime(get_settings(), work, console=console, nothing_changed=True)
    if not done:
        console.print(_("Nothing changed: those are the settings already."))
        return
    for column, (old, new) in done.items():
        console.print(f"{_(_LABEL_BY_COLUMN[column])}: {_shown(old)} → {_shown(new)}")
    console.print(_facts_table(facts))
