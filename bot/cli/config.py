"""`devicecare config …`: the configuration as the service sees it."""

from __future__ import annotations

import asyncio

import typer

from bot.cli.config_check import all_passed, effective_settings, render, run_checks
from bot.settings import get_settings
from workflows.i18n import N_

config_app = typer.Typer(help=N_("Configuration."), no_args_is_help=True)


@config_app.command(
    "check",
    help=N_(
        "Print the effective configuration (secrets hidden) and test the database, SMTP and IMAP.\n"
        "\n"
        "Nothing is written, sent or marked read. Exit status 0 when every part that is turned on\n"
        "works, 1 otherwise; a setting that can't be used at all is one line and exit status 2."
    ),
)
def config_check() -> None:
    settings = get_settings()
    results = asyncio.run(run_checks(settings))
    for line in render(effective_settings(settings), results):
        typer.echo(line)
    if not all_passed(results):
        raise typer.Exit(1)
