"""`devicecare fee-items …`: the fee schedule the Slack forms price from, with each item's kind.

Damage fees are offered on an incident's invoice, collection fees at device collection; annual
and other items are offered by no form. Commands act as the command line itself, or with
`--as EMAIL` as that staff member, who then needs Manage Fees.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bot.cli.fees import AsEmail, fail_unchanged, run_fee_work
from storage.fee_item_store import SqlFeeItemStore
from workflows.errors import ValidationError
from workflows.fee_items import FeeItemChange, list_fee_items, set_fee_item
from workflows.fee_kinds import FEE_KINDS, FeeKind, kind_label, parse_fee_kind
from workflows.i18n import N_, _
from workflows.money import format_cents, parse_amount
from workflows.permissions import Actor
from workflows.ports import Context, FeeItemRecord

fee_items_app = typer.Typer(
    help=N_("The fee schedule (parts, fines, collection items) and the kind of each item."),
    no_args_is_help=True,
)
console = Console()
KINDS = "|".join(FEE_KINDS)


def describe(item: FeeItemRecord) -> str:
    """One line for a person: name, kind, price and what it applies to."""
    kind = _(kind_label(item.kind)).lower()
    parts = [f"{item.name}, {kind}, {format_cents(item.price_cents)}"]
    if item.device_model:
        parts.append(_("for {model}", model=item.device_model))
    if item.incident_flag:
        parts.append(_("on {flag} incidents", flag=item.incident_flag))
    if not item.active:
        parts.append(_("retired"))
    return ", ".join(parts)


@fee_items_app.command(
    "list", help=N_("The fee schedule by kind, with the form that offers each kind.")
)
def list_command(
    kind: Annotated[
        str | None, typer.Option("--kind", metavar=KINDS, help=N_("Only items of this kind."))
    ] = None,
    show_all: Annotated[bool, typer.Option("--all", help=N_("Include retired items."))] = False,
    as_email: AsEmail = None,
) -> None:
    try:
        wanted = None if kind is None else parse_fee_kind(kind)
    except ValidationError as exc:
        fail_unchanged(exc.message)
        return

    async def work(ctx: Context, items: SqlFeeItemStore, actor: Actor) -> list[FeeItemRecord]:
        return await list_fee_items(items, actor, wanted, inactive=show_all)

    found = run_fee_work(as_email, "fee-items list", SqlFeeItemStore.beside, work)
    if not found:
        console.print(_("There are no fee items. Add one with `devicecare fee-items set`."))
        return
    for kind in dict.fromkeys(item.kind for item in found):
        table = Table(
            title=_(
                "{kind} fees: offered on {where}", kind=_(kind_label(kind)), where=offered_on(kind)
            )
        )
        for column in (N_("code"), N_("name"), N_("price"), N_("model"), N_("flag")):
            table.add_column(_(column), no_wrap=column in ("code", "price"))
        for item in (i for i in found if i.kind == kind):
            table.add_row(
                escape(item.code),
                escape(item.name) + ("" if item.active else " " + _("(retired)")),
                format_cents(item.price_cents),
                escape(item.device_model or _("any")),
                escape(item.incident_flag or ""),
            )
        console.print(table)


def offered_on(kind: str) -> str:
    return _(FeeKind(kind).offered_on) if kind in FEE_KINDS else _("no form")


@fee_items_app.command(
    "set",
    help=N_(
        "Add a fee item (name, amount and kind needed), or change the one with this code.\n"
        "\n"
        "Invoices and collections already made keep the name and price they had."
    ),
)
def set_command(
    code: Annotated[str, typer.Argument(metavar="CODE", help=N_("The item's code, e.g. screen."))],
    name: Annotated[
        str | None, typer.Option("--name", help=N_("What invoices show, e.g. Screen replacement."))
    ] = None,
    amount: Annotated[
        str | None, typer.Option("--amount", help=N_("The price in dollars, e.g. 125.00."))
    ] = None,
    kind: Annotated[
        str | None,
        typer.Option(
            "--kind",
            metavar=KINDS,
            help=N_(
                "damage: offered on an incident's invoice; collection: at device collection; "
                "annual and other: offered by no form."
            ),
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", help=N_('Only for this device model ("" for every model).')),
    ] = None,
    flag: Annotated[
        str | None,
        typer.Option("--flag", help=N_('Only on incidents with this flag ("" for any incident).')),
    ] = None,
    active: Annotated[
        bool | None,
        typer.Option("--active/--retired", help=N_("Offer the item, or stop offering it.")),
    ] = None,
    as_email: AsEmail = None,
) -> None:
    try:
        change = FeeItemChange(
            code=code,
            name=name,
            price_cents=None if amount is None else parse_amount(amount),
            kind=None if kind is None else parse_fee_kind(kind),
            device_model=model,
            incident_flag=flag,
            active=active,
        )
    except ValidationError as exc:
        fail_unchanged(exc.message)
        return

    async def work(
        ctx: Context, items: SqlFeeItemStore, actor: Actor
    ) -> tuple[FeeItemRecord, bool]:
        return await set_fee_item(ctx, items, actor, change)

    item, added = run_fee_work(as_email, "fee-items set", SqlFeeItemStore.beside, work)
    said = (
        N_("Added fee item [bold]{code}[/bold]: {item}; offered on: {where}.")
        if added
        else N_("Saved fee item [bold]{code}[/bold]: {item}; offered on: {where}.")
    )
    console.print(
        _(said, code=escape(item.code), item=escape(describe(item)), where=offered_on(item.kind))
    )
