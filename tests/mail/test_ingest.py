"""The ingest pipeline on its own (raw bytes in, rows and Slack posts out): routing, the sender
check, auto-replies, bounces, reported payments, photos, and escaping in Slack.

Every case runs on SQLite and on PostgreSQL, through the real Slack app's outbox handlers.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import func, select

from bot.mail.ingest import Ingestor, inbound_message_id, invoice_numbers
from bot.mail.tokens import make_reply_token, reply_address
from storage import models as m
from storage.notices import recipients
from tests.hostile_images import assert_stored_clean, corpus
from tests.mail.conftest import (
    PARENT,
    REPLY_BASE,
    SECRET,
    Billed,
    billed_family,
    email_bytes,
    photo_bytes,
)
from tests.slack.conftest import BILLING_CHANNEL, SlackHarness
from tests.slack.fake_api import Call

OTHER = "stranger@elsewhere.example"


@pytest.fixture
async def billed(slack: SlackHarness) -> Billed:
    return await billed_family(slack.runtime.stores, slack.clock)


@pytest.fixture
def ingestor(slack: SlackHarness) -> Ingestor:
    return Ingestor.from_runtime(slack.runtime)


async def rows(slack: SlackHarness, model: type) -> list:  # type: ignore[type-arg]
    async with slack.runtime.stores() as store:
        result = await store.session.execute(select(model).order_by(model.id))
        await store.commit()
        return list(result.scalars())


async def outbox_kinds(slack: SlackHarness) -> list[str]:
    return [row.kind for row in await rows(slack, m.OutboxMessage)]


def billing_posts(slack: SlackHarness) -> list[Call]:
    return [
        c for c in slack.fake.calls_to("chat.postMessage") if c.args["channel"] == BILLING_CHANNEL
    ]


def shown(call: Call) -> str:
    """Everything Slack would render from a post: its text and its blocks."""
    blocks = call.args.get("blocks") or []
    blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
    return call.args.get("text", "") + "\n" + json.dumps(blocks)


# --- routing ---------------------------------------------------------------------------------


async def test_a_signed_token_routes_the_reply(
    slack: SlackHarness, billed: Billed, ingestor: Ingestor
) -> None:
    result = await ingestor.ingest(email_bytes(to=billed.reply_to, body="When is it due?"))
    assert (result.route, result.status, result.invoice_id) == (
        "token",
        "routed",
        billed.invoice_id,
    )
    [row] = await rows(slack, m.InboundMessage)
    assert row.notice_id == billed.notice_id and row.sender_trusted
    assert row.intent == "question" and row.body_text == "When is it due?"
    assert row.raw_blob_key.startswith("sha256/")
    assert await slack.runtime.blobs.exists(row.raw_blob_key)  # the whole email, not in the DB

    await slack.deliver_outbox()
    [post] = billing_posts(slack)
    assert "Reply from Maria Rivera" in shown(post) and billed.invoice_number in shown(post)


async def test_in_reply_to_routes_a_reply_sent_to_the_plain_address(
    slack: SlackHarness, billed: Billed, ingestor: Ingestor
) -> None:
    raw = email_bytes(to=REPLY_BASE, in_reply_to=billed.notice_message_id)
    result = await ingestor.ingest(raw)
    assert (result.route, result.status, result.invoice_id) == (
        "thread",
        "routed",
        billed.invoice_id,
    )


async def test_an_invoice_number_in_the_subject_routes_a_new_email(
    slack: SlackHarness, billed: Billed, ingestor: Ingestor
) -> None:
    number = billed.invoice_number.replace("-", " #")  # "INV #000001" is how people type it
    raw = email_bytes(to=REPLY_BASE, subject=f"Question about {number}")
    result = await ingestor.ingest(raw)
    assert (result.route, result.status, result.invoice_id) == (
        "subject",
        "routed",
        billed.invoice_id,
    )


async def test_an_invoice_number_in_the_text_routes_only_a_guardians_email(
    slack: SlackHarness, billed: Billed, ingestor: Ingestor
) -> None:
    body = f"I paid $50 cash for {billed.invoice_number} today."
    result = await ingestor.ingest(email_bytes(to=REPLY_BASE, subject="Device bill", body=body))
    assert (result.route, result.status, result.invoice_id) == (
        "body",
        "routed",
        billed.invoice_id,
    )
    assert result.pending_payment_id is not None
    # Anyone can type a number: a stranger's email naming it is held, not filed under it.
    stranger = email_bytes(
        to=REPLY_BASE, sender=f"Someone <{OTHER}>", subject="Device bill", body=body
    )
    result = await ingestor.ingest(stranger)
    assert (result.route, result.status, result.invoice_id) == ("none", "held", None)
    assert len(await rows(slack, m.PendingPayment)) == 1


async def test_an_email_about_nothing_known_is_held(
    slack: SlackHarness, billed: Billed, ingestor: Ingestor
) -> None:
    result = await ingestor.ingest(email_bytes(to=REPLY_BASE, subject="Hello"))
    assert (result.route, result.status, result.invoice_id) == ("none", "held", None)
    await slack.deliver_outbox()
    [post] = billing_posts(slack)
    assert "thread_ts" not in post.args
    assert "Held: no invoice found" in shown(post)


async def test_a_forged_token_is_held_and_nothing_else_happens(
    slack: SlackHarness, billed: Billed, ingestor: Ingestor
) -> None:
    # Another invoice's id under this invoice's signature, and a real In-Reply-To besides.
    token = make_reply_token(billed.invoice_id, billed.notice_id, SECRET)
    forged = reply_address(REPLY_BASE, token.replace(f"i{billed.invoice_id}n", "i999n", 1))
    raw = email_bytes(
        to=forged,
        in_reply_to=billed.notice_message_id,
        body="I mailed check #1043 for $50 on Monday.",
    )
    result = await ingestor.ingest(raw)
    assert (result.route, result.status, result.invoice_id) == ("forged", "held", None)
    assert result.pending_payment_id is None
    assert await rows(slack, m.PendingPayment) == []
    assert "slack.mail_reply" in await outbox_kinds(slack)
    notices = await rows(slack, m.Notice)
    assert [n.template for n in notices] == ["invoice_issued"]  # no acknowledgement went out
    await slack.deliver_outbox()
    [post] = billing_posts(slack)
    assert "Held: forged reply address" in shown(post)


async def test_someone_elses_plus_address_in_cc_is_not_a_forgery(
    slack: SlackHarness, billed: Billed, ingestor: Ingestor
) -> None:
    raw = email_bytes(to=billed.reply_to, headers={"Cc": "grandma+school@example.org"})
    result = await ingestor.ingest(raw)
    assert result.route == "token"


async def test_a_spoofed_sender_is_flagged_and_never_makes_a_pending_payment(
    slack: SlackHarness, billed: Billed, ingestor: Ingestor
) -> None:
    raw = email_bytes(
        to=billed.reply_to,
        sender=f"Not Maria <{OTHER}>",
        body="I mailed check #1043 for $50 on Monday.",
    )
    result = await ingestor.ingest(raw)
    assert (result.route, result.status, result.invoice_id) == (
        "token",
        "flagged",
        billed.invoice_id,
    )
    [row] = await rows(slack, m.InboundMessage)
    assert not row.sender_trusted and row.intent == "payment"
    assert await rows(slack, m.PendingPayment) == []
    assert [n.template for n in await rows(slack, m.Notice)] == ["invoice_issued"]

    await slack.deliver_outbox()
    [post] = billing_posts(slack)
    text = shown(post)
    assert "Unverified sender" in text and OTHER in text
    assert "reply.confirm_payment" not in text  # no button to move money


async def test_a_guardian_of_another_student_is_not_trusted(
    slack: SlackHarness, billed: Billed, ingestor: Ingestor
) -> None:
    async with slack.runtime.stores() as store:
        store.session.add(
            m.Guardian(first_name="Other", last_name="Parent", email="other.parent@example.org")
        )
        await store.commit()
    raw = email_bytes(to=billed.reply_to, sender="other.parent@example.org")
    result = await ingestor.ingest(raw)
    assert result.status == "flagged"


# --- what Slack shows ------------------------------------------------------------------------


async def test_html_and_slack_markup_from_a_parent_show_as_text(
    slack: SlackHarness, billed: Billed, ingestor: Ingestor
) -> None:
    html = (
        "<html><body><p>Hi <!channel> please call me</p>"
        "<script>alert('x')</script><p>&lt;@U_ADMIN&gt; &lt;https://evil.example|bank&gt;</p>"
        "</body></html>"
    )
    raw = email_bytes(
        to=billed.reply_to,
        sender='"<!here> Maria" <maria@example.org>',
        body="Hi <!channel> <script>alert(1)</script> <@U_ADMIN> <https://evil.example|bank>",
        html=html,
    )
    await ingestor.ingest(raw)
    await slack.deliver_outbox()
    [post] = billing_posts(slack)
    text = shown(post)
    for live in ("<!channel>", "<!here>", "<script>", "<@U_ADMIN>", "<https://evil"):
        assert live not in text, live
    assert "&lt;!channel&gt;" in text and "&lt;@U_ADMIN&gt;" in text


async def test_long_replies_are_cut_to_fit_a_slack_block(
    slack: SlackHarness, billed: Billed, ingestor: Ingestor
) -> None:
    await ingestor.ingest(email_bytes(to=billed.reply_to, body="word " * 2000))
    await slack.deliver_outbox()
    [post] = billing_posts(slack)
    blocks = post.args["blocks"]
    blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
    assert all(len(b.get("text", {}).get("text", "")) <= 3000 for b in blocks)


# --- auto-replies and bounces ----------------------------------------------------------------


async def test_an_auto_reply_is_recorded_and_never_answered(
    slack: SlackHarness, billed: Billed, ingestor: Ingestor
) -> None:
    raw = email_bytes(
        to=billed.reply_to,
        subject="Out of office: Your invoice",
        body="I am away until Monday.",
        headers={"Auto-Submitted": "auto-replied"},
    )
    result = await ingestor.ingest(raw)
    assert (result.kind, result.status) == ("auto_reply", "recorded")
    [row] = await rows(slack, m.InboundMessage)
    assert row.invoice_id == billed.invoice_id  # kept with the invoice's history
    assert await rows(slack, m.PendingPayment) == []
    kinds = await outbox_kinds(slack)
    assert "slack.mail_reply" not in kinds
    assert kinds.count("email.notice") == 1  # only the invoice notice: nothing answers it


def dsn(recipient: str, original_message_id: str | None) -> bytes:
    """An RFC 3464 delivery report, shaped like Postfix's."""
    returned = (
        "--RB\n"
        "Content-Type: text/rfc822-headers\n\n"
        f"From: {REPLY_BASE}\nTo: {recipient}\nSubject: Invoice\n"
        f"Message-ID: {original_message_id}\n\n"
        if original_message_id
        else ""
    )
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.district.org>\n"
        f"To: {REPLY_BASE}\n"
        "Subject: Undelivered Mail Returned to Sender\n"
        "Message-ID: <dsn.1@mx.district.org>\n"
        "Auto-Submitted: auto-replied\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="RB"\n\n'
        "--RB\n"
        "Content-Type: text/plain\n\n"
        "Your message could not be delivered to one or more recipients.\n\n"
        "--RB\n"
        "Content-Type: message/delivery-status\n\n"
        "Reporting-MTA: dns; mx.district.org\n\n"
        f"Final-Recipient: rfc822; {recipient}\n"
        "Action: failed\n"
        "Status: 5.1.1\n"
        "Diagnostic-Code: smtp; 550 5.1.1 User unknown\n\n"
        f"{returned}"
        "--RB--\n"
    ).encode()


