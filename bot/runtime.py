"""The composition root: the one place that wires settings, database, clock and services."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from bot.settings import PLACEHOLDER_SECRET_KEY, Settings
from storage.blobs import BlobStore, LocalBlobStore
from storage.db import (
    Engine,
    Sessions,
    create_engine,
    create_writer_engine,
    is_sqlite,
    session_factory,
)
from storage.seed import ensure_defaults
from storage.uow import UnitOfWorkFactory
from workflows.clock import Clock, SystemClock
from workflows.i18n import set_staff_language

log = logging.getLogger("devicecare")


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: Sessions
    stores: UnitOfWorkFactory
    clock: Clock
    blobs: BlobStore
    # Queries that never write use these: on SQLite they don't queue behind writers.
    reads: UnitOfWorkFactory
    parts: dict[str, str] = field(default_factory=dict)

    read_engine: Engine | None = None

    async def close(self) -> None:
        await self.engine.dispose()
        if self.read_engine is not None:
            await self.read_engine.dispose()


# How long a write opened inside another may wait for one of the connections kept for it.
POOL_TIMEOUT_SECONDS = 30.0


def _writer_pool(url: str) -> dict[str, int]:
    """SQLite has one writer at a time: one write connection per process queues writers in
    the event loop instead of in SQLite's busy handler, which sleeps up to 100 ms a try.
    PostgreSQL's writers take turns at 12 connections, and 3 more serve a write opened inside
    another, which must not wait behind the queue (storage.write_queue)."""
    if is_sqlite(url):
        return {"pool_size": 1, "max_overflow": 0, "reserved": 0}
    return {"pool_size": 5, "max_overflow": 10, "reserved": 3}


def _reader_pool(url: str) -> dict[str, int]:
    """In a burst, reads (type-ahead above all) queued for SQLAlchemy's default 5 + 10
    connections while the server had CPU to spare (bench/slack_burst.py). A SQLite connection
    is a file handle and a thread; a PostgreSQL one is a server process, and the server's
    default limit is 100, so there a process holds at most 30 readers plus 15 writers."""
    if is_sqlite(url):
        return {"pool_size": 10, "max_overflow": 40}
    return {"pool_size": 10, "max_overflow": 20}


def build_runtime(settings: Settings, clock: Clock | None = None) -> Runtime:
    engine = create_writer_engine(
        settings.database_url,
        **_writer_pool(settings.database_url),
        turn_wait_seconds=settings.database_write_wait_seconds,
        pool_timeout=POOL_TIMEOUT_SECONDS,
    )
    # Reads get their own connection pool, so a queue of writers can never starve them.
    read_engine = create_engine(settings.database_url, **_reader_pool(settings.database_url))
    clock = clock or SystemClock()
    set_staff_language(settings.staff_language)
    sessions = session_factory(engine, clock=clock)
    if settings.slack_enabled:
        from storage.home_refresh import watch_home_changes  # Slack's parts load with Slack

        watch_home_changes(sessions, clock)
    return Runtime(
        settings,
        engine,
        sessions,
        UnitOfWorkFactory(sessions, clock, mail_domain=settings.mail_domain),
        clock,
        LocalBlobStore(settings.blob_dir),
        UnitOfWorkFactory(
            session_factory(read_engine, read_only=True), clock, mail_domain=settings.mail_domain
        ),
        parts=describe_parts(settings),
        read_engine=read_engine,
    )


async def prepare_database(runtime: Runtime) -> None:
    async with runtime.stores() as uow:
        await ensure_defaults(uow)
        await uow.commit()


def describe_parts(settings: Settings) -> dict[str, str]:
    """Which parts of the service can run with this configuration, and why not."""
    parts: dict[str, str] = {}
    if settings.slack_enabled:
        mode = "Socket Mode" if settings.slack_app_token else "HTTP events at /slack/events"
        parts["slack"] = f"on ({mode})"
    else:
        parts["slack"] = "off: set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET to turn it on"
    parts["email out"] = (
        f"on (SMTP {settings.smtp_host}:{settings.smtp_port})"
        if settings.smtp_enabled
        else "off: set SMTP_HOST and SMTP_FROM to send notices"
    )
    parts["email in"] = (
        f"on (IMAP {settings.imap_host}:{settings.imap_port})"
        if settings.imap_enabled
        else "off: set IMAP_HOST, IMAP_USERNAME and IMAP_PASSWORD to read replies"
    )
    if settings.stripe_enabled:
        parts["payments"] = "on (Stripe Checkout; webhooks at /webhooks/stripe)"
    elif settings.payment_portal_url_template:
        parts["payments"] = f"on (links to {settings.payment_portal_name})"
    else:
        parts["payments"] = (
            "off: set STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET (or PAYMENT_PORTAL_URL_TEMPLATE)"
            " to take payments online"
        )
    if settings.secret_key.get_secret_value() == PLACEHOLDER_SECRET_KEY:
        parts["secret key"] = (
            "placeholder: fine on this machine only; set SECRET_KEY (devicecare secret generate)"
            " before going live"
        )
    return parts


def log_parts(runtime: Runtime) -> None:
    for name, state in runtime.parts.items():
        log.info("%-10s %s", name, state)
