"""The family page link in every email, a fresh link on request, and what the invoice card says.

Notices go through the real outbox worker to a real SMTP server (aiosmtpd); the links in what
arrives are read back with `read_family_token`. Replies asking for a new link go through the
ingest pipeline with the real Slack app's outbox handlers. Every case that touches the store
runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.family_links import FamilyLink, read_family_token
from bot.mail.ingest import Ingestor
from bot.mail.render import FamilyLinks, NoticeRenderer, build_context
from bot.mail.tokens import token_from_address
from storage import models as m
from storage.db import session_factory
from storage.notice_queries import (
    NoticeDelivery,
    delivery_summary,
    invoice_delivery_line,
    load_notice,
)
from storage.notices import queue_guardian_notice, thread_headers
from storage.uow import UnitOfWorkFactory
from tests.builders import add_staff
from tests.mail.conftest import PARENT, REPLY_BASE, Billed, MailHarness, billed_family, email_bytes
from tests.mail.smtp_server import Received, SmtpServer
from tests.mail.test_billing_digest import _every_kind as digest_of_every_kind
from tests.mail.test_sender import drain, issue_invoice, mail_settings, make_worker
from tests.slack.conftest import BILLING_CHANNEL, SlackHarness
from workflows.clock import FixedClock
from workflows.invoices import NoticeTemplate
from workflows.payments import PaymentMethod, RecordPayment, record_payment
from workflows.ports import Context

TZ = ZoneInfo("America/Chicago")
SECRET = "test-secret-key"  # mail_settings signs with it
BASE = "https://devicecare.lincoln.example"
TODAY = date(2026, 3, 2)  # the conftest clock, in Chicago
PORTAL = "https://pay.lincoln.example/item?invoice={invoice_number}&amount={amount}"
LINK_RE = re.compile(re.escape(BASE) + r"/family/([A-Za-z0-9._-]+)")


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


def parts(received: Received) -> tuple[str, str]:
    msg = received.message
    text, html = msg.get_body(("plain",)), msg.get_body(("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


def links_in(body: str) -> list[FamilyLink]:
    found = [read_family_token(token, SECRET, TODAY) for token in LINK_RE.findall(body)]
    assert found, "the email links to the family page"
    return found


async def set_language(stores: UnitOfWorkFactory, guardian_id: int, language: str) -> None:
    async with stores() as store:
        guardian = await store.session.get(m.Guardian, guardian_id)
        assert guardian is not None
        guardian.preferred_language = language
        await store.commit()


async def only_notice(engine: AsyncEngine, **where: object) -> m.Notice:
    async with session_factory(engine)() as session:
        stmt = select(m.Notice).filter_by(**where).order_by(m.Notice.id)
        [notice] = (await session.execute(stmt)).scalars()
        return notice


# --- the link in every email ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "button", "portal_label"),
    [
        ("en", "See your invoice and pay online", "Pay at RevTrak"),
        ("es", "Vea su factura y pague en línea", "Pague en RevTrak"),
    ],
)
async def test_an_invoice_email_links_to_the_family_page_and_the_portal(
    engine: AsyncEngine,
    stores: UnitOfWorkFactory,
    clock: FixedClock,
    smtp: SmtpServer,
    language: str,
    button: str,
    portal_label: str,
) -> None:
    issued = await issue_invoice(stores, clock)
    await set_language(stores, issued.district.guardian_id, language)
    settings = mail_settings(
        smtp.port,
        public_base_url=BASE,
        payment_portal_url_template=PORTAL,
        payment_portal_name="RevTrak",
        family_link_days=30,
    )
    assert await drain(make_worker(engine, clock, settings)) == 1

    notice = await only_notice(engine, invoice_id=issued.invoice_id)
    [received] = smtp.messages
    text, html = parts(received)
    expected = FamilyLink(issued.district.guardian_id, notice.id, TODAY + timedelta(days=30))
    for body in (text, html):
        assert set(links_in(body)) == {expected}
        assert "https://pay.lincoln.example/item?invoice=INV-000001&amount=29.00" in body.replace(
            "&amp;", "&"
        )
    # The button comes before the invoice itself, and again under how to pay.
    shown = html[html.index("<body") :]
    assert shown.index(button) < shown.index("INV-000001")
    assert text.index(button) < text.index("INV-000001")
    assert len(LINK_RE.findall(html)) == 2 and len(LINK_RE.findall(text)) == 2
    assert f"{button}:" in text and portal_label in text and portal_label in html
    # The token can't be turned into another family's link.
    token = LINK_RE.findall(text)[0]
    altered = token.replace(f"g{issued.district.guardian_id}n", "g999n", 1)
    with pytest.raises(Exception, match="invalid"):
        read_family_token(altered, SECRET, TODAY)


async def test_without_a_portal_or_stripe_the_link_only_shows_the_invoice(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock, smtp: SmtpServer
) -> None:
    await issue_invoice(stores, clock)
    settings = mail_settings(smtp.port, public_base_url=BASE)
    assert await drain(make_worker(engine, clock, settings)) == 1
    text, html = parts(smtp.messages[0])
    assert "See your invoice online:" in text and "pay online" not in text
    assert "Pay at" not in text + html
    # Online payment is off, so "Online" isn't offered as a way to pay: the link shows once.
    assert "- Online:" not in text and "<strong>Online:</strong>" not in html
    [link] = links_in(text)
    assert link.expires_on == TODAY + timedelta(days=45)  # FAMILY_LINK_DAYS by default


async def test_a_receipt_links_to_the_page_but_not_to_the_portal_once_paid(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock, smtp: SmtpServer
) -> None:
    issued = await issue_invoice(stores, clock)
    clerk = await add_staff(stores, "Billing Clerk")
    async with stores() as store:
        await record_payment(
            Context(store, clock, TZ),
            clerk,
            RecordPayment(
                invoice_id=issued.invoice_id,
                amount_cents=2900,
                method=PaymentMethod.CHECK,
                reference="1043",
                idempotency_key="pay-all",
            ),
        )
        await store.commit()
    settings = mail_settings(smtp.port, public_base_url=BASE, payment_portal_url_template=PORTAL)
    assert await drain(make_worker(engine, clock, settings)) == 2
    receipt = next(r for r in smtp.messages if str(r.message["Subject"]).startswith("Receipt"))
    text, html = parts(receipt)
    notice = await only_notice(engine, template="payment_receipt")
    assert {link.notice_id for link in links_in(text) + links_in(html)} == {notice.id}
    assert "See your invoice online" in text  # nothing left to pay
    assert "pay.lincoln.example" not in text + html


async def test_an_email_renders_without_a_link_when_there_is_none(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    issued = await issue_invoice(stores, clock)
    notice = await only_notice(engine, invoice_id=issued.invoice_id)
    async with session_factory(engine)() as session:
        data = await load_notice(session, notice.id)
    assert data is not None
    for language in ("en", "es"):
        out = NoticeRenderer().render(
            "invoice_issued", build_context(data, today=TODAY, tz=TZ), language
        )
        for body in (out.text, out.html):
            assert "/family/" not in body and "None" not in body
        assert "How to pay" in out.text or "Cómo pagar" in out.text


# --- a family_link notice -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "subject", "until"),
    [
        ("en", "Your new link to your invoices", "April 16, 2026"),
        ("es", "Su nuevo enlace a sus facturas", "16 de abril de 2026"),
    ],
)
async def test_a_family_link_notice_without_an_invoice_is_sent(
    engine: AsyncEngine,
    stores: UnitOfWorkFactory,
    clock: FixedClock,
    smtp: SmtpServer,
    language: str,
    subject: str,
    until: str,
) -> None:
    issued = await issue_invoice(stores, clock)
    await set_language(stores, issued.district.guardian_id, language)
    async with stores() as store:
        guardian = await store.session.get(m.Guardian, issued.district.guardian_id)
        assert guardian is not None
        queued = await queue_guardian_notice(
            store.session,
            clock.now(),
            guardian=guardian,
            template=NoticeTemplate.FAMILY_LINK,
            dedupe_key="family-link:test",
            context={},
            mail_domain=store.mail_domain,
        )
        assert queued is not None and queued.invoice_id is None
        link_notice_id = queued.id
        await store.commit()
    settings = mail_settings(smtp.port, public_base_url=BASE)
    assert await drain(make_worker(engine, clock, settings)) == 2

    received = next(r for r in smtp.messages if r.message["Subject"] == subject)
    text, html = parts(received)
    expected = FamilyLink(issued.district.guardian_id, link_notice_id, TODAY + timedelta(days=45))
    for body in (text, html):
        assert set(links_in(body)) == {expected}
        assert until in body
        assert "INV-" not in body  # about no invoice in particular
    # No invoice for a reply token to name: replies reach the billing office unrouted.
    reply_to = received.message["Reply-To"].addresses[0].addr_spec
    assert reply_to == "billing@district.org" and token_from_address(reply_to) is None
    notice = await only_notice(engine, id=link_notice_id)
    assert (notice.status, notice.sent_at) == ("sent", clock.now())


# --- asking for a new link by reply ---------------------------------------------------------


@pytest.fixture
async def billed(slack: SlackHarness) -> Billed:
    return await billed_family(slack.runtime.stores, slack.clock)


async def family_link_notices(slack: SlackHarness) -> list[m.Notice]:
    async with slack.runtime.stores() as store:
        stmt = select(m.Notice).where(m.Notice.template == NoticeTemplate.FAMILY_LINK)
        result = list((await store.session.execute(stmt.order_by(m.Notice.id))).scalars())
        await store.commit()
        return result


def billing_text(slack: SlackHarness) -> str:
    posts = [
        c for c in slack.fake.calls_to("chat.postMessage") if c.args["channel"] == BILLING_CHANNEL
    ]
    return "\n".join(str(c.args.get("text", "")) + str(c.args.get("blocks", "")) for c in posts)


@pytest.mark.parametrize(
    "body",
    ["The link expired, can you send me a new one?", "El enlace no funciona. ¿Me mandan otro?"],
)
async def test_a_guardian_asking_for_a_new_link_gets_one_once(
    slack: SlackHarness, billed: Billed, body: str
) -> None:
    parent_id = "<asks-for-link@mail.example.org>"
    raw = email_bytes(
        to=billed.reply_to, body=body, message_id=parent_id, in_reply_to="<notice-1@district.org>"
    )
    first = await Ingestor.from_runtime(slack.runtime).ingest(raw)
    assert (first.status, first.invoice_id) == ("routed", billed.invoice_id)

    [notice] = await family_link_notices(slack)
    assert (notice.guardian_id, notice.invoice_id) == (billed.district.guardian_id, None)
    # The link answers the parent's email: it is sent in their thread.
    assert thread_headers(notice.context) == (
        parent_id,
        f"<notice-1@district.org> {parent_id}",
        "Re: Your invoice",
    )
    assert (notice.to_address, notice.status) == (PARENT, "queued")
    async with slack.runtime.stores() as store:
        row = await store.session.get(m.InboundMessage, first.inbound_id)
        assert row is not None and row.intent == "new_link"
        outbox = (
            await store.session.execute(
                select(m.OutboxMessage).where(m.OutboxMessage.dedupe_key == f"notice:{notice.id}")
            )
        ).scalar_one()
        assert outbox.kind == "email.notice"
        await store.commit()

    # The same email read again (a re-fetch after a lost connection): nothing more is sent.
    again = await Ingestor.from_runtime(slack.runtime).ingest(raw)
    assert again.duplicate
    assert len(await family_link_notices(slack)) == 1

    await slack.deliver_outbox()
    shown = billing_text(slack)
    assert "Asks for a new link" in shown
    assert "A new link to the family page was emailed to Maria Rivera." in shown


async def test_a_new_link_request_read_from_the_mailbox_twice_sends_one_link(
    mail: MailHarness,
) -> None:
    billed = await billed_family(mail.runtime.stores, mail.clock)
    mail.append(email_bytes(to=billed.reply_to, body="Nuevo enlace por favor, el otro venció."))
    reader = mail.reader()
    assert await reader.run_once() == 1
    assert len(await family_link_notices(mail)) == 1

    # Forget how far the reader got: it fetches the message again.
    async with mail.runtime.stores() as store:
        await store.session.execute(update(m.MailboxState).values(last_uid=0))
        await store.commit()
    assert await reader.run_once() == 0
    assert reader.stats.duplicates == 1
    [notice] = await family_link_notices(mail)
    assert (notice.guardian_id, notice.invoice_id) == (billed.district.guardian_id, None)


async def test_a_new_link_is_sent_again_for_a_new_request(
    slack: SlackHarness, billed: Billed
) -> None:
    ingestor = Ingestor.from_runtime(slack.runtime)
    for _ in range(2):
        await ingestor.ingest(email_bytes(to=billed.reply_to, body="Please send a new link."))
    assert len(await family_link_notices(slack)) == 2


async def test_an_unverified_sender_gets_no_link(slack: SlackHarness, billed: Billed) -> None:
    raw = email_bytes(
        to=billed.reply_to,
        sender="Someone <stranger@elsewhere.example>",
        body="Send me a new link please.",
    )
    result = await Ingestor.from_runtime(slack.runtime).ingest(raw)
    assert result.status == "flagged"
    assert await family_link_notices(slack) == []
    await slack.deliver_outbox()
    assert "none was sent: the sender isn't verified" in billing_text(slack)


async def test_an_email_about_no_invoice_gets_no_link(slack: SlackHarness, billed: Billed) -> None:
    raw = email_bytes(to=REPLY_BASE, subject="Hello", body="My link expired, send a new link.")
    result = await Ingestor.from_runtime(slack.runtime).ingest(raw)
    assert result.status == "held"
    assert await family_link_notices(slack) == []
    await slack.deliver_outbox()
    assert "the email names no invoice to check the sender by" in billing_text(slack)


async def test_other_replies_send_no_link(slack: SlackHarness, billed: Billed) -> None:
    ingestor = Ingestor.from_runtime(slack.runtime)
    payment = await ingestor.ingest(
        email_bytes(to=billed.reply_to, body="I paid $50 by check #1043 through the link.")
    )
    assert payment.pending_payment_id is not None
    await ingestor.ingest(email_bytes(to=billed.reply_to, body="When is this due?"))
    assert await family_link_notices(slack) == []


# --- delivered, viewed, paid ----------------------------------------------------------------


def test_delivery_summary_shows_viewed_and_paid() -> None:
    sent = datetime(2026, 3, 3, 15, tzinfo=UTC)
    viewed = datetime(2026, 3, 5, 4, tzinfo=UTC)  # Mar 4 in Chicago
    notice = NoticeDelivery(
        id=1,
        template="invoice_issued",
        to_address="maria@example.org",
        status="sent",
        created_at=sent,
        sent_at=sent,
        bounced_at=None,
        last_error=None,
        attempts=1,
        viewed_at=viewed,
    )
    assert delivery_summary([notice], TZ) == "Invoice emailed to maria@… Mar 3, viewed Mar 4"
    paid = datetime(2026, 3, 6, 18, tzinfo=UTC)
    assert delivery_summary([notice], TZ, paid_at=paid) == (
        "Invoice emailed to maria@… Mar 3, viewed Mar 4 · Paid in full Mar 6"
    )
    assert delivery_summary([], TZ, paid_at=paid) == "No email notices yet. · Paid in full Mar 6"


async def test_the_invoice_line_follows_the_email_from_sent_to_paid(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock, smtp: SmtpServer
) -> None:
    issued = await issue_invoice(stores, clock)
    settings = mail_settings(smtp.port, public_base_url=BASE)
    assert await drain(make_worker(engine, clock, settings)) == 1

    async def line() -> str:
        async with session_factory(engine)() as session:
            return await invoice_delivery_line(session, issued.invoice_id, TZ)

    assert await line() == "Invoice emailed to maria@… Mar 2"
    notice = await only_notice(engine, invoice_id=issued.invoice_id)
    async with stores() as store:
        row = await store.session.get(m.Notice, notice.id)
        assert row is not None
        row.viewed_at = datetime(2026, 3, 3, 17, tzinfo=UTC)
        await store.commit()
    assert await line() == "Invoice emailed to maria@… Mar 2, viewed Mar 3"

    clerk = await add_staff(stores, "Billing Clerk")
    clock.advance(days=2)
    async with stores() as store:
        await record_payment(
            Context(store, clock, TZ),
            clerk,
            RecordPayment(
                invoice_id=issued.invoice_id,
                amount_cents=2900,
                method=PaymentMethod.CASH,
                idempotency_key="pay-in-full",
            ),
        )
        await store.commit()
    assert (await line()).endswith("viewed Mar 3 · Receipt to maria@… queued · Paid in full Mar 4")


@pytest.mark.parametrize(
    ("language", "button", "how"),
    [
        ("en", "See your invoices and pay online", "- Online: see your invoices and pay at"),
        ("es", "Vea sus facturas y pague en línea", "- En línea: vea sus facturas y pague en"),
    ],
)
def test_a_digest_links_to_all_the_invoices_but_to_no_portal(
    language: str, button: str, how: str
) -> None:
    links = FamilyLinks(BASE, SECRET, 45, pay_online=True, portal_template=PORTAL)
    data = digest_of_every_kind()
    context = build_context(data, today=TODAY, tz=TZ, links=links)
    assert context["portal"] is None  # a portal item is one invoice; the digest is several
    out = NoticeRenderer().render("billing_digest", context, language)
    [link, _again] = links_in(out.text)
    assert link.notice_id == data.notice.id
    assert f"{button}:" in out.text and how in out.text and button in out.html
    assert "pay.lincoln.example" not in out.text + out.html