async def test_a_bounce_marks_the_address_the_notice_and_alerts_billing(
    slack: SlackHarness, billed: Billed, ingestor: Ingestor
) -> None:
    result = await ingestor.ingest(dsn(PARENT, billed.notice_message_id))
    assert (result.kind, result.status, result.invoice_id) == (
        "bounce",
        "recorded",
        billed.invoice_id,
    )
    [guardian] = await rows(slack, m.Guardian)
    assert guardian.email_bouncing_since == slack.clock.now()
    [notice] = await rows(slack, m.Notice)
    assert notice.status == "bounced" and notice.bounced_at is not None
    async with slack.runtime.stores() as store:
        # No more notices to that address until someone fixes it.
        assert await recipients(store.session, billed.district.student_id) == []
        await store.commit()

    await slack.deliver_outbox()
    [alert] = billing_posts(slack)
    text = shown(alert)
    assert "bounced" in text and PARENT in text
    assert "Maria Rivera" in text and billed.invoice_number in text


async def test_a_bounce_without_the_original_finds_the_latest_notice_to_the_address(
    slack: SlackHarness, billed: Billed, ingestor: Ingestor
) -> None:
    await ingestor.ingest(dsn(PARENT.upper(), None))
    [notice] = await rows(slack, m.Notice)
    assert notice.status == "bounced"
    [guardian] = await rows(slack, m.Guardian)
    assert guardian.email_bouncing_since is not None


