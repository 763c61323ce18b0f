"""Payments parents report by email, decided in Slack: Confirm records the payment (and queues the
receipt), Not received records nothing, only Record Payments may decide, the first decision wins.

Signed requests through the real app; every case runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from bot.mail.ingest import Ingestor
from bot.slack.metadata import pack
from bot.slack.reply_blocks import (
    PendingPaymentRef,
    ReplyAction,
    ReplyBlock,
    ReplyPostKind,
    ReplyView,
)
from storage import models as m
from tests.mail.conftest import Billed, billed_family, email_bytes
from tests.slack.conftest import BILLING_CHANNEL, SlackHarness
from tests.slack.fake_api import Call
from tests.slack.money_helpers import (
    action_ids,
    all_text,
    blocks_of,
    button_value,
    click,
    ephemerals_to,
    eventually,
    refusals,
    submission,
    view_of,
)
from workflows.permissions import Actor

CLERK = "U_CLERK"
CLERK_2 = "U_CLERK2"
TECH = "U_TECH"


@dataclass
class Reported:
    billed: Billed
    pending_id: int
    post: Call  # the reply in the billing channel, with Confirm / Not received


async def report_payment(
    slack: SlackHarness, body: str = "I mailed check #1043 for $50 on Monday."
) -> Reported:
    billed = await billed_family(slack.runtime.stores, slack.clock)
    result = await Ingestor.from_runtime(slack.runtime).ingest(
        email_bytes(to=billed.reply_to, body=body)
    )
    assert result.pending_payment_id is not None
    await slack.deliver_outbox()
    [post] = [
        c for c in slack.fake.calls_to("chat.postMessage") if c.args["channel"] == BILLING_CHANNEL
    ]
    return Reported(billed, result.pending_payment_id, post)


async def press(slack: SlackHarness, user: str, action: str, reported: Reported) -> None:
    value = button_value(blocks_of(reported.post), action)
    response = await slack.sender.interaction(
        click(user, action, value, channel=BILLING_CHANNEL, message_ts="1700000000.000001")
    )
    assert response.status_code == 200


async def pending(slack: SlackHarness, pending_id: int) -> m.PendingPayment:
    async with slack.runtime.stores() as store:
        row = await store.session.get(m.PendingPayment, pending_id)
        assert row is not None
        await store.commit()
        return row


async def payments(slack: SlackHarness) -> list[m.Payment]:
    async with slack.runtime.stores() as store:
        result = list((await store.session.execute(select(m.Payment))).scalars())
        await store.commit()
        return result


async def until(rows: Callable[[], Awaitable[list[Any]]], timeout: float = 5.0) -> list[Any]:
    """Rows written after Slack's answer: wait until there are some."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not (found := await rows()):
        assert asyncio.get_running_loop().time() < deadline, "nothing was written"
        await asyncio.sleep(0.02)
    return found


async def decided(slack: SlackHarness, pending_id: int) -> bool:
    return (await pending(slack, pending_id)).status != "pending"


async def test_confirming_records_the_payment_queues_the_receipt_and_updates_the_message(
    slack: SlackHarness,
) -> None:
    reported = await report_payment(slack)
    clerk = await slack.staff("Billing Clerk", CLERK)
    assert "Confirm $50.00 (check #1043)" in all_text(blocks_of(reported.post))

    await press(slack, CLERK, ReplyAction.CONFIRM, reported)
    await eventually(lambda: decided(slack, reported.pending_id), what="the decision")

    row = await pending(slack, reported.pending_id)
    assert (row.status, row.decided_by_id) == ("confirmed", clerk.staff_id)
    [payment] = await payments(slack)
    assert row.payment_id == payment.id
    assert (payment.amount_cents, payment.method, payment.reference) == (5000, "check", "1043")
    assert payment.idempotency_key == f"pending-payment:{reported.pending_id}"
    assert payment.recorded_by_id == clerk.staff_id
    async with slack.runtime.stores() as store:
        invoice = await store.invoices.get(reported.billed.invoice_id)
        assert invoice is not None and invoice.paid_cents == 5000
        receipts = (
            await store.session.execute(
                select(m.Notice).where(m.Notice.template == "payment_receipt")
            )
        ).scalars()
        assert [n.dedupe_key for n in receipts] == [f"payment-receipt:{payment.id}"]
        log = await store.activity.for_entity("pending_payment", reported.pending_id)
        assert [(e.action, e.actor_staff_id) for e in log] == [("confirmed", clerk.staff_id)]
        await store.commit()

    await slack.deliver_outbox()
    [update] = slack.fake.calls_to("chat.update")
    async with slack.runtime.stores() as store:
        posted = await store.slack_posts.get(ReplyPostKind.MAIL_REPLY, row.inbound_message_id or 0)
        await store.commit()
    assert posted is not None  # the same message, updated in place
    assert (update.args["channel"], update.args["ts"]) == (posted.channel, posted.ts)
    text = all_text(blocks_of(update))
    assert "Confirmed* by Billing Clerk Person" in text
    assert ReplyAction.CONFIRM not in action_ids(blocks_of(update))


