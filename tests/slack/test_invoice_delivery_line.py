"""`/billing invoice` shows where the invoice's emails stand: delivered, viewed, paid.

Through the real Slack app with signed requests and the fake Web API, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from bot.slack.billing_report_blocks import build_invoice_view
from storage import models as m
from storage.billing_reports import invoice_timeline
from tests.mail.conftest import billed_family
from tests.slack.conftest import SlackHarness
from tests.slack.test_billing_reports import all_text, answer
from workflows.payments import PaymentMethod, RecordPayment, record_payment
from workflows.ports import Context

TZ = ZoneInfo("America/Chicago")


async def test_the_invoice_shows_its_email_delivered_viewed_and_paid(slack: SlackHarness) -> None:
    await slack.staff("Billing Clerk", "U_CLERK")
    billed = await billed_family(slack.runtime.stores, slack.clock)  # emailed on Mar 2

    shown = all_text(await answer(slack, f"invoice {billed.invoice_number}", "U_CLERK"))
    assert ":email: Invoice emailed to maria@… Mar 2" in shown
    assert "viewed" not in shown

    async with slack.runtime.stores() as store:
        notice = await store.session.get(m.Notice, billed.notice_id)
        assert notice is not None
        notice.viewed_at = datetime(2026, 3, 4, 1, 30, tzinfo=UTC)  # Mar 3, 7:30 pm in Chicago
        await store.commit()
    shown = all_text(await answer(slack, f"invoice {billed.invoice_number}", "U_CLERK"))
    assert ":email: Invoice emailed to maria@… Mar 2, viewed Mar 3" in shown

    clerk = await slack.staff("Billing Clerk", "U_CLERK2")
    slack.clock.advance(days=3)
    async with slack.runtime.stores() as store:
        await record_payment(
            Context(store, slack.clock, TZ),
            clerk,
            RecordPayment(
                invoice_id=billed.invoice_id,
                amount_cents=12500,
                method=PaymentMethod.CHECK,
                reference="2001",
                idempotency_key="delivery-line-paid",
            ),
        )
        await store.commit()
    shown = all_text(await answer(slack, f"invoice {billed.invoice_number}", "U_CLERK"))
    assert "viewed Mar 3 · Receipt to maria@… queued · Paid in full Mar 5" in shown


async def test_the_line_is_escaped_for_slack(slack: SlackHarness) -> None:
    billed = await billed_family(slack.runtime.stores, slack.clock)
    async with slack.runtime.stores() as store:
        timeline = await invoice_timeline(store.session, billed.invoice_id, tz=TZ)
        await store.commit()
    assert timeline is not None
    _text, blocks = build_invoice_view(
        timeline,
        tz=TZ,
        secret="s",
        can_edit=False,
        can_automate=False,
        delivery="Invoice to <!channel> & co failed",
    )
    shown = all_text({"blocks": blocks})
    assert "&lt;!channel&gt; &amp; co" in shown and "<!channel>" not in shown