async def test_a_bounce_for_an_unknown_address_is_only_recorded(
    slack: SlackHarness, billed: Billed, ingestor: Ingestor
) -> None:
    result = await ingestor.ingest(dsn("nobody@nowhere.example", None))
    assert (result.kind, result.status) == ("bounce", "recorded")
    assert "slack.mail_bounce" not in await outbox_kinds(slack)
    [guardian] = await rows(slack, m.Guardian)
    assert guardian.email_bouncing_since is None


# --- reported payments -----------------------------------------------------------------------


async def test_a_reported_payment_waits_for_staff_and_the_family_hears_so(
    slack: SlackHarness, billed: Billed, ingestor: Ingestor
) -> None:
    raw = email_bytes(to=billed.reply_to, body="I mailed check #1043 for $50 on Monday.")
    result = await ingestor.ingest(raw)
    [pending] = await rows(slack, m.PendingPayment)
    assert result.pending_payment_id == pending.id
    assert (pending.amount_cents, pending.method, pending.reference, pending.status) == (
        5000,
        "check",
        "1043",
        "pending",
    )
    [invoice] = await rows(slack, m.Invoice)
    assert invoice.paid_cents == 0  # nothing a parent writes moves money by itself
    ack = [n for n in await rows(slack, m.Notice) if n.template == "pending_payment_ack"]
    [notice] = ack
    assert notice.dedupe_key == f"pending-ack:{pending.id}"
    assert notice.context["pending_payment_id"] == pending.id
    assert notice.context["parts"] == [
        {"number": billed.invoice_number, "amount_cents": 5000, "balance_cents": 12500}
    ]
    [sent_as] = await rows(slack, m.InboundMessage)
    assert notice.context["reply_thread"]["message_id"] == sent_as.message_id

    await slack.deliver_outbox()
    [post] = billing_posts(slack)
    assert "Confirm $50.00 (check #1043)" in shown(post)
    assert "Not received" in shown(post)


