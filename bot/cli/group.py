"""The root command group: a problem found while starting is one line on stderr, exit code 2.

Settings that can't be used and a database schema that doesn't fit this version are what an
administrator fixes before anything can run; a traceback would only hide the line that says how.

Help is staff text too. Typer builds the command tree before any of it runs, so the help of
every command, option and argument is written in English (marked with `N_()`) and put in the
staff language when the command line starts, before an argument is read: `--help` anywhere in
the tree, and a missing argument's usage, read the district's language.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer
from typer.core import TyperGroup

from bot.config_errors import ConfigurationError
from bot.settings import get_settings
from storage.migrate import SchemaNotReady
from workflows.i18n import _, set_staff_language

STARTUP_ERROR_EXIT = 2


def read_staff_language() -> None:
    """The district's staff language for what the command line prints, help included; settings
    that can't be used leave English and are the command's to report."""
    try:
        settings = get_settings()
    except Exception:  # noqa: BLE001 - reported by the command that needs the settings
        return
    set_staff_language(settings.staff_language)


def translate_help(command: Any) -> None:
    """The help of `command` and everything under it, in the staff language (click's and
    typer's command objects alike, by duck typing: typer may carry its own copy of click).

    A command may carry `staff_help()` for help composed of several msgids."""
    composed: Callable[[], str] | None = getattr(command, "staff_help", None)
    if composed is not None:
        command.help = composed()
    elif command.help:
        command.help = _(command.help)
    if command.short_help:
        command.short_help = _(command.short_help)
    for param in command.params:
        if getattr(param, "help", None):
            param.help = _(param.help)
    for sub in getattr(command, "commands", {}).values():
        translate_help(sub)


class DeviceCareGroup(TyperGroup):
    def main(self, *args: Any, **kwargs: Any) -> Any:
        read_staff_language()
        translate_help(self)
        return super().main(*args, **kwargs)

    def invoke(self, ctx: Any) -> Any:  # click's Context (typer vendors click)
        try:
            return super().invoke(ctx)
        except (ConfigurationError, SchemaNotReady) as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(STARTUP_ERROR_EXIT) from None
