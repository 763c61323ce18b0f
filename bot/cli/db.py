"""`devicecare db …`: the database schema, changed only here (see storage/migrate.py)."""

from __future__ import annotations

from typing import Annotated

import typer
from alembic.util.exc import CommandError
from rich.console import Console

from bot.cli.run import run_with_runtime
from bot.runtime import Runtime, prepare_database
from bot.settings import get_settings
from storage import migrate
from workflows.i18n import N_, _

db_app = typer.Typer(help=N_("Database schema."), no_args_is_help=True)


@db_app.command(
    "upgrade",
    help=N_(
        "Migrate the database schema (and create the shipped roles and settings).\n"
        "\n"
        "Run it after installing a new version and before starting it. Several runs at once are\n"
        "safe: on PostgreSQL they take turns under a lock, and the later ones find nothing to do."
    ),
)
def db_upgrade(
    revision: Annotated[str, typer.Argument(help=N_("Target revision."))] = "head",
) -> None:
    settings = get_settings()
    url = settings.database_url
    where = migrate.where(url)
    before = migrate.check_schema(url)
    if before.is_ahead:
        raise migrate.SchemaNotReady(before.describe())

    def waiting() -> None:
        typer.echo(
            _("Another upgrade of {where} is running; waiting for it to finish.", where=where)
        )

    try:
        applied = migrate.upgrade(url, revision, on_wait=waiting)
    except CommandError as exc:  # an unknown or unreachable target revision
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    for step in applied:
        said = (
            N_("Applied {revision}: {message}")
            if step.forward
            else N_("Reverted {revision}: {message}")
        )
        typer.echo(_(said, revision=step.revision, message=step.message))

    after = migrate.check_schema(url)
    at = ", ".join(after.current) or "base"  # alembic's name for no revision
    if not after.is_current:
        heads = ", ".join(after.heads)
        typer.echo(
            _(
                "Database at {where} is at {at}; this version goes up to {heads}.",
                where=where,
                at=at,
                heads=heads,
            )
        )
        return

    async def seed(runtime: Runtime) -> None:
        await prepare_database(runtime)

    run_with_runtime(settings, seed, console=Console())
    said = (
        N_("Database at {where} is up to date (at {at}).")
        if applied
        else N_("Database at {where} is already up to date (at {at}).")
    )
    typer.echo(_(said, where=where, at=at))


@db_app.command(
    "current",
    help=N_("Show the schema revision the database is at (exit status 1 unless it is current)."),
)
def db_current() -> None:
    url = get_settings().database_url
    state = migrate.check_schema(url)
    typer.echo(f"{migrate.where(url)}: {state.describe()}")
    if not state.is_current:
        raise typer.Exit(1)
