"""Payments families report by replying to a digest (or naming invoices): the invoice named gets
the payment, a payment over several invoices is split (the invoice named first, then the oldest
due), an amount above what is owed is flagged, "I paid it online" without an amount still gets
an acknowledgement and a way to confirm, and the acknowledgement and receipts are in the
family's language and answer the parent's email.

End to end: the billing run's digests go out through the real sender to aiosmtpd, the parent's
reply is read from Dovecot by the IMAP reader, Slack posts go through the outbox to the fake
Slack Web API, staff click with signed requests. Every case runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid, parseaddr

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.slack.reply_blocks import ReplyAction, ReplyBlock, ReplyView, amount_block
from storage import models as m
from storage.uow import UnitOfWorkFactory
from tests.mail.conftest import BILLING_CHANNEL, MailHarness, email_bytes
from tests.mail.smtp_server import SmtpServer
from tests.mail.test_billing_digest import (
    Billed,
    bill_three_families,
    by_recipient,
    deliver,
    parts,
    run_the_day,
)
from tests.slack.fake_api import Call
from tests.slack.money_helpers import (
    action_ids,
    all_text,
    blocks_of,
    button_value,
    click,
    ephemerals_to,
    eventually,
    submission,
    view_of,
)
from workflows.clock import FixedClock

CLERK = "U_CLERK"
CLERK_2 = "U_CLERK2"
TECH = "U_TECH"
RIVERA = "Parent0 Rivera <rivera0@example.org>"
GARCIA = "Parent0 Garcia <garcia0@example.org>"
CHEN = "Parent0 Chen <chen0@example.org>"


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


@dataclass
class Sent:
    """The billing run's emails, delivered: one per guardian."""

    billed: Billed
    mail: dict[str, EmailMessage]

    def number(self, invoice_id: int) -> str:
        return self.billed.numbers[invoice_id]


@pytest.fixture
async def sent(
    mail: MailHarness,
    engine: AsyncEngine,
    stores: UnitOfWorkFactory,
    clock: FixedClock,
    smtp: SmtpServer,
) -> Sent:
    billed = await bill_three_families(stores)
    await run_the_day(engine, clock)
    await deliver(engine, clock, smtp)
    emails = {address: found[0] for address, found in by_recipient(smtp.messages).items()}
    await mail.staff("Billing Clerk", CLERK)
    return Sent(billed, emails)


def reply(parent: EmailMessage, sender: str, body: str) -> tuple[bytes, str]:
    """The parent's reply to one of our emails, as their mail client writes it."""
    message_id = make_msgid(domain="mail.example.org")
    raw = email_bytes(
        to=parseaddr(str(parent["Reply-To"]))[1],
        sender=sender,
        subject=f"Re: {parent['Subject']}",
        in_reply_to=str(parent["Message-ID"]),
        message_id=message_id,
        body=body,
    )
    return raw, message_id


async def read_mail(mail: MailHarness, *raws: bytes) -> None:
    """Into Dovecot, then the reader (what `devicecare mail` runs)."""
    mail.append(*raws)
    await mail.reader().run_once()


async def the_pending(mail: MailHarness) -> tuple[m.PendingPayment, list[m.PendingPaymentPart]]:
    async with mail.runtime.stores() as store:
        [pending] = (await store.session.execute(select(m.PendingPayment))).scalars().all()
        found = await store.session.execute(
            select(m.PendingPaymentPart).order_by(m.PendingPaymentPart.position)
        )
        await store.commit()
        return pending, list(found.scalars())


async def payments(mail: MailHarness) -> list[m.Payment]:
    async with mail.runtime.stores() as store:
        rows = await store.session.execute(select(m.Payment).order_by(m.Payment.id))
        await store.commit()
        return list(rows.scalars())


async def notices(mail: MailHarness, template: str) -> list[m.Notice]:
    async with mail.runtime.stores() as store:
        rows = await store.session.execute(
            select(m.Notice).where(m.Notice.template == template).order_by(m.Notice.id)
        )
        await store.commit()
        return list(rows.scalars())


