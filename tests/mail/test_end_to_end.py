"""The whole loop with real servers: an invoice notice goes out through the worker to an SMTP
server (aiosmtpd), the parent's reply lands in the IMAP mailbox (Dovecot), the reader picks it
up, it appears in the invoice's thread in Slack, a billing clerk confirms the payment they
reported with a signed click through the real app, and the receipt reaches the SMTP server.

Runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.jobs.worker import OutboxWorker
from bot.mail.reader import KEYWORD
from bot.mail.sender import notice_handlers
from bot.mail.tokens import token_from_address, verify_reply_token
from bot.slack.app import slack_outbox_handlers
from bot.slack.client import build_web_client
from bot.slack.reply_blocks import ReplyAction, ReplyPostKind
from storage import models as m
from tests.mail.conftest import (
    PARENT,
    SECRET,
    MailHarness,
    billed_family,
    email_bytes,
    eventually,
    open_harness,
)
from tests.mail.dovecot import Dovecot
from tests.mail.smtp_server import Received, SmtpServer
from tests.slack.conftest import BILLING_CHANNEL
from tests.slack.money_helpers import all_text, blocks_of, button_value, click
from workflows.clock import FixedClock

FROM = "Lincoln Schools Billing <billing@district.org>"


@dataclass
class Loop:
    mail: MailHarness
    smtp: SmtpServer
    workers: list[OutboxWorker]

    async def drain(self) -> int:
        total = 0
        while handled := sum([await worker.run_once() for worker in self.workers]):
            total += handled
        return total

    async def wait_for_email(self, count: int) -> list[Received]:
        async def arrived() -> bool:
            await self.drain()
            return len(self.smtp.messages) >= count

        await eventually(arrived, what=f"{count} emails at the SMTP server")
        return self.smtp.messages


@pytest.fixture
async def loop(
    engine: AsyncEngine,
    database_url: str,
    clock: FixedClock,
    tmp_path: Path,
    dovecot: Dovecot,
    mailbox: str,
) -> AsyncIterator[Loop]:
    smtp = SmtpServer().start()
    try:
        async with open_harness(
            database_url,
            clock,
            tmp_path / "blobs",
            dovecot,
            mailbox,
            smtp_host="127.0.0.1",
            smtp_port=smtp.port,
            smtp_security="none",
            smtp_from=FROM,
            smtp_timeout=5.0,
        ) as mail:
            settings = mail.runtime.settings
            email = notice_handlers(settings, clock)
            slack = slack_outbox_handlers(mail.runtime, build_web_client(settings))
            # Two workers, one per channel. One worker with both kinds deadlocks on SQLite
            # today: the email handler's batch transaction holds the write lock while a Slack
            # handler in the same batch opens its own transaction (reported, bot/jobs/worker.py).
            workers = [
                OutboxWorker(mail.runtime.stores, clock, email),
                OutboxWorker(mail.runtime.stores, clock, slack),
            ]
            try:
                yield Loop(mail, smtp, workers)
            finally:
                for worker in workers:
                    await worker.close()
    finally:
        smtp.stop()


async def test_notice_reply_confirm_receipt(loop: Loop) -> None:
    mail = loop.mail
    billed = await billed_family(mail.runtime.stores, mail.clock, sent=False)
    clerk = await mail.staff("Billing Clerk", "U_CLERK")

    # 1. The invoice notice goes out through the real worker.
    [notice_mail] = await loop.wait_for_email(1)
    sent = notice_mail.message
    assert notice_mail.rcpt_tos == [PARENT]
    assert str(sent["Message-ID"]) == billed.notice_message_id
    reply_to = parseaddr(str(sent["Reply-To"]))[1]
    token = token_from_address(reply_to)
    assert token is not None and verify_reply_token(token, SECRET) is not None

    # 2. The parent answers from their mail client; the reply lands in the mailbox.
    reader = mail.reader()
    stop = asyncio.Event()
    reading = asyncio.create_task(reader.run(stop))
    try:
        await eventually(lambda: _true(reader.stats.sessions >= 1), what="the reader")
        reply = email_bytes(
            to=reply_to,
            subject=f"Re: {sent['Subject']}",
            in_reply_to=str(sent["Message-ID"]),
            body=(
                "I mailed check #1043 for $50 on Monday.\n\n"
                "On Mon, Mar 2, 2026 at 9:00 AM Lincoln Schools Billing "
                "<billing@district.org> wrote:\n> Your invoice is ready.\n"
            ),
        )
        await asyncio.to_thread(mail.append, reply)

        # 3. The reader picks it up (IDLE), routed by its token, once.
        [row] = await mail.wait_for_inbound(1)
    finally:
        stop.set()
        await asyncio.wait_for(reading, 15)
    assert (row.route, row.status, row.invoice_id) == ("token", "routed", billed.invoice_id)
    assert row.body_text == "I mailed check #1043 for $50 on Monday."
    assert mail.dovecot.flags(mail.mailbox)[1] >= {"\\Seen", KEYWORD}

    # 4. It appears in the invoice's thread; the family is told their report is waiting.
    messages = await loop.wait_for_email(2)
    ack = messages[1]
    assert ack.rcpt_tos == [PARENT]
    async with mail.runtime.stores() as store:
        thread = await store.slack_posts.get(ReplyPostKind.INVOICE_THREAD, billed.invoice_id)
        templates = [
            n.template
            for n in (await store.session.execute(select(m.Notice).order_by(m.Notice.id)))
            .scalars()
            .all()
        ]
        await store.commit()
    assert templates == ["invoice_issued", "pending_payment_ack"]
    assert thread is not None and thread.channel == BILLING_CHANNEL
    [post] = [
        c for c in mail.fake.calls_to("chat.postMessage") if c.args["channel"] == BILLING_CHANNEL
    ]
    assert "Confirm $50.00 (check #1043)" in all_text(blocks_of(post))

    # 5. A billing clerk confirms, with a request signed like Slack's, through the real app.
    value = button_value(blocks_of(post), ReplyAction.CONFIRM)
    response = await mail.sender.interaction(
        click("U_CLERK", ReplyAction.CONFIRM, value, channel=BILLING_CHANNEL, message_ts=thread.ts)
    )
    assert response.status_code == 200

    async def recorded() -> bool:
        async with mail.runtime.stores() as store:
            result = bool((await store.session.execute(select(m.Payment))).first())
            await store.commit()
            return result

    await eventually(recorded, what="the payment")

    # 6. The receipt reaches the SMTP server; the Slack message shows who confirmed.
    messages = await loop.wait_for_email(3)
    receipt = messages[2]
    assert receipt.rcpt_tos == [PARENT]
    async with mail.runtime.stores() as store:
        [payment] = (await store.session.execute(select(m.Payment))).scalars().all()
        invoice = await store.invoices.get(billed.invoice_id)
        receipt_notice = (
            await store.session.execute(
                select(m.Notice).where(m.Notice.template == "payment_receipt")
            )
        ).scalar_one()
        await store.commit()
    assert (payment.amount_cents, payment.reference, payment.recorded_by_id) == (
        5000,
        "1043",
        clerk.staff_id,
    )
    assert invoice is not None and invoice.paid_cents == 5000
    assert str(receipt.message["Message-ID"]) == receipt_notice.message_id
    assert receipt_notice.status == "sent"
    [update] = mail.fake.calls_to("chat.update")
    assert "Confirmed* by Billing Clerk Person" in all_text(blocks_of(update))


async def _true(value: bool) -> bool:
    return value
