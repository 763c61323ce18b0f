"""The reported-payment workflow on a real store (SQLite and PostgreSQL): a payment without an
amount can't be confirmed until one is entered, the full balance is read when staff take it,
a split can't change once decided, and a payment reported before splits existed still confirms.
"""

from __future__ import annotations

import pytest
from sqlalchemy import delete, select

from bot.mail.ingest import Ingestor
from storage import models as m
from storage.inbox import Inbox
from tests.mail.conftest import billed_family, email_bytes
from tests.slack.conftest import SlackHarness
from workflows.errors import ConflictError, ValidationError
from workflows.payments import PaymentMethod, RecordPayment, record_payment
from workflows.pending_payments import confirm_pending_payment, edit_split, use_full_balance
from workflows.permissions import Actor
from workflows.ports import Context


async def report(slack: SlackHarness, body: str) -> tuple[int, int]:
    billed = await billed_family(slack.runtime.stores, slack.clock)
    result = await Ingestor.from_runtime(slack.runtime).ingest(
        email_bytes(to=billed.reply_to, body=body)
    )
    assert result.pending_payment_id is not None
    return billed.invoice_id, result.pending_payment_id


async def payments(slack: SlackHarness) -> list[m.Payment]:
    async with slack.runtime.stores() as store:
        result = list((await store.session.execute(select(m.Payment))).scalars())
        await store.commit()
        return result


async def test_no_amount_waits_for_one_and_takes_the_balance_as_it_is_then(
    slack: SlackHarness,
) -> None:
    invoice_id, pending_id = await report(slack, "I paid it online.")
    clerk: Actor = await slack.staff("Billing Clerk", "U_CLERK")
    tz = slack.runtime.settings.tz

    with pytest.raises(ValidationError) as caught:
        async with slack.runtime.stores() as store:
            await confirm_pending_payment(
                Context(store, slack.clock, tz), Inbox(store), clerk, pending_id
            )
            await store.commit()
    assert "didn't say how much they paid" in caught.value.message
    assert await payments(slack) == []

    # Someone pays $25 at the office meanwhile: the full balance is what is owed now.
    async with slack.runtime.stores() as store:
        await record_payment(
            Context(store, slack.clock, tz),
            clerk,
            RecordPayment(invoice_id, 2500, PaymentMethod.CASH, "office-1"),
        )
        await store.commit()
    async with slack.runtime.stores() as store:
        ctx, inbox = Context(store, slack.clock, tz), Inbox(store)
        with pytest.raises(ValidationError) as caught:
            await edit_split(
                ctx, inbox, clerk, pending_id, total="125", amounts={invoice_id: "125"}
            )
        assert "more than the $100.00 still owed" in caught.value.message
        await store.commit()
    async with slack.runtime.stores() as store:
        ctx, inbox = Context(store, slack.clock, tz), Inbox(store)
        pending = await use_full_balance(ctx, inbox, clerk, pending_id)
        assert (pending.amount_cents, pending.amount_given) == (10000, True)
        decision = await confirm_pending_payment(ctx, inbox, clerk, pending_id)
        assert decision.payment is not None and decision.payment.amount_cents == 10000
        await store.commit()
    async with slack.runtime.stores() as store:
        ctx, inbox = Context(store, slack.clock, tz), Inbox(store)
        with pytest.raises(ConflictError) as conflict:
            await edit_split(ctx, inbox, clerk, pending_id, total="1", amounts={invoice_id: "1"})
        assert "already confirmed" in conflict.value.message
        log = await store.activity.for_entity("pending_payment", pending_id)
        assert [e.action for e in log] == ["split_changed", "confirmed"]
        await store.commit()


async def test_a_payment_reported_before_splits_existed_still_confirms(
    slack: SlackHarness,
) -> None:
    invoice_id, pending_id = await report(slack, "I paid $50 cash on Monday.")
    async with slack.runtime.stores() as store:
        await store.session.execute(delete(m.PendingPaymentPart))
        await store.commit()
    clerk: Actor = await slack.staff("Billing Clerk", "U_CLERK")
    async with slack.runtime.stores() as store:
        await confirm_pending_payment(
            Context(store, slack.clock, slack.runtime.settings.tz), Inbox(store), clerk, pending_id
        )
        await store.commit()
    [payment] = await payments(slack)
    assert (payment.invoice_id, payment.amount_cents, payment.idempotency_key) == (
        invoice_id,
        5000,
        f"pending-payment:{pending_id}",
    )