async def test_a_payment_reported_on_a_paid_invoice_waits_for_nobody(
    slack: SlackHarness, billed: Billed, ingestor: Ingestor
) -> None:
    async with slack.runtime.stores() as store:
        invoice = await store.invoices.get(billed.invoice_id)
        assert invoice is not None
        invoice.paid_cents, invoice.status = invoice.total_cents, "paid"
        await store.commit()
    await ingestor.ingest(email_bytes(to=billed.reply_to, body="I paid $50 cash on Monday."))
    assert await rows(slack, m.PendingPayment) == []


# --- photos ----------------------------------------------------------------------------------


async def test_a_photo_from_the_family_is_attached_to_the_incident(
    slack: SlackHarness, billed: Billed, ingestor: Ingestor
) -> None:
    raw = email_bytes(
        to=billed.reply_to,
        body="Here is a photo of the screen.",
        attachments=(
            ("screen.jpg", "image/jpeg", photo_bytes()),
            ("logo.png", "image/png", photo_bytes((40, 20))),  # signature art: ignored
            ("broken.jpg", "image/jpeg", b"not a picture at all"),
            ("receipt.pdf", "application/pdf", b"%PDF-1.4 fake"),
        ),
    )
    result = await ingestor.ingest(raw)
    assert result.photos == 1
    [photo] = await rows(slack, m.Photo)
    assert (photo.incident_id, photo.source, photo.original_filename) == (
        billed.incident_id,
        "email",
        "screen.jpg",
    )
    assert photo.device_id == billed.district.device_id and photo.uploaded_by_id is None
    assert await slack.runtime.blobs.exists(photo.blob_key)
    async with slack.runtime.stores() as store:
        [entry] = [e for e in await store.activity.for_entity("incident", billed.incident_id)
                   if e.action == "photo_added"]  # fmt: skip
        await store.commit()
    assert entry.actor_label == "Maria Rivera (by email)"

    await slack.deliver_outbox()
    [post] = billing_posts(slack)
    text = shown(post)
    assert "1 photo added to incident" in text
    assert "broken.jpg" in text and "receipt.pdf" in text


