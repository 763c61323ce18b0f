"""What billing staff see in Slack when a family pays online, delivered by the outbox worker."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.jobs.worker import OutboxWorker
from bot.slack.app import slack_outbox_handlers
from bot.slack.reply_blocks import ReplyPostKind
from storage import models as m
from tests.payments.conftest import BILLING_CHANNEL, PayHarness
from tests.slack.fake_api import BOT_TOKEN, FakeSlack
from tests.stripe_fake import make_event, session_object

COMPLETED = "checkout.session.completed"


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack()
    await fake.start()
    yield fake
    await fake.stop()


async def deliver(payments: PayHarness, slack: FakeSlack) -> int:
    client = AsyncWebClient(token=BOT_TOKEN, base_url=slack.base_url)
    worker = OutboxWorker(
        payments.runtime.stores, payments.clock, slack_outbox_handlers(payments.runtime, client)
    )
    total = 0
    while handled := await worker.run_once():
        total += handled
    return total


async def test_payments_are_posted_in_the_invoice_thread(
    payments: PayHarness, slack: FakeSlack
) -> None:
    invoice_id = await payments.invoice(payments.rivera, 10_000)

    await payments.post_event(
        make_event(COMPLETED, payments.paid_session(invoice_id, 4_000, payment_intent="pi_a"))
    )
    await deliver(payments, slack)
    await payments.post_event(
        make_event(COMPLETED, payments.paid_session(invoice_id, 6_000, payment_intent="pi_b"))
    )
    await deliver(payments, slack)

    first, second = slack.calls_to("chat.postMessage")
    # The first post starts the invoice's thread in the billing channel; the next one is in it.
    assert first.args["channel"] == BILLING_CHANNEL
    assert "thread_ts" not in first.args
    assert first.args["text"] == (
        "Paid online: $40.00 by Parent0 Rivera (Stripe, ref pi_a). Balance now $60.00."
    )
    async with payments.runtime.reads() as store:
        thread = await store.slack_posts.get(ReplyPostKind.INVOICE_THREAD, invoice_id)
    assert thread is not None
    assert (second.args["channel"], second.args["thread_ts"]) == (thread.channel, thread.ts)
    assert second.args["text"].endswith("Balance now $0.00.")


async def test_alerts_go_to_the_billing_channel(payments: PayHarness, slack: FakeSlack) -> None:
    stray = session_object(amount_cents=3_000, payment_intent="pi_stray")
    await payments.post_event(make_event(COMPLETED, stray))

    await deliver(payments, slack)

    [alert] = slack.calls_to("chat.postMessage")
    assert alert.args["channel"] == BILLING_CHANNEL
    assert "thread_ts" not in alert.args
    assert alert.args["text"].startswith(":warning: Stripe payment of $30.00")
    assert "pi_stray" in alert.args["text"]
    async with payments.runtime.reads() as store:
        rows = await store.session.execute(
            m.OutboxMessage.__table__.select().where(m.OutboxMessage.kind.like("slack.%"))
        )
        assert [row.status for row in rows] == ["sent"]


async def test_a_payers_name_from_stripe_is_shown_as_text(
    payments: PayHarness, slack: FakeSlack
) -> None:
    invoice_id = await payments.invoice(payments.rivera, 10_000)
    session = session_object(amount_cents=1_000, metadata={"invoice_id": str(invoice_id)})
    session["customer_details"] = {"name": "<!channel> <https://evil.example|Bob>", "email": None}

    await payments.post_event(make_event(COMPLETED, session))
    await deliver(payments, slack)

    [post] = slack.calls_to("chat.postMessage")
    assert "by &lt;!channel&gt; &lt;https://evil.example|Bob&gt; (Stripe" in post.args["text"]
