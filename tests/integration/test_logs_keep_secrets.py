"""No log line carries a secret or a token: `devicecare serve` with every part on (PostgreSQL
behind a password, SMTP with a login, IMAP, Slack, Stripe) logs at DEBUG through a whole flow,
and its output is searched for every secret it was given and every token it handed out.

The flow: an invoice notice goes out by SMTP; the family opens the link it carries; the
parent's reply, addressed with its reply token, lands in the IMAP mailbox and is threaded in
Slack; a billing clerk clicks the signed Confirm button; a Stripe webhook records a payment.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from email.utils import parseaddr
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from bot.mail.tokens import token_from_address
from bot.slack.reply_blocks import ReplyAction, ReplyPostKind
from storage import models as m
from storage.db import create_engine, session_factory
from storage.migrate import upgrade
from storage.uow import UnitOfWorkFactory
from tests.builders import add_staff
from tests.conftest import NOW, PG_URL, _admin, _pg_unavailable_reason
from tests.mail.conftest import PARENT, billed_family, dovecot, email_bytes  # noqa: F401
from tests.mail.dovecot import Dovecot
from tests.mail.smtp_server import SmtpServer
from tests.slack.fake_api import BOT_TOKEN, FakeSlack
from tests.slack.money_helpers import blocks_of, button_value, click
from tests.slack.signing import SlackSender
from tests.stripe_fake import make_event, session_object, signed_body
from workflows.clock import FixedClock

pytestmark = pytest.mark.postgres

SECRET_KEY = "log-scan-secret-key-7Gq2xW9pLm4Rt8Zv1Kb6"
PREVIOUS_KEY = "log-scan-previous-key-3Hs5Nd0Fj2Yc7Ue9Qa4"
SIGNING_SECRET = "log-scan-slack-signing-secret-5Tb8"
STRIPE_KEY = "sk_test_logscanStripeKey0123456789"
WEBHOOK_SECRET = "whsec_logscanWebhookSecret0123456789"
SMTP_USER, SMTP_PASSWORD = "billing-relay", "log-scan-smtp-password-8Kd3"
DB_PASSWORD = "log-scan-db-password-2Wm7"
BILLING = "C_BILLING"
FROM = "Lincoln Schools Billing <billing@district.org>"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


@pytest.fixture
def database_url() -> Iterator[str]:
    """A database of its own on the test server, reached with a password in the URL (the
    server trusts local connections, so any password works, and must never be logged)."""
    reason = _pg_unavailable_reason()
    if reason:
        pytest.skip(reason)
    name = f"devicecare_logs_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_URL).set(database=name, password=DB_PASSWORD)
    rendered = url.render_as_string(hide_password=False)
    upgrade(rendered)
    yield rendered
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def service_env(database_url: str, imap: Dovecot, mailbox: str, smtp: SmtpServer,
                slack: FakeSlack, port: int) -> dict[str, str]:  # fmt: skip
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "SMTP_", "IMAP_", "STRIPE_", "DATABASE_URL", "SECRET_"))
    }
    return env | {
        "DATABASE_URL": database_url,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "LOG_LEVEL": "DEBUG",
        "SECRET_KEY": SECRET_KEY,
        "SECRET_KEY_PREVIOUS": PREVIOUS_KEY,
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.base_url,
        "SLACK_BILLING_CHANNEL": BILLING,
        "SLACK_INCIDENTS_CHANNEL": "C_INCIDENTS",
        "SLACK_APPROVALS_CHANNEL": "C_APPROVALS",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp.port),
        "SMTP_SECURITY": "none",
        "SMTP_USERNAME": SMTP_USER,
        "SMTP_PASSWORD": SMTP_PASSWORD,
        "SMTP_FROM": FROM,
        "IMAP_HOST": imap.host,
        "IMAP_PORT": str(imap.imap_port),
        "IMAP_USERNAME": imap.user,
        "IMAP_PASSWORD": imap.password,
        "IMAP_SECURITY": "none",
        "IMAP_MAILBOX": mailbox,
        "IMAP_POLL_SECONDS": "1",
        "STRIPE_SECRET_KEY": STRIPE_KEY,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }


async def test_a_whole_flow_logged_at_debug_holds_no_secret_or_token(
    database_url: str,
    dovecot: Dovecot,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    mailbox = dovecot.new_mailbox()
    slack = FakeSlack()
    await slack.start()
    smtp = SmtpServer(logins={SMTP_USER: SMTP_PASSWORD}).start()
    port = _free_port()
    log_path = tmp_path / "service.log"
    engine = create_engine(database_url)
    clock = FixedClock(NOW)  # when the test's rows were written; the service keeps real time
    stores = UnitOfWorkFactory(session_factory(engine), clock)
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "serve"],
            cwd=tmp_path,
            env=service_env(database_url, dovecot, mailbox, smtp, slack, port),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    handed_out: list[str] = []
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:

            async def up() -> bool:
                assert proc.poll() is None, log_path.read_text()
                try:
                    return (await http.get("/healthz")).status_code == 200
                except httpx.HTTPError:
                    return False

            await eventually(up, "the service")
            billed = await billed_family(stores, clock, sent=False)
            clerk = await add_staff(stores, "Billing Clerk", "clerk@district.org")
            async with stores() as store:
                staff = await store.session.get(m.Staff, clerk.staff_id)
                assert staff is not None
                staff.slack_user_id = "U_CLERK"
                await store.commit()
            slack.add_user("U_CLERK", "clerk@district.org", clerk.name)

            # 1. The notice goes out by SMTP (logged in), with a reply token and a family link.
            await eventually(lambda: _done(len(smtp.messages) >= 1), "the invoice notice")
            notice = smtp.messages[0].message
            reply_to = parseaddr(str(notice["Reply-To"]))[1]
            reply_token = token_from_address(reply_to)
            assert reply_token is not None
            body = notice.get_body(("plain",))
            assert body is not None
            [family_token] = set(re.findall(r"/family/([A-Za-z0-9._-]+)", body.get_content()))
            handed_out += [reply_token, family_token]

            # 2. The family opens the page with its link.
            page = await http.get(f"/family/{family_token}")
            assert page.status_code == 200 and billed.invoice_number in page.text

            # 3. The parent's reply lands in the mailbox and is threaded in Slack.
            reply = email_bytes(
                to=reply_to,
                subject=f"Re: {notice['Subject']}",
                in_reply_to=str(notice["Message-ID"]),
                body="I mailed check #1043 for $50 on Monday.",
            )
            await asyncio.to_thread(dovecot.append, mailbox, reply)

            def billing_posts() -> list:  # type: ignore[type-arg]
                # The reply's card (the scheduler posts its billing run there too).
                return [
                    c
                    for c in slack.calls_to("chat.postMessage")
                    if c.args["channel"] == BILLING and ReplyAction.CONFIRM in str(c.args)
                ]

            async def threaded() -> bool:
                async with stores() as store:
                    post = await store.slack_posts.get(
                        ReplyPostKind.INVOICE_THREAD, billed.invoice_id
                    )
                    await store.commit()
                return post is not None and bool(billing_posts())

            await eventually(threaded, "the reply in the invoice's Slack thread")
            async with stores() as store:
                thread = await store.slack_posts.get(
                    ReplyPostKind.INVOICE_THREAD, billed.invoice_id
                )
                await store.commit()
            assert thread is not None

            # 4. A billing clerk confirms the reported payment with the signed button.
            value = button_value(blocks_of(billing_posts()[0]), ReplyAction.CONFIRM)
            sender = SlackSender(http, SIGNING_SECRET)
            answer = await sender.interaction(
                click("U_CLERK", ReplyAction.CONFIRM, value, channel=BILLING, message_ts=thread.ts)
            )
            assert answer.status_code == 200

            # 5. Stripe reports an online payment.
            event = make_event(
                "checkout.session.completed",
                session_object(amount_cents=2_500, metadata={"invoice_id": str(billed.invoice_id)}),
            )
            content, headers = signed_body(event, WEBHOOK_SECRET, timestamp=int(time.time()))
            assert (
                await http.post("/webhooks/stripe", content=content, headers=headers)
            ).status_code == 200

            async def both_payments() -> bool:
                async with stores() as store:
                    rows = (await store.session.execute(select(m.Payment))).scalars().all()
                    await store.commit()
                return {p.amount_cents for p in rows} == {5_000, 2_500}

            await eventually(both_payments, "the confirmed and the online payment")
            # Every notice (acknowledgement, receipts) carries tokens of its own.
            await eventually(lambda: _done(len(smtp.messages) >= 3), "the follow-up emails")
            for received in smtp.messages:
                handed_out += re.findall(r"\+([A-Za-z0-9._-]+)@", str(received.message["Reply-To"]))
                text = received.data.decode(errors="replace")
                handed_out += re.findall(r"/family/([A-Za-z0-9._-]{30,})", text)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, 60)
        finally:
            if proc.poll() is None:
                proc.kill()  # never left running after the test, whatever failed
        smtp.stop()
        await slack.stop()
        await engine.dispose()

    logged = log_path.read_text()
    # The flow did reach the logs: requests, SQL, Slack, mail and Stripe lines at DEBUG.
    for evidence in ("/family/", "/slack/events", "/webhooks/stripe", "DEBUG"):
        assert evidence in logged, evidence
    secrets = {
        "SECRET_KEY": SECRET_KEY,
        "SECRET_KEY_PREVIOUS": PREVIOUS_KEY,
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "STRIPE_SECRET_KEY": STRIPE_KEY,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "SMTP_PASSWORD": SMTP_PASSWORD,
        "IMAP_PASSWORD": dovecot.password,
        "database password": DB_PASSWORD,
    }
    secrets |= {f"token {token}": token for token in set(handed_out)}
    leaked = [name for name, value in secrets.items() if value in logged]
    assert leaked == [], f"found in the log: {leaked}"
    # A token's signature alone is what opens a page or routes a reply: it is not there either.
    signatures = {token.rsplit(".", 1)[1] for token in handed_out}
    assert [s for s in signatures if s in logged] == []
    assert proc.returncode == 0, logged[-3000:]


async def _done(value: bool) -> bool:
    return value
