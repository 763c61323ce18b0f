"""The email agent's fixtures: a private Dovecot for the session, a fresh folder per test, and
the real Slack app (signed requests, fake Web API) on the same runtime as the IMAP reader.

Dovecot comes from Debian's packages; where it is missing the fixture installs it (as root), as
`.ci/run` does. If it can't be installed or started, IMAP tests skip with the reason — except in
CI (TEST_REQUIRE_POSTGRES=1 or TEST_REQUIRE_DOVECOT=1), where that is a failure.
"""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields
from datetime import date
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.mail.ingest import Ingestor
from bot.mail.reader import ImapReader, ReaderConfig, build_reader
from bot.mail.tokens import make_reply_token, reply_address
from bot.runtime import build_runtime
from bot.settings import Settings
from bot.slack.app import build_slack_app
from bot.slack.client import build_web_client
from bot.web.app import create_web_app
from storage import models as m
from storage.uow import UnitOfWorkFactory
from tests.builders import District, add_district, add_staff
from tests.mail.dovecot import Dovecot, DovecotUnavailable, start_dovecot
from tests.slack.conftest import (  # noqa: F401 - `slack` (and its settings) are fixtures here too
    APPROVALS_CHANNEL,
    BILLING_CHANNEL,
    INCIDENTS_CHANNEL,
    SlackHarness,
    slack,
    slack_settings,
)
from tests.slack.fake_api import BOT_TOKEN, FakeSlack
from tests.slack.signing import SIGNING_SECRET, SlackSender
from workflows.clock import FixedClock
from workflows.incidents import OpenIncident, open_incident
from workflows.invoices import CreateInvoice, CustomLine, create_invoice_for_incident
from workflows.ports import Context

DOVECOT_REQUIRED = "1" in (
    os.environ.get("TEST_REQUIRE_POSTGRES"),
    os.environ.get("TEST_REQUIRE_DOVECOT"),
)
SECRET = "test-secret-key"
TZ = ZoneInfo("America/Chicago")


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    try:
        server = start_dovecot()
    except (DovecotUnavailable, OSError) as exc:
        message = f"Dovecot is needed for the IMAP tests but unavailable: {exc}"
        if DOVECOT_REQUIRED:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def mailbox(dovecot: Dovecot) -> str:
    """A folder of its own for each test."""
    return dovecot.new_mailbox()


@dataclass
class MailHarness(SlackHarness):
    dovecot: Dovecot
    mailbox: str

    def reader(self, **overrides: Any) -> ImapReader:
        """The reader `devicecare mail` runs, with quick reconnects for tests."""
        values: dict[str, Any] = {"reconnect_initial": 0.05, "reconnect_max": 0.5}
        values.update(overrides)
        return build_reader(self.runtime, **values)

    def config(self, **overrides: Any) -> ReaderConfig:
        return ReaderConfig.from_settings(self.runtime.settings, **overrides)

    def ingestor(self) -> Ingestor:
        return Ingestor.from_runtime(self.runtime)

    def append(self, *messages: bytes) -> None:
        self.dovecot.append(self.mailbox, *messages)

    async def inbound(self) -> list[m.InboundMessage]:
        async with self.runtime.stores() as store:
            rows = await store.session.execute(
                select(m.InboundMessage).order_by(m.InboundMessage.id)
            )
            await store.commit()
            return list(rows.scalars())

    async def wait_for_inbound(
        self, count: int, *, timeout: float = 10.0
    ) -> list[m.InboundMessage]:
        rows: list[m.InboundMessage] = []

        async def enough() -> bool:
            nonlocal rows
            rows = await self.inbound()
            return len(rows) >= count

        await eventually(enough, timeout=timeout, what=f"{count} inbound messages")
        return rows


async def eventually(
    check: Callable[[], Awaitable[bool]], *, timeout: float = 10.0, what: str = "condition"
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def harness_settings(
    database_url: str, blob_dir: Path, fake: FakeSlack, dovecot: Dovecot, mailbox: str, **extra: Any
) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "blob_dir": blob_dir,
        "slack_bot_token": BOT_TOKEN,
        "slack_signing_secret": SIGNING_SECRET,
        "slack_api_url": fake.base_url,
        "slack_incidents_channel": INCIDENTS_CHANNEL,
        "slack_approvals_channel": APPROVALS_CHANNEL,
        "slack_billing_channel": BILLING_CHANNEL,
        "secret_key": SECRET,
        "imap_host": dovecot.host,
        "imap_port": dovecot.imap_port,
        "imap_username": dovecot.user,
        "imap_password": dovecot.password,
        "imap_security": "none",
        "imap_mailbox": mailbox,
        "imap_poll_seconds": 2,
        "imap_timeout_seconds": 5,
    }
    values.update(extra)
    return Settings(_env_file=None, **values)


