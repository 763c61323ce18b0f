"""Signed webhook events the HTTP fuzz suite (tests/fuzz) found mishandled: each now gets a
4xx (or is kept and applied) with one log line, never a 500."""

from __future__ import annotations

import logging

import pytest

from storage import models as m
from tests.payments.conftest import PayHarness
from tests.stripe_fake import make_event, session_object


async def test_an_event_type_that_is_not_text_gets_400(
    payments: PayHarness, caplog: pytest.LogCaptureFixture
) -> None:
    # `type: []` raised TypeError (unhashable) while the event was read: a 500, retried by
    # Stripe for days.
    event = make_event("checkout.session.completed", session_object(amount_cents=100))
    event["type"] = []
    with caplog.at_level(logging.INFO):
        posted = await payments.post_event(event)
    assert posted.status_code == 400
    assert not [r for r in caplog.records if r.exc_info]
    assert await payments.count(m.PaymentEvent) == 0


async def test_an_invoice_number_in_other_digits_names_no_invoice(
    payments: PayHarness, caplog: pytest.LogCaptureFixture
) -> None:
    # "²" passes str.isdigit() but not int(): a ValueError and a 500.
    invoice_id = await payments.invoice(payments.rivera)
    session = payments.paid_session(invoice_id, 2_500)
    session["metadata"]["invoice_id"] = "²"
    session["metadata"]["guardian_id"] = "١٢"
    with caplog.at_level(logging.INFO):
        posted = await payments.post_event(make_event("checkout.session.completed", session))
    assert posted.status_code == 200
    assert posted.outcome == "unmatched"
    assert not [r for r in caplog.records if r.exc_info]
    assert await payments.count(m.Payment) == 0


@pytest.mark.parametrize("amount", [2**63, 10**30, 10_000_000_01])
async def test_an_amount_past_any_payment_gets_400(
    payments: PayHarness, amount: int, caplog: pytest.LogCaptureFixture
) -> None:
    # It was kept, then failed in the worker on every attempt (the integer didn't fit the
    # database column), logged again and again.
    invoice_id = await payments.invoice(payments.rivera)
    event = make_event("checkout.session.completed", payments.paid_session(invoice_id, 100))
    event["data"]["object"]["amount_total"] = amount
    with caplog.at_level(logging.INFO):
        posted = await payments.post_event(event)
    assert posted.status_code == 400
    assert not [r for r in caplog.records if r.exc_info]
    assert await payments.count(m.OutboxMessage) == 0


async def test_an_event_with_a_nul_character_gets_400(
    payments: PayHarness, caplog: pytest.LogCaptureFixture
) -> None:
    # Kept, it failed in the worker on every attempt on PostgreSQL, which can't store a NUL.
    invoice_id = await payments.invoice(payments.rivera)
    session = payments.paid_session(invoice_id, 2_500, customer_email="a\x00@example.org")
    with caplog.at_level(logging.INFO):
        posted = await payments.post_event(make_event("checkout.session.completed", session))
    assert posted.status_code == 400
    assert not [r for r in caplog.records if r.exc_info]
    assert await payments.count(m.OutboxMessage) == 0
    assert await payments.count(m.Payment) == 0