def reply_posts(mail: MailHarness) -> list[Call]:
    return [
        c
        for c in mail.fake.calls_to("chat.postMessage")
        if "Reply from" in all_text(blocks_of(c)) or "Reply from" in c.args.get("text", "")
    ]


def latest_card(mail: MailHarness) -> Call:
    """The reply's message as it stands (its post, or the last update of it)."""
    updates = mail.fake.calls_to("chat.update")
    return updates[-1] if updates else reply_posts(mail)[-1]


async def press(mail: MailHarness, user: str, action: str, card: Call) -> None:
    value = button_value(blocks_of(card), action)
    response = await mail.sender.interaction(
        click(user, action, value, channel=BILLING_CHANNEL, message_ts="1700000000.000001")
    )
    assert response.status_code == 200


async def decided(mail: MailHarness) -> bool:
    pending, _ = await the_pending(mail)
    return pending.status != "pending"


def to(smtp: SmtpServer, address: str, template_word: str) -> EmailMessage:
    [found] = [
        msg
        for msg in by_recipient(smtp.messages).get(address, [])
        if template_word in parts(msg)[0]
    ]
    return found


# --- the invoice named -------------------------------------------------------------------------


async def test_a_digest_reply_naming_the_second_invoice_pays_that_invoice(
    mail: MailHarness, engine: AsyncEngine, clock: FixedClock, smtp: SmtpServer, sent: Sent
) -> None:
    first, second = sent.billed.rivera  # $100.00 and $45.50, in one digest
    digest = sent.mail["rivera0@example.org"]
    n2 = sent.number(second)
    raw, reply_id = reply(digest, RIVERA, f"I paid $45.50 by card for {n2} yesterday.")
    await read_mail(mail, raw)

    pending, split = await the_pending(mail)
    assert (pending.invoice_id, pending.amount_cents, pending.method) == (second, 4550, "card")
    assert [(p.invoice_id, p.amount_cents) for p in split] == [(second, 4550), (first, 0)]
    [row] = await mail.inbound()
    assert row.invoice_id == second  # filed under the invoice the parent named

    # IMAP re-fetch: forget how far the reader got; nothing new is made.
    async with mail.runtime.stores() as store:
        await store.session.execute(update(m.MailboxState).values(last_uid=0))
        await store.commit()
    assert await mail.reader().run_once() == 0
    assert len(await mail.inbound()) == 1
    assert len((await the_pending(mail))[1]) == 2
    assert len(await notices(mail, "pending_payment_ack")) == 2  # one per Rivera guardian

    # Staff see the split, with nothing flagged.
    await mail.deliver_outbox()
    [post] = reply_posts(mail)
    text = all_text(blocks_of(post))
    assert f"{n2}: $45.50 of $45.50 owed" in text
    assert f"{sent.number(first)}: $0.00 of $100.00 owed" in text
    assert "Confirm $45.50 (card)" in text and "More than the family owes" not in text
    assert ReplyAction.EDIT_SPLIT in action_ids(blocks_of(post))

    # The family's acknowledgement names the invoice they named, and answers their email.
    await deliver(engine, clock, smtp)
    ack = to(smtp, "rivera0@example.org", "We got your message")
    body, html = parts(ack)
    assert "$45.50 by card" in body and f"toward invoice {n2}" in body
    assert sent.number(first) not in body and sent.number(first) not in html
    assert ack["In-Reply-To"] == reply_id
    assert str(ack["References"]).split() == [str(digest["Message-ID"]), reply_id]
    assert str(ack["Subject"]) == f"Re: {digest['Subject']}"

    # Confirm applies it to the invoice named; a second click (or Slack's retry) adds nothing.
    await press(mail, CLERK, ReplyAction.CONFIRM, post)
    await eventually(lambda: decided(mail), what="the decision")
    await press(mail, CLERK, ReplyAction.CONFIRM, post)
    await mail.fake.wait_for("chat.postEphemeral")
    [payment] = await payments(mail)
    assert (payment.invoice_id, payment.amount_cents) == (second, 4550)
    assert payment.idempotency_key == f"pending-payment:{pending.id}"

    # The receipt answers the parent's email too.
    await deliver(engine, clock, smtp)
    receipt = to(smtp, "rivera0@example.org", "keep this email as your receipt")
    assert receipt["In-Reply-To"] == reply_id
    assert str(receipt["References"]).split() == [str(digest["Message-ID"]), reply_id]