@asynccontextmanager
async def open_harness(
    database_url: str,
    clock: FixedClock,
    blob_dir: Path,
    dovecot: Dovecot,
    mailbox: str,
    **settings_extra: Any,
) -> AsyncIterator[MailHarness]:
    """The runtime `devicecare serve` builds (Slack app behind the web app, IMAP settings for
    the reader), with a fake Slack Web API; cleaned up on exit."""
    fake = FakeSlack()
    await fake.start()
    settings = harness_settings(database_url, blob_dir, fake, dovecot, mailbox, **settings_extra)
    runtime = build_runtime(settings, clock)
    slack_app = build_slack_app(runtime)
    web = create_web_app(runtime, slack_app)
    clients = [slack_app.client]
    extra: dict[str, Any] = {}
    if "worker_client" in {f.name for f in fields(SlackHarness)}:
        extra["worker_client"] = build_web_client(settings)
        clients.append(extra["worker_client"])
    transport = httpx.ASGITransport(app=web)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://devicecare.test") as h:
            yield MailHarness(
                fake=fake,
                runtime=runtime,
                sender=SlackSender(h),
                clock=clock,
                dovecot=dovecot,
                mailbox=mailbox,
                **extra,
            )
            await _settle()
    finally:
        for client in clients:
            session = getattr(client, "session", None)
            if session is not None and not session.closed:
                await session.close()
        await runtime.close()
        await fake.stop()


async def _settle(timeout: float = 3.0) -> None:
    """Let work the Slack app started after its acks finish before the database goes away."""
    current = asyncio.current_task()
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        others = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
        if not others:
            return
        await asyncio.wait(others, timeout=0.05)


@pytest.fixture
async def mail(
    engine: AsyncEngine,
    database_url: str,
    clock: FixedClock,
    tmp_path: Path,
    dovecot: Dovecot,
    mailbox: str,
) -> AsyncIterator[MailHarness]:
    async with open_harness(database_url, clock, tmp_path / "blobs", dovecot, mailbox) as mail:
        yield mail


@pytest.fixture
async def running_reader(mail: MailHarness) -> AsyncIterator[ImapReader]:
    """The reader running in the background (as `devicecare mail` runs it) until the test ends."""
    reader = mail.reader()
    stop = asyncio.Event()
    task = asyncio.create_task(reader.run(stop))
    yield reader
    stop.set()
    await asyncio.wait_for(task, 15)


# --- a billed family, and the emails they send ---------------------------------------------

PARENT = "maria@example.org"  # the guardian tests.builders.add_district makes
REPLY_BASE = "billing@district.org"


@dataclass(frozen=True)
class Billed:
    """An invoice (with its incident) whose notice went out to the guardian."""

    district: District
    incident_id: int
    invoice_id: int
    invoice_number: str
    notice_id: int
    notice_message_id: str
    reply_to: str  # billing+<signed token>@district.org


async def billed_family(
    stores: UnitOfWorkFactory, clock: FixedClock, *, amount_cents: int = 12500, sent: bool = True
) -> Billed:
    """A student's incident invoiced by the workflow, and (unless `sent` is False, when the
    worker is to send it) its notice marked sent."""
    district = await add_district(stores)
    tech = await add_staff(stores, "Admin", "admin.setup@district.org")
    async with stores() as store:
        ctx = Context(store, clock, TZ)
        opened = await open_incident(
            ctx,
            tech,
            OpenIncident(
                device_id=district.device_id,
                occurred_on=date(2026, 2, 20),
                flags=("screen",),
                description="Cracked screen",
            ),
        )
        created = await create_invoice_for_incident(
            ctx,
            tech,
            CreateInvoice(
                incident_id=opened.incident.id, custom_lines=(CustomLine("Screen", amount_cents),)
            ),
        )
        invoice = created.invoice
        notice = (
            (
                await store.session.execute(
                    select(m.Notice).where(m.Notice.invoice_id == invoice.id).order_by(m.Notice.id)
                )
            )
            .scalars()
            .first()
        )
        assert notice is not None, "creating an invoice queues its notice"
        if sent:
            notice.status = "sent"
            notice.sent_at = clock.now()
        token = make_reply_token(invoice.id, notice.id, SECRET)
        await store.commit()
        return Billed(
            district,
            opened.incident.id,
            invoice.id,
            invoice.number,
            notice.id,
            notice.message_id,
            reply_address(REPLY_BASE, token),
        )


def email_bytes(
    *,
    to: str,
    body: str = "Hello, I have a question about the bill.",
    sender: str = f"Maria Rivera <{PARENT}>",
    subject: str = "Re: Your invoice",
    message_id: str | None = None,
    in_reply_to: str | None = None,
    html: str | None = None,
    headers: dict[str, str] | None = None,
    attachments: tuple[tuple[str, str, bytes], ...] = (),
) -> bytes:
    """A reply as a mail client would send it (multipart when there is HTML or a file)."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = "Mon, 02 Mar 2026 09:15:00 -0600"
    msg["Message-ID"] = message_id or make_msgid(domain="mail.example.org")
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    for filename, content_type, data in attachments:
        maintype, subtype = content_type.split("/", 1)
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_bytes()


def photo_bytes(size: tuple[int, int] = (640, 480)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, (200, 40, 40)).save(out, format="JPEG")
    return out.getvalue()