async def test_hostile_photos_by_email_are_refused_or_stored_clean(
    slack: SlackHarness, billed: Billed, ingestor: Ingestor
) -> None:
    """Part of tests/hostile_images.py by email: polyglots, a sideways photo and a CMYK one are
    stored re-encoded; bombs and broken files are named in the note to staff."""
    chosen = ("receipt.jpg", "screen.jpg", "comment.jpg", "sideways.jpg", "cmyk.jpg",
              "frames.gif", "frames.webp", "bomb.png", "cut.jpg", "vector.jpg")  # fmt: skip
    entries = {e.filename: e for e in corpus() if e.filename in chosen}
    raw = email_bytes(
        to=billed.reply_to,
        body="Photos of the damage.",
        # Every attachment claims to be a JPEG; the content decides.
        attachments=tuple((name, "image/jpeg", entries[name].data) for name in chosen),
    )
    result = await ingestor.ingest(raw)
    kept = [n for n in chosen if entries[n].refused_with is None]
    assert result.photos == len(kept)
    stored = {p.original_filename: p for p in await rows(slack, m.Photo)}
    assert set(stored) == set(kept)
    for name in kept:
        photo = stored[name]
        assert photo.content_type == entries[name].stored_type
        data = await slack.runtime.blobs.get(photo.blob_key)
        assert_stored_clean(data, photo.content_type, entries[name])

    await slack.deliver_outbox()
    [post] = billing_posts(slack)
    text = shown(post)
    for name in chosen:
        if entries[name].refused_with is not None:
            assert name in text and str(entries[name].refused_with) in text, name


async def test_photos_from_an_unverified_sender_stay_in_the_email(
    slack: SlackHarness, billed: Billed, ingestor: Ingestor
) -> None:
    raw = email_bytes(
        to=billed.reply_to,
        sender=OTHER,
        attachments=(("screen.jpg", "image/jpeg", photo_bytes()),),
    )
    result = await ingestor.ingest(raw)
    assert result.status == "flagged" and result.photos == 0
    assert await rows(slack, m.Photo) == []


# --- once only -------------------------------------------------------------------------------


async def test_the_same_message_twice_is_stored_once(
    slack: SlackHarness, billed: Billed, ingestor: Ingestor
) -> None:
    raw = email_bytes(
        to=billed.reply_to,
        body="I mailed check #1043 for $50 on Monday.",
        attachments=(("screen.jpg", "image/jpeg", photo_bytes()),),
    )
    first = await ingestor.ingest(raw)
    second = await ingestor.ingest(raw)
    assert not first.duplicate and second.duplicate
    assert second.message_id == first.message_id
    async with slack.runtime.stores() as store:
        for model in (m.InboundMessage, m.PendingPayment, m.Photo):
            count = await store.session.scalar(select(func.count()).select_from(model))
            assert count == 1, model
        await store.commit()


async def test_two_ingestors_racing_on_one_message_store_it_once(
    slack: SlackHarness, billed: Billed
) -> None:
    raw = email_bytes(to=billed.reply_to, body="Paid $20 cash.")
    one, two = Ingestor.from_runtime(slack.runtime), Ingestor.from_runtime(slack.runtime)
    results = await asyncio.gather(one.ingest(raw), two.ingest(raw))
    assert sorted(r.duplicate for r in results) == [False, True]
    assert len(await rows(slack, m.InboundMessage)) == 1


def test_message_ids_and_invoice_numbers() -> None:
    raw = b"Subject: x\r\n\r\nbody"
    assert inbound_message_id("<a@b>", raw) == "<a@b>"
    assert inbound_message_id("a@b", raw) == "<a@b>"
    assert inbound_message_id(None, raw) == inbound_message_id(None, raw)
    assert inbound_message_id(None, raw) != inbound_message_id(None, raw + b"!")
    long_id = "<" + "x" * 400 + "@b>"
    assert len(inbound_message_id(long_id, raw)) <= 300
    assert invoice_numbers("Re: INV-000123 and inv 45, INV-00123", "INV") == [
        "INV-000123",
        "INV-000045",
    ]
    assert invoice_numbers("PREINV-000123 INV-1234567890123", "INV") == []