async def test_another_familys_invoice_number_is_ignored(
    mail: MailHarness, engine: AsyncEngine, clock: FixedClock, smtp: SmtpServer, sent: Sent
) -> None:
    first, second = sent.billed.rivera
    chen = sent.number(sent.billed.chen)
    raw, _ = reply(sent.mail["rivera0@example.org"], RIVERA, f"I paid $60 by card for {chen}.")
    await read_mail(mail, raw)
    pending, split = await the_pending(mail)
    [row] = await mail.inbound()
    assert row.invoice_id == first and pending.invoice_id == first
    assert sent.billed.chen not in {p.invoice_id for p in split}
    assert {p.invoice_id for p in split} == {first, second}


# --- the split rule, in Spanish, and staff's own split ------------------------------------


async def test_a_digest_payment_goes_to_the_oldest_due_first_and_staff_can_change_it(
    mail: MailHarness, engine: AsyncEngine, clock: FixedClock, smtp: SmtpServer, sent: Sent
) -> None:
    soon, late = sent.billed.garcia  # $29.00 due Apr 1; $75.00 overdue since Mar 11
    digest = sent.mail["garcia0@example.org"]
    raw, reply_id = reply(digest, GARCIA, "Hola, ya pagué $80 con el cheque #321 ayer.")
    await read_mail(mail, raw)
    pending, split = await the_pending(mail)
    assert [(p.invoice_id, p.amount_cents) for p in split] == [(late, 7500), (soon, 500)]
    assert pending.invoice_id == late

    # The Spanish-speaking family is answered in Spanish, in their thread, naming both shares.
    await deliver(engine, clock, smtp)
    ack = to(smtp, "garcia0@example.org", "Recibimos su mensaje")
    body, _ = parts(ack)
    assert ack["Content-Language"] == "es" and ack["In-Reply-To"] == reply_id
    assert f"{sent.number(late)}: $75.00 (de $75.00 pendientes)" in body
    assert f"{sent.number(soon)}: $5.00 (de $29.00 pendientes)" in body

    await mail.deliver_outbox()
    post = latest_card(mail)
    assert "Confirm $80.00 (check #321)" in all_text(blocks_of(post))

    # Only Record Payments may change it, checked on the server.
    await mail.staff("Technician", TECH)
    await press(mail, TECH, ReplyAction.EDIT_SPLIT, post)
    await mail.fake.wait_for("chat.postEphemeral", lambda c: c.args.get("user") == TECH)
    assert "Record Payments" in ephemerals_to(mail, TECH)[0]

    await press(mail, CLERK, ReplyAction.EDIT_SPLIT, post)
    [opened] = await mail.fake.wait_for("views.open")
    view = view_of(opened)
    assert view["callback_id"] == ReplyView.SPLIT

    def values(total: str, **amounts: str) -> dict:
        found = {ReplyBlock.TOTAL: {ReplyBlock.TOTAL: {"type": "plain_text_input", "value": total}}}
        ids = {"soon": soon, "late": late}
        for name, amount in amounts.items():
            block = amount_block(ids[name])
            found[block] = {block: {"type": "plain_text_input", "value": amount}}
        return found

    async def submit(user: str, state: dict) -> dict:
        response = await mail.sender.interaction(submission(user, view, "V_SPLIT", state))
        return response.json() if response.content else {}

    # Bad input gets a clear message and changes nothing.
    said = await submit(CLERK, values("80", soon="29", late="50"))
    assert said["errors"] == {
        ReplyBlock.TOTAL: "The amounts add up to $79.00, not the $80.00 received. "
        "Change an amount or the total."
    }
    said = await submit(CLERK, values("80", soon="30", late="50"))
    assert said["errors"] == {amount_block(soon): f"$30.00 is more than the $29.00 still owed "
                              f"on {sent.number(soon)}."}  # fmt: skip
    said = await submit(CLERK, values("80", soon="2x9", late="51"))
    assert amount_block(soon) in said["errors"]
    said = await submit(TECH, values("80", soon="29", late="51"))
    assert "Record Payments" in said["errors"][ReplyBlock.TOTAL]
    assert [p.amount_cents for p in (await the_pending(mail))[1]] == [7500, 500]

    # A good split, submitted twice (Slack retried): the same split, once.
    good = values("80", soon="29", late="51")
    assert await submit(CLERK, good) == {"response_action": "clear"}
    assert await submit(CLERK, good) == {"response_action": "clear"}

    async def split_saved() -> bool:  # written after the answer
        return sorted(p.amount_cents for p in (await the_pending(mail))[1]) == [2900, 5100]

    await eventually(split_saved, what="the split")
    _, split = await the_pending(mail)
    assert [(p.invoice_id, p.amount_cents) for p in split] == [(late, 5100), (soon, 2900)]
    await mail.deliver_outbox()
    post = latest_card(mail)
    assert f"{sent.number(soon)}: $29.00 of $29.00 owed" in all_text(blocks_of(post))

    # Confirm: each share is a payment on its invoice, once however often it is clicked.
    await press(mail, CLERK, ReplyAction.CONFIRM, post)
    await eventually(lambda: decided(mail), what="the decision")
    await press(mail, CLERK, ReplyAction.CONFIRM, post)
    await mail.fake.wait_for("chat.postEphemeral", lambda c: c.args.get("user") == CLERK)
    found = await payments(mail)
    assert sorted((p.invoice_id, p.amount_cents, p.idempotency_key) for p in found) == sorted(
        [
            (late, 5100, f"pending-payment:{pending.id}"),
            (soon, 2900, f"pending-payment:{pending.id}:{soon}"),
        ]
    )
    receipts = await notices(mail, "payment_receipt")
    assert len(receipts) == 2
    assert all(n.context["reply_thread"]["message_id"] == reply_id for n in receipts)
    await mail.deliver_outbox()
    assert "Confirmed* by Billing Clerk" in all_text(blocks_of(latest_card(mail)))


