"""Running async work from a CLI command: check the schema, open the runtime, close."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from bot.runtime import Runtime, build_runtime, prepare_database
from bot.settings import Settings
from storage import migrate
from storage.uow import SqlUnitOfWork
from workflows.errors import DomainError, NotFound, PermissionDenied
from workflows.i18n import N_, _
from workflows.permissions import Actor

T = TypeVar("T")

CLI_ACTOR_NAME = "Command line"  # who a command acts as without --as, in the activity log
DAY_FORMATS = ["%Y-%m-%d"]


def as_staff_option(needs: str | None = None) -> Any:
    """The `--as EMAIL` option of a command that changes something; `needs` names the
    permission the staff member must have, when the command needs one in particular."""
    return typer.Option("--as", metavar="EMAIL", help=AS_STAFF_HELP[needs])


# Whole sentences, one per permission a command asks for, so each is one msgid.
AS_STAFF_HELP = {
    None: N_("Act as this staff member (default: the command line itself)."),
    "Manage Fees": N_(
        "Act as this staff member, who needs Manage Fees (default: the command line itself)."
    ),
    "Manage Settings": N_(
        "Act as this staff member, who needs Manage Settings (default: the command line itself)."
    ),
    "Record Payments": N_(
        "Act as this staff member, who needs Record Payments (default: the command line itself)."
    ),
}


def run_with_runtime(
    settings: Settings,
    work: Callable[[Runtime], Awaitable[T]],
    *,
    console: Console,
    nothing_changed: bool = False,
) -> T:
    """Run `work` with a fresh runtime; a domain error is printed (followed by "Nothing was
    changed." when `nothing_changed`) and exits with status 1.

    The schema is checked first (SQLite is upgraded by itself; PostgreSQL must have been upgraded
    with `devicecare db upgrade`, else SchemaNotReady).
    """
    migrate.ensure_schema(settings.database_url)

    async def main() -> T:
        runtime = build_runtime(settings)
        try:
            await prepare_database(runtime)
            return await work(runtime)
        finally:
            await runtime.close()

    try:
        return asyncio.run(main())
    except DomainError as exc:
        suffix = " " + _("Nothing was changed.") if nothing_changed else ""
        console.print(f"[red]{escape(exc.message)}{suffix}[/red]")
        raise typer.Exit(1) from exc


async def cli_actor(runtime: Runtime, email: str | None) -> Actor:
    """The command line itself, or the active staff member `--as` names."""
    if email is None:
        return Actor.system(CLI_ACTOR_NAME)
    async with runtime.reads() as store:
        staff = await store.people.actor_by_email(email)
    if staff is None:
        raise NotFound(_("No active staff member has the email {email}.", email=email), field="as")
    return staff


async def log_refusal(runtime: Runtime, actor: Actor, what: str, reason: str) -> None:
    """A refusal is kept in the activity log, like one in Slack."""
    async with runtime.stores() as store:
        await store.activity.log_refusal(actor, what, reason)
        await store.commit()


async def in_store_as(
    runtime: Runtime,
    email: str | None,
    what: str,
    work: Callable[[SqlUnitOfWork, Actor], Awaitable[T]],
) -> T:
    """Run `work` in one transaction, as the command line or the staff member `email`; a
    refusal of their permission is kept in the activity log."""
    actor = await cli_actor(runtime, email)
    try:
        async with runtime.stores() as store:
            result = await work(store, actor)
            await store.commit()
            return result
    except PermissionDenied as exc:
        await log_refusal(runtime, actor, what, exc.message)
        raise
