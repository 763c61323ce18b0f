"""`devicecare outbox status | failed | retry ID`: what is queued, what failed, and a push."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bot.cli.run import cli_actor, run_with_runtime
from bot.runtime import Runtime
from bot.settings import get_settings
from storage.monitoring import OutboxKind, outbox_by_kind
from storage.outbox_admin import FailedMessage, Retried, failed_messages, retry_failed
from workflows.i18n import N_, _

outbox_app = typer.Typer(
    help=N_("Queued email and Slack posts: what is waiting, what failed, and retrying it."),
    no_args_is_help=True,
)
log = logging.getLogger("devicecare.outbox")
ERROR_WIDTH = 160  # the table shows the start of an error; the database keeps 2000 characters


def _age(now: datetime, then: datetime | None) -> str:
    if then is None:
        return ""
    seconds = max(0, int((now - then).total_seconds()))
    if seconds < 120:
        return _("{count} s", count=seconds)
    if seconds < 7200:
        return _("{count} min", count=seconds // 60)
    if seconds < 2 * 86_400:
        return _("{count} h", count=seconds // 3600)
    return _("{count} d", count=seconds // 86_400)


@outbox_app.command(
    "status", help=N_("Messages by kind and status, and how old the oldest pending one is.")
)
def status_command() -> None:
    console = Console()  # made per run, so it takes the terminal width (COLUMNS) of now

    async def work(runtime: Runtime) -> tuple[datetime, dict[str, OutboxKind]]:
        async with runtime.reads() as store:
            return runtime.clock.now(), await outbox_by_kind(store)

    now, kinds = run_with_runtime(get_settings(), work, console=console)
    if not kinds:
        console.print(_("The outbox is empty."))
        return
    table = Table(
        _("kind"), _("pending"), _("sent"), _("failed"), _("oldest pending"), _("longest due")
    )
    for row in kinds.values():
        table.add_row(
            row.kind,
            str(row.counts.get("pending", 0)),
            str(row.counts.get("sent", 0)),
            str(row.counts.get("failed", 0)),
            _age(now, row.oldest_pending),
            _age(now, row.oldest_due) if row.oldest_due and row.oldest_due <= now else "",
        )
    console.print(table)
    failed = sum(row.counts.get("failed", 0) for row in kinds.values())
    if failed:
        console.print(_("{count} failed: see `devicecare outbox failed`.", count=failed))


@outbox_app.command(
    "failed",
    help=N_(
        "Failed messages, newest first: id, kind, recipient (shortened), attempts, last error."
    ),
)
def failed_command(
    limit: Annotated[int, typer.Option("--limit", min=1, help=N_("Show at most this many."))] = 100,
) -> None:
    console = Console()  # made per run, so it takes the terminal width (COLUMNS) of now

    async def work(runtime: Runtime) -> tuple[datetime, list[FailedMessage]]:
        async with runtime.reads() as store:
            return runtime.clock.now(), await failed_messages(store, limit)

    now, rows = run_with_runtime(get_settings(), work, console=console)
    if not rows:
        console.print(_("No failed messages."))
        return
    table = Table(_("id"), _("kind"), _("recipient"), _("attempts"), _("failed"), _("last error"))
    for row in rows:
        error = row.last_error if len(row.last_error) <= ERROR_WIDTH else row.last_error[:159] + "…"
        table.add_row(
            str(row.id),
            row.kind,
            escape(row.recipient),
            str(row.attempts),
            _("{age} ago", age=_age(now, row.failed_at)),
            escape(error),
        )
    console.print(table)
    console.print(
        _("Fix the cause (`devicecare config check`), then `devicecare outbox retry ID`.")
    )


@outbox_app.command(
    "retry",
    help=N_("Send a failed message again: the worker picks it up with a fresh set of attempts."),
)
def retry_command(
    message_id: Annotated[int, typer.Argument(help=N_("The id `devicecare outbox failed` shows."))],
    as_email: Annotated[
        str | None, typer.Option("--as", help=N_("Act as this staff member (for the audit log)."))
    ] = None,
) -> None:
    console = Console()  # made per run, so it takes the terminal width (COLUMNS) of now

    async def work(runtime: Runtime) -> Retried:
        actor = await cli_actor(runtime, as_email)
        async with runtime.stores() as store:
            before = await retry_failed(store, message_id, runtime.clock.now())
            await store.activity.log(
                actor,
                "outbox",
                message_id,
                "retried",
                before={
                    "status": "failed",
                    "attempts": before.attempts,
                    "last_error": before.last_error,
                },
                after={"status": "pending", "attempts": 0},
            )
            await store.commit()
        return before

    retried = run_with_runtime(get_settings(), work, console=console)
    log.info("outbox %s #%s queued again by the command line", retried.kind, retried.id)
    console.print(
        _(
            "Outbox message #{id} ({kind}) is queued again;"
            " the worker sends it with its next batch.",
            id=retried.id,
            kind=retried.kind,
        )
    )