# --- more than is owed ------------------------------------------------------------------------


async def test_a_payment_above_what_is_owed_is_flagged_with_the_choices_staff_have(
    mail: MailHarness, engine: AsyncEngine, clock: FixedClock, smtp: SmtpServer, sent: Sent
) -> None:
    first, second = sent.billed.rivera
    raw, _ = reply(sent.mail["rivera0@example.org"], RIVERA, "I paid $200 in cash at the office.")
    await read_mail(mail, raw)
    await mail.deliver_outbox()
    [post] = reply_posts(mail)
    text = all_text(blocks_of(post))
    assert "More than the family owes" in text
    assert "they reported $200.00, $54.50 more than the $145.50 owed on these invoices" in text
    assert "Confirm $145.50 owed" in text and "Confirm $200.00" not in text
    assert action_ids(blocks_of(post)) == [
        ReplyAction.CONFIRM,
        ReplyAction.EDIT_SPLIT,
        ReplyAction.REJECT,
    ]

    await deliver(engine, clock, smtp)
    body, _ = parts(to(smtp, "rivera0@example.org", "We got your message"))
    assert "That is $54.50 more than the $145.50 owed" in body

    # Confirming records what is owed, never more; nothing is refused. Two clerks clicking at
    # once record it once.
    await mail.staff("Finance Director", CLERK_2)
    await asyncio.gather(
        press(mail, CLERK, ReplyAction.CONFIRM, post),
        press(mail, CLERK_2, ReplyAction.CONFIRM, post),
    )
    await eventually(lambda: decided(mail), what="the decision")
    await mail.fake.wait_for("chat.postEphemeral")  # the second is told who decided
    found = await payments(mail)
    assert sorted((p.invoice_id, p.amount_cents) for p in found) == [(first, 10000), (second, 4550)]