async def test_a_second_click_says_who_already_confirmed(slack: SlackHarness) -> None:
    reported = await report_payment(slack)
    await slack.staff("Billing Clerk", CLERK)
    await slack.staff("Finance Director", CLERK_2)
    await press(slack, CLERK, ReplyAction.CONFIRM, reported)
    await eventually(lambda: decided(slack, reported.pending_id), what="the decision")

    await press(slack, CLERK_2, ReplyAction.CONFIRM, reported)
    [said] = await _ephemeral(slack, CLERK_2)
    assert "already confirmed by Billing Clerk Person" in said
    await press(slack, CLERK_2, ReplyAction.REJECT, reported)
    said = (await _ephemeral(slack, CLERK_2, count=2))[-1]
    assert "already confirmed by Billing Clerk Person" in said
    assert len(await payments(slack)) == 1


async def _ephemeral(slack: SlackHarness, user: str, count: int = 1) -> list[str]:
    await slack.fake.wait_for(
        "chat.postEphemeral", lambda c: c.args.get("user") == user, count=count
    )
    return ephemerals_to(slack, user)


async def test_two_clerks_clicking_at_once_record_one_payment(slack: SlackHarness) -> None:
    reported = await report_payment(slack)
    await slack.staff("Billing Clerk", CLERK)
    await slack.staff("Finance Director", CLERK_2)
    await asyncio.gather(
        press(slack, CLERK, ReplyAction.CONFIRM, reported),
        press(slack, CLERK_2, ReplyAction.CONFIRM, reported),
    )
    await eventually(lambda: decided(slack, reported.pending_id), what="the decision")
    await slack.fake.wait_for("chat.postEphemeral")  # the loser is told who won
    assert len(await payments(slack)) == 1


async def test_only_record_payments_may_decide_and_refusals_are_logged(
    slack: SlackHarness,
) -> None:
    reported = await report_payment(slack)
    tech: Actor = await slack.staff("Technician", TECH)
    await press(slack, TECH, ReplyAction.CONFIRM, reported)
    [said] = await _ephemeral(slack, TECH)
    assert "does not have the Record Payments permission" in said
    await press(slack, TECH, ReplyAction.REJECT, reported)
    await _ephemeral(slack, TECH, count=2)

    assert (await pending(slack, reported.pending_id)).status == "pending"
    assert await payments(slack) == []
    assert len(await refusals(slack, tech)) == 2


async def test_a_crafted_click_is_refused_and_logged(slack: SlackHarness) -> None:
    reported = await report_payment(slack)
    clerk = await slack.staff("Billing Clerk", CLERK)
    forged = pack(PendingPaymentRef(pending_payment_id=reported.pending_id), "not-our-secret")
    await slack.sender.interaction(
        click(CLERK, ReplyAction.CONFIRM, forged, channel=BILLING_CHANNEL)
    )
    [said] = await _ephemeral(slack, CLERK)
    assert "didn't come from DeviceCare" in said
    assert await payments(slack) == []
    assert len(await refusals(slack, clerk)) == 1


async def test_not_received_records_nothing_and_says_so(slack: SlackHarness) -> None:
    reported = await report_payment(slack)
    await slack.staff("Billing Clerk", CLERK)
    await press(slack, CLERK, ReplyAction.REJECT, reported)
    await eventually(lambda: decided(slack, reported.pending_id), what="the decision")
    assert (await pending(slack, reported.pending_id)).status == "rejected"
    assert await payments(slack) == []

    await slack.deliver_outbox()
    [update] = slack.fake.calls_to("chat.update")
    assert "Marked not received* by Billing Clerk Person" in all_text(blocks_of(update))

    await press(slack, CLERK, ReplyAction.CONFIRM, reported)
    [said] = await _ephemeral(slack, CLERK)
    assert "already marked not received" in said
    assert await payments(slack) == []


async def test_missing_details_are_asked_for_before_recording(slack: SlackHarness) -> None:
    reported = await report_payment(slack, "I mailed a check for $50 on Monday.")
    await slack.staff("Billing Clerk", CLERK)
    assert "Confirm $50.00 (check)\u2026" in all_text(blocks_of(reported.post))

    await press(slack, CLERK, ReplyAction.CONFIRM, reported)
    [opened] = await slack.fake.wait_for("views.open")
    view = view_of(opened)
    assert view["callback_id"] == ReplyView.CONFIRM

    def values(method: str, reference: str | None) -> dict:
        return {
            ReplyBlock.METHOD: {
                ReplyBlock.METHOD: {
                    "type": "static_select",
                    "selected_option": {"value": method},
                }
            },
            ReplyBlock.REFERENCE: {
                ReplyBlock.REFERENCE: {"type": "plain_text_input", "value": reference}
            },
        }

    response = await slack.sender.interaction(
        submission(CLERK, view, "V_CONFIRM", values("check", None))
    )
    assert response.json()["errors"] == {ReplyBlock.REFERENCE: "Enter the check number."}
    assert await payments(slack) == []

    response = await slack.sender.interaction(
        submission(CLERK, view, "V_CONFIRM", values("check", "2001"))
    )
    assert response.json() == {"response_action": "clear"}
    [payment] = await until(lambda: payments(slack))  # recorded after the answer
    assert (payment.amount_cents, payment.method, payment.reference) == (5000, "check", "2001")
