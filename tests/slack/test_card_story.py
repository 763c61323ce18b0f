"""The incident card tells the whole story: its invoice with status and balance, where the
invoice's emails stand, and Request override when the policy allows one. It follows every
change to the money, whoever makes it (a payment recorded outside Slack, the mail worker)."""

from __future__ import annotations

from datetime import date
from typing import Any

from bot.slack.ids import IncidentAction
from storage import models as m
from storage.notice_queries import update_notices
from tests.slack.conftest import INCIDENTS_CHANNEL, SlackHarness
from tests.slack.fake_api import Call
from tests.slack.money_helpers import action_ids, all_text, button_value, card_ts, click
from tests.slack.test_overrides import TECH, full_price_invoice_at_the_cap
from workflows.payments import PaymentMethod, RecordPayment, record_payment
from workflows.ports import Context

CLERK = "U_CLERK"


def card_updates(slack: SlackHarness, incident_id: int) -> list[Call]:
    return [
        c
        for c in slack.fake.calls_to("chat.update")
        if c.args.get("channel") == INCIDENTS_CHANNEL and c.args.get("ts") == card_ts(incident_id)
    ]


def latest_card(slack: SlackHarness, incident_id: int) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = card_updates(slack, incident_id)[-1].args["blocks"]
    return blocks


async def pending_card_rows(slack: SlackHarness) -> int:
    async with slack.runtime.stores() as store:
        rows = (
            await store.session.execute(
                m.OutboxMessage.__table__.select().where(
                    m.OutboxMessage.kind == "slack.incident_card",
                    m.OutboxMessage.status == "pending",
                )
            )
        ).all()
        await store.commit()
    return len(rows)


async def test_the_card_shows_the_invoice_balance_emails_and_request_override(
    slack: SlackHarness,
) -> None:
    _, incident_id, _ = await full_price_invoice_at_the_cap(slack)

    await slack.deliver_outbox()

    blocks = latest_card(slack, incident_id)
    text = all_text(blocks)
    assert ":page_facing_up: *Invoice INV-000002* · Unpaid · balance *$125.00*" in text
    assert ":email: Invoice to " in text and " queued" in text  # the email waits in the outbox
    assert IncidentAction.REQUEST_OVERRIDE in action_ids(blocks)

    # Asked from the card, the usual request flow runs and the button goes away.
    value = button_value(blocks, IncidentAction.REQUEST_OVERRIDE)
    await slack.sender.interaction(
        click(TECH, IncidentAction.REQUEST_OVERRIDE, value, message_ts=card_ts(incident_id))
    )
    await slack.fake.wait_for(
        "chat.postEphemeral", lambda c: "Override requested" in c.args["text"]
    )
    await slack.deliver_outbox()
    assert IncidentAction.REQUEST_OVERRIDE not in action_ids(latest_card(slack, incident_id))


async def test_no_request_override_when_the_policy_allows_none(slack: SlackHarness) -> None:
    _, incident_id, _ = await full_price_invoice_at_the_cap(slack)
    async with slack.runtime.stores() as store:
        for policy in (await store.session.execute(m.InsurancePolicy.__table__.select())).all():
            await store.session.execute(
                m.InsurancePolicy.__table__.update()
                .where(m.InsurancePolicy.id == policy.id)
                .values(allow_override=False)
            )
        for invoice in await store.invoices.for_incident(incident_id):
            invoice.insurance_snapshot = {
                **(invoice.insurance_snapshot or {}),
                "allow_override": False,
            }
        await store.commit()

    await slack.deliver_outbox()

    assert IncidentAction.REQUEST_OVERRIDE not in action_ids(latest_card(slack, incident_id))


async def test_a_payment_recorded_anywhere_updates_the_balance_on_the_card(
    slack: SlackHarness,
) -> None:
    _, incident_id, _ = await full_price_invoice_at_the_cap(slack)
    await slack.deliver_outbox()
    before = len(card_updates(slack, incident_id))
    clerk = await slack.staff("Billing Clerk", CLERK)

    async with slack.runtime.stores() as store:  # e.g. `devicecare payments record`
        invoice = await store.invoices.by_number("INV-000002")
        assert invoice is not None
        await record_payment(
            Context(store, slack.clock, slack.runtime.settings.tz),
            clerk,
            RecordPayment(
                invoice_id=invoice.id,
                amount_cents=5000,
                method=PaymentMethod.CASH,
                idempotency_key="cash-1",
                received_on=date(2026, 3, 2),
            ),
        )
        await store.commit()
    assert await pending_card_rows(slack) == 1  # once per change, in the payment's commit

    await slack.deliver_outbox()

    assert len(card_updates(slack, incident_id)) == before + 1
    text = all_text(latest_card(slack, incident_id))
    assert "*Invoice INV-000002* · Unpaid · balance *$75.00*" in text
    assert "*Remaining balance: $75.00*" in text


async def test_the_mail_workers_delivery_state_reaches_the_card(slack: SlackHarness) -> None:
    _, incident_id, _ = await full_price_invoice_at_the_cap(slack)
    await slack.deliver_outbox()

    async with slack.runtime.sessions() as session, session.begin():  # as the mail worker does
        notices = (await session.execute(m.Notice.__table__.select())).all()
        invoice_id = max(n.invoice_id for n in notices)
        mine = [n.id for n in notices if n.invoice_id == invoice_id]
        await update_notices(session, {i: {"status": "failed", "last_error": "550"} for i in mine})
    assert await pending_card_rows(slack) == 1

    await slack.deliver_outbox()

    assert " failed (550)" in all_text(latest_card(slack, incident_id))
