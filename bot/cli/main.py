"""The `devicecare` command line."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager, suppress
from importlib.metadata import version as package_version
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from bot.cli.billing import billing_app
from bot.cli.config import config_app
from bot.cli.db import db_app
from bot.cli.district_settings import settings_app
from bot.cli.fee_items import fee_items_app
from bot.cli.fees import fees_app
from bot.cli.group import DeviceCareGroup
from bot.cli.insurance import insurance_app
from bot.cli.invoice import invoice_app
from bot.cli.ledger import ledger_app
from bot.cli.outbox import outbox_app
from bot.cli.payments import payments_app
from bot.cli.privacy import privacy_app
from bot.cli.reports import report_app
from bot.cli.roster import import_command
from bot.cli.run import run_with_runtime
from bot.cli.secret import guard_secrets, secret_app
from bot.cli.sync import sync_app
from bot.heartbeat import start_heartbeats
from bot.runtime import Runtime, log_parts
from bot.settings import Settings, get_settings
from bot.web.http_edge import REDACT_FAMILY_TOKENS
from workflows.i18n import N_, _
from workflows.permissions import Actor

app = typer.Typer(
    cls=DeviceCareGroup,
    help=N_("DeviceCare: damaged and lost student devices, from report to payment."),
    no_args_is_help=True,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"devicecare {package_version('devicecare')}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help=N_("Print the installed version and exit."),
            callback=_print_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """DeviceCare: damaged and lost student devices, from report to payment."""
    # The staff language was read by DeviceCareGroup.main, before the arguments.


staff_app = typer.Typer(help=N_("Staff and roles."), no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(config_app, name="config")
app.add_typer(staff_app, name="staff")
app.add_typer(billing_app, name="billing")
app.add_typer(report_app, name="report")
app.add_typer(invoice_app, name="invoice")
app.add_typer(fees_app, name="fees")
app.add_typer(fee_items_app, name="fee-items")
app.add_typer(insurance_app, name="insurance")
app.add_typer(payments_app, name="payments")
app.add_typer(settings_app, name="settings")
app.add_typer(ledger_app, name="ledger")
app.add_typer(outbox_app, name="outbox")
app.add_typer(secret_app, name="secret")
app.add_typer(privacy_app, name="privacy")
app.add_typer(sync_app, name="sync")
app.command("import", help=N_("Import students, guardians and devices from CSV."))(import_command)

console = Console()
T = TypeVar("T")
CLI_ACTOR = Actor.system("devicecare CLI")


def _setup_logging(settings: Settings) -> None:
    from bot.error_reporting import init_error_reporting
    from bot.logs import setup_logging

    setup_logging(settings)  # one format (LOG_FORMAT) for ours and uvicorn's records
    init_error_reporting(settings)  # SENTRY_DSN


def _run(settings: Settings, work: Callable[[Runtime], Awaitable[T]]) -> T:
    """Check the schema, open the runtime, run `work`, close; domain errors exit cleanly."""
    return run_with_runtime(settings, work, console=console)


# --- processes --------------------------------------------------------------------------------
# Each part runs until `stop` is set; the CLI owns SIGINT/SIGTERM so all parts stop together.


async def _until(stop: asyncio.Event, work: Awaitable[None]) -> None:
    task = asyncio.ensure_future(work)
    waiter = asyncio.ensure_future(stop.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    for pending in (task, waiter):
        pending.cancel()
        with suppress(asyncio.CancelledError):
            await pending


async def _serve_web(runtime: Runtime, stop: asyncio.Event) -> None:
    import uvicorn

    from bot.web.app import create_web_app

    class Server(uvicorn.Server):
        @contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield  # signals are handled by the CLI, which tells us to exit

    slack_app = None
    socket_mode = None
    if runtime.settings.slack_enabled:
        from bot.slack.app import build_slack_app

        slack_app = build_slack_app(runtime)
        if runtime.settings.slack_app_token is not None:
            from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

            socket_mode = AsyncSocketModeHandler(
                slack_app, runtime.settings.slack_app_token.get_secret_value()
            )
            await socket_mode.connect_async()
    web_app = create_web_app(runtime, slack_app)
    if web_app.state.slack_identity is not None:
        # Learn the workspace and app now; if Slack can't say yet, the first request asks again.
        with suppress(TimeoutError):
            await asyncio.wait_for(web_app.state.slack_identity.installation(), 20)
    # Family links are bearer tokens: the access log shows their paths without them.
    logging.getLogger("uvicorn.access").addFilter(REDACT_FAMILY_TOKENS)
    config = uvicorn.Config(
        web_app,
        host=runtime.settings.host,
        port=runtime.settings.port,
        log_level=runtime.settings.log_level.lower(),
        log_config=None,  # uvicorn's records go through our handler (bot.logs)
        lifespan="off",
        # X-Forwarded-For is read by the app, from TRUSTED_PROXIES only (bot/web/proxies.py).
        proxy_headers=False,
        # Requests still open when a stop comes get this long to finish.
        timeout_graceful_shutdown=int(SHUTDOWN_GRACE_SECONDS) - 2,
    )
    server = Server(config)
    serving = asyncio.create_task(server.serve())
    await asyncio.wait(
        {serving, asyncio.ensure_future(stop.wait())}, return_when=asyncio.FIRST_COMPLETED
    )
    server.should_exit = True
    await serving
    if socket_mode is not None:
        await socket_mode.close_async()
    if slack_app is not None:
        from bot.slack.client import close_web_client

        await close_web_client(slack_app.client)


async def _run_worker(runtime: Runtime, stop: asyncio.Event) -> None:
    from bot.jobs.worker import Handler, OutboxWorker

    handlers: dict[str, Handler] = {}
    if runtime.settings.smtp_enabled:
        from bot.mail.sender import notice_handlers

        handlers.update(notice_handlers(runtime.settings, runtime.clock))
    if runtime.settings.stripe_enabled:
        from bot.web.stripe_webhooks import outbox_handlers as stripe_handlers

        handlers.update(stripe_handlers(runtime))
    client = None
    if runtime.settings.slack_enabled:
        from bot.slack.app import slack_outbox_handlers
        from bot.slack.client import build_web_client

        client = build_web_client(runtime.settings)
        handlers.update(slack_outbox_handlers(runtime, client))
    try:
        await _until(stop, OutboxWorker(runtime.stores, runtime.clock, handlers).run_forever())
    finally:
        if client is not None:
            from bot.slack.client import close_web_client

            await close_web_client(client)


async def _run_mail(runtime: Runtime, stop: asyncio.Event) -> None:
    if not runtime.settings.imap_enabled:
        logging.getLogger("devicecare.mail").info("mail agent idle: %s", runtime.parts["email in"])
        await stop.wait()  # stays up: a supervisor restarting an exited process would loop
        return
    from bot.mail.reader import build_reader

    await build_reader(runtime).run(stop)  # reconnects by itself until stopped


async def _run_scheduler(runtime: Runtime, stop: asyncio.Event) -> None:
    from bot.jobs.scheduler import build_scheduler

    scheduler = await build_scheduler(runtime)
    scheduler.start()
    try:
        await stop.wait()
    finally:
        scheduler.shutdown(wait=False)


PROCESSES: dict[str, Callable[[Runtime, asyncio.Event], Coroutine[Any, Any, None]]] = {
    "web": _serve_web,
    "worker": _run_worker,
    "mail": _run_mail,
    "scheduler": _run_scheduler,
}


# After SIGTERM the parts finish what they hold, within this; container runtimes and systemd
# kill a process that takes much longer (docker after 10 s, systemd after 90 s by default).
SHUTDOWN_GRACE_SECONDS = 8


def _start(names: list[str]) -> None:
    settings = get_settings()
    guard_secrets(settings)
    _setup_logging(settings)

    async def work(runtime: Runtime) -> None:
        log_parts(runtime)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        tasks = [asyncio.create_task(PROCESSES[n](runtime, stop), name=n) for n in names]
        beats = start_heartbeats(runtime.stores, runtime.clock, names, stop)  # for /readyz
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        stop.set()  # one part ending (or a signal) stops them all
        _, late = await asyncio.wait([*tasks, *beats], timeout=SHUTDOWN_GRACE_SECONDS)
        for task in late:  # a part stuck in its work must not hold the process past a stop
            logging.getLogger("devicecare").warning(
                "%s did not stop within %d s; cancelled", task.get_name(), SHUTDOWN_GRACE_SECONDS
            )
            task.cancel()
        if late and (await asyncio.wait(late, timeout=2))[1]:
            # Still running after being cancelled: nothing more can be asked of it.
            logging.getLogger("devicecare").error("a part ignored its cancellation; exiting")
            logging.shutdown()
            os._exit(70)
        await asyncio.gather(*tasks, *beats, return_exceptions=True)
        for task in done:
            if task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        logging.getLogger("devicecare").info("stopped")

    _run(settings, work)


@app.command(
    help=N_("Run everything in one process: web app, outbox worker, mail agent and scheduler.")
)
def serve() -> None:
    _start(["web", "worker", "mail", "scheduler"])


@app.command(help=N_("Run the web app (Slack events, webhooks, pages, /healthz)."))
def web() -> None:
    _start(["web"])


@app.command(help=N_("Deliver queued notices and Slack posts."))
def worker() -> None:
    _start(["worker"])


@app.command(help=N_("Read parents' replies from the IMAP mailbox."))
def mail() -> None:
    _start(["mail"])


@app.command(help=N_("Run the daily jobs at their configured local times."))
def scheduler() -> None:
    _start(["scheduler"])


# --- staff --------------------------------------------------------------------------------


@staff_app.command(
    "add", help=N_("Add a staff member (or change their role) before they are in Slack.")
)
def staff_add(
    email: Annotated[str, typer.Argument(help=N_("The staff member's work email."))],
    role: Annotated[str, typer.Option("--role", help=N_("Role name, e.g. Technician."))],
    slack_id: Annotated[str | None, typer.Option("--slack-id", help=N_("Slack user id."))] = None,
    name: Annotated[str | None, typer.Option("--name", help=N_("Display name."))] = None,
) -> None:
    from storage.staff import add_staff

    async def work(runtime: Runtime) -> str:
        async with runtime.stores() as store:
            result = await add_staff(
                store,
                runtime.clock,
                CLI_ACTOR,
                email=email,
                role=role,
                name=name,
                slack_user_id=slack_id,
            )
            said = (
                N_("Added {email} ({role})")
                if result.created
                else (
                    N_("Updated {email} ({role})")
                    if result.changed
                    else N_("Unchanged: {email} ({role})")
                )
            )
            await store.commit()
            return _(said, email=result.staff.email, role=result.role_name)

    console.print(_run(get_settings(), work))


@staff_app.command("list", help=N_("List staff members and their roles."))
def staff_list() -> None:
    from storage.staff import list_roles, list_staff

    async def work(runtime: Runtime) -> Table:
        async with runtime.stores() as store:
            roles = {r.id: r.name for r in await list_roles(store)}
            table = Table(_("email"), _("name"), _("role"), _("slack id"), _("active"))
            for s in await list_staff(store):
                table.add_row(
                    s.email,
                    s.display_name,
                    roles[s.role_id],
                    s.slack_user_id or "",
                    _("yes") if s.active else _("no"),
                )
            await store.commit()
            return table

    console.print(_run(get_settings(), work))


@staff_app.command("roles", help=N_("List roles with their permissions and restricted statuses."))
def staff_roles() -> None:
    from storage.staff import list_roles

    async def work(runtime: Runtime) -> Table:
        async with runtime.stores() as store:
            table = Table(_("role"), _("permissions"), _("restricted statuses"))
            for r in await list_roles(store):
                perms = _("all (SuperAdmin)") if r.is_superadmin else ", ".join(r.permissions)
                table.add_row(r.name, perms, ", ".join(r.allowed_statuses))
            await store.commit()
            return table

    console.print(_run(get_settings(), work))


# --- demo ---------------------------------------------------------------------------------


@app.command(help=N_("Load a sample district and a school year of activity (safe to run again)."))
def demo() -> None:
    from bot.cli.demo_year import links_to_open, load_school_year
    from storage.demo import load_demo

    async def work(runtime: Runtime) -> str:
        async with runtime.stores() as store:
            result = await load_demo(store, runtime.clock, runtime.settings.district_timezone)
            await store.commit()
        year = await load_school_year(runtime)
        opened = "".join(f"\n{line}" for line in await links_to_open(runtime))
        if not result.created and not year.created:
            return _("The demo district is already loaded.") + opened
        loaded = _(
            "Loaded the demo district: {students} students, {devices} devices, "
            "2 insurance policies and a fee schedule; {incidents} incidents, "
            "{invoices} invoices and {replies} parent replies this school year.",
            students=result.students,
            devices=result.devices,
            incidents=year.incidents,
            invoices=year.invoices,
            replies=year.replies,
        )
        return loaded + opened

    console.print(_run(get_settings(), work), soft_wrap=True)