# --- "I paid it online", no amount --------------------------------------------------------------


async def test_paid_online_without_an_amount_on_one_invoice(
    mail: MailHarness, engine: AsyncEngine, clock: FixedClock, smtp: SmtpServer, sent: Sent
) -> None:
    chen = sent.billed.chen  # $60.00, the reminder on its own
    notice = sent.mail["chen0@example.org"]
    raw, reply_id = reply(notice, CHEN, "I paid it online.")
    await read_mail(mail, raw)
    pending, split = await the_pending(mail)
    assert (pending.amount_given, pending.method, pending.status) == (False, "online", "pending")
    assert [(p.invoice_id, p.amount_cents) for p in split] == [(chen, 0)]

    await deliver(engine, clock, smtp)
    ack = to(smtp, "chen0@example.org", "We got your message")
    body, _ = parts(ack)
    assert "You didn't say how much you paid" in body and ack["In-Reply-To"] == reply_id
    assert str(ack["Subject"]) == f"Re: {notice['Subject']}"

    await mail.deliver_outbox()
    [post] = reply_posts(mail)
    text = all_text(blocks_of(post))
    assert "amount not given" in text and "Confirm full balance $60.00" in text
    assert action_ids(blocks_of(post)) == [
        ReplyAction.CONFIRM_BALANCE,
        ReplyAction.EDIT_SPLIT,
        ReplyAction.REJECT,
    ]
    await press(mail, CLERK, ReplyAction.CONFIRM_BALANCE, post)
    await eventually(lambda: decided(mail), what="the decision")
    await press(mail, CLERK, ReplyAction.CONFIRM_BALANCE, post)  # a second click
    await mail.fake.wait_for("chat.postEphemeral", lambda c: c.args.get("user") == CLERK)
    [payment] = await payments(mail)
    assert (payment.invoice_id, payment.amount_cents, payment.method) == (chen, 6000, "online")


async def test_paid_online_without_an_amount_on_a_digest_asks_staff_for_it(
    mail: MailHarness, engine: AsyncEngine, clock: FixedClock, smtp: SmtpServer, sent: Sent
) -> None:
    first, second = sent.billed.rivera
    raw, _ = reply(sent.mail["rivera0@example.org"], RIVERA, "I already paid these online.")
    await read_mail(mail, raw)
    await mail.deliver_outbox()
    [post] = reply_posts(mail)
    assert action_ids(blocks_of(post)) == [ReplyAction.EDIT_SPLIT, ReplyAction.REJECT]
    assert "Enter amount" in all_text(blocks_of(post))
    assert len(await notices(mail, "pending_payment_ack")) == 2  # the family still hears

    # Confirm can't be forced before an amount is entered.
    await press(mail, CLERK, ReplyAction.EDIT_SPLIT, post)
    [opened] = await mail.fake.wait_for("views.open")
    view = view_of(opened)
    state = {
        ReplyBlock.TOTAL: {ReplyBlock.TOTAL: {"type": "plain_text_input", "value": "145.50"}},
        amount_block(first): {amount_block(first): {"type": "plain_text_input", "value": "100"}},
        amount_block(second): {
            amount_block(second): {"type": "plain_text_input", "value": "45.50"}
        },
    }
    response = await mail.sender.interaction(submission(CLERK, view, "V_SPLIT", state))
    assert response.json() == {"response_action": "clear"}

    async def split_saved() -> bool:  # written after the answer
        return bool((await the_pending(mail))[0].amount_given)

    await eventually(split_saved, what="the split")
    await mail.deliver_outbox()
    card = latest_card(mail)
    assert "Confirm $145.50 (online payment)" in all_text(blocks_of(card))
    await press(mail, CLERK, ReplyAction.CONFIRM, card)
    await eventually(lambda: decided(mail), what="the decision")
    found = await payments(mail)
    assert sorted((p.invoice_id, p.amount_cents) for p in found) == [(first, 10000), (second, 4550)]
