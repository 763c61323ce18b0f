"""A check already recorded by hand, reported again in a parent's reply: staff's Confirm is
refused with what was recorded, not a server error, and nothing is paid twice (signed requests
through the real app, SQLite and PostgreSQL)."""

from __future__ import annotations

from tests.slack.conftest import SlackHarness
from tests.slack.test_replies import (
    CLERK,
    ReplyAction,
    _ephemeral,
    payments,
    pending,
    press,
    report_payment,
)
from workflows.payments import PaymentMethod, RecordPayment, record_payment
from workflows.ports import Context


async def test_confirming_a_check_already_recorded_is_refused_with_why(
    slack: SlackHarness,
) -> None:
    reported = await report_payment(slack, "I mailed check #1043 for $50 on Monday.")
    clerk = await slack.staff("Billing Clerk", CLERK)
    # The check came in the mail first and was recorded before anyone saw the reply.
    async with slack.runtime.stores() as store:
        await record_payment(
            Context(store, slack.clock, slack.runtime.settings.tz),
            clerk,
            RecordPayment(
                invoice_id=reported.billed.invoice_id,
                amount_cents=5_000,
                method=PaymentMethod.CHECK,
                idempotency_key="by-hand",
                reference="Check 1043",
            ),
        )
        await store.commit()

    await press(slack, CLERK, ReplyAction.CONFIRM, reported)
    [said] = await _ephemeral(slack, CLERK)
    assert '"1043" is already recorded on invoice' in said
    assert "the same payment is recorded only once" in said
    assert [p.idempotency_key for p in await payments(slack)] == ["by-hand"]
    assert (await pending(slack, reported.pending_id)).status == "pending"
