"""`devicecare report <name>`: one command per report in the catalogue, all run the same way.

A command reads its options, runs the report's query in one read snapshot through the
composition root (bot.cli.run), then prints it; `--csv PATH` writes every row with the
report's fixed columns. Bad options exit with status 2, a refused or impossible request with 1.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console
from typer.core import TyperCommand

from bot.cli.run import run_with_runtime
from bot.reports.catalogue import REPORTS, Report, Run
from bot.reports.delivery import snapshot
from bot.runtime import Runtime
from bot.settings import get_settings
from workflows.i18n import N_

report_app = typer.Typer(help=N_("Billing reports for the business office."), no_args_is_help=True)


def _console() -> Console:
    # Made per command so the terminal width is read when the command runs.
    return Console()


def run_report_command(report: Report, options: dict[str, Any]) -> None:
    console = _console()
    asked = report.read_options(options, console)
    settings = get_settings()

    async def work(runtime: Runtime) -> Any:
        async with snapshot(runtime) as store:
            return await report.compute(Run(runtime, store), asked)

    found = run_with_runtime(settings, work, console=console)
    report.show(found, asked, console, settings.tz)


def command_for(report: Report) -> Callable[..., None]:
    """A typer command whose options are the report's declared ones."""

    def command(**options: Any) -> None:
        run_report_command(report, options)

    parameters = [
        inspect.Parameter(
            o.param, inspect.Parameter.KEYWORD_ONLY, annotation=o.annotation, default=o.default
        )
        for o in report.options
    ]
    command.__signature__ = inspect.Signature(parameters, return_annotation=None)  # type: ignore[attr-defined]
    command.__annotations__ = {o.param: o.annotation for o in report.options}
    command.__doc__ = report.help
    command.__name__ = report.name.replace("-", "_")
    return command


class ReportCommand(TyperCommand):
    """A report's command; its help is put in the staff language by the root group."""

    def staff_help(self) -> str:
        return REPORTS[self.name or ""].staff_help()


for _report in REPORTS.values():
    report_app.command(_report.name, cls=ReportCommand)(command_for(_report))
