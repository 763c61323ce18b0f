"""The root command group: a problem found while starting is one line on stderr, exit code 2.

Settings that can't be used and a database schema that doesn't fit this version are what an
administrator fixes before anything can run; a traceback would only hide the line that says how.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from bot.config_errors import ConfigurationError
from storage.migrate import SchemaNotReady

STARTUP_ERROR_EXIT = 2


class DeviceCareGroup(TyperGroup):
    def invoke(self, ctx: Any) -> Any:  # click's Context (typer vendors click)
        try:
            return super().invoke(ctx)
        except (ConfigurationError, SchemaNotReady) as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(STARTUP_ERROR_EXIT) from None
