"""Running one piece of async work from a CLI command: migrate, open the runtime, close."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from bot.runtime import Runtime, build_runtime, prepare_database
from bot.settings import Settings
from storage import migrate
from workflows.errors import DomainError

T = TypeVar("T")


def run_with_runtime(
    settings: Settings,
    work: Callable[[Runtime], Awaitable[T]],
    *,
    console: Console,
    refused_suffix: str = "",
) -> T:
    """Run `work` with a fresh runtime; a domain error is printed and exits with status 1."""
    migrate.upgrade(settings.database_url)

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
        console.print(f"[red]{escape(exc.message)}{refused_suffix}[/red]")
        raise typer.Exit(1) from exc
