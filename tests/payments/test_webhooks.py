"""`POST /webhooks/stripe`: signed events, taken once, applied in one transaction."""

from __future__ import annotations

import asyncio

import pytest

from storage import models as m
from storage.notices import NOTICE_KIND
from storage.online_payments import PAYMENT_ALERT_KIND, PAYMENT_POST_KIND, STRIPE_EVENT_KIND
from tests.payments.conftest import TOLERANCE, PayHarness, outbox_of
from tests.stripe_fake import make_event, session_object, sign, signed_body

COMPLETED = "checkout.session.completed"
ASYNC_SUCCEEDED = "checkout.session.async_payment_succeeded"


async def test_a_paid_checkout_records_the_payment_once(payments: PayHarness) -> None:
    invoice_id = await payments.invoice(payments.rivera, 10_000)
    session = payments.paid_session(invoice_id, 10_000, payment_intent="pi_test_123")
    event = make_event(COMPLETED, session)

    response = await payments.post_event(event)

    assert response.status_code == 200
    assert response.json() == {"received": True, "outcome": "queued"}
    assert response.outcome == "applied"
    [payment] = await payments.rows(m.Payment)
    assert (payment.invoice_id, payment.amount_cents) == (invoice_id, 10_000)
    assert (payment.method, payment.reference) == ("online", "pi_test_123")
    assert payment.idempotency_key == f"stripe:{session['id']}"
    assert payment.recorded_by_id is None
    invoice = await payments.get(m.Invoice, invoice_id)
    assert (invoice.paid_cents, invoice.status) == (10_000, "paid")
    [recorded] = await payments.rows(m.PaymentEvent)
    assert (recorded.source, recorded.event_id, recorded.kind) == ("stripe", event["id"], COMPLETED)
    assert (recorded.outcome, recorded.invoice_id, recorded.payment_id) == (
        "applied",
        invoice_id,
        payment.id,
    )
    assert recorded.amount_cents == 10_000
    # The receipt email and the post in the invoice's Slack thread, from the same commit.
    [receipt] = await payments.rows(m.Notice)
    assert (receipt.template, receipt.context) == ("payment_receipt", {"payment_id": payment.id})
    assert await payments.count(m.OutboxMessage, outbox_of(NOTICE_KIND)) == 1
    [post] = await payments.rows(m.OutboxMessage, outbox_of(PAYMENT_POST_KIND))
    assert post.payload["invoice_id"] == invoice_id
    assert post.payload["text"] == (
        "Paid online: $100.00 by Parent0 Rivera (Stripe, ref pi_test_123). Balance now $0.00."
    )
    assert await payments.count(m.OutboxMessage, outbox_of(PAYMENT_ALERT_KIND)) == 0
    [activity] = await payments.rows(m.ActivityEntry, m.ActivityEntry.action == "payment_recorded")
    assert activity.actor_label == "Online payments (Stripe)"


async def test_a_partial_payment_leaves_the_rest_owed(payments: PayHarness) -> None:
    invoice_id = await payments.invoice(payments.rivera, 10_000)

    await payments.post_event(
        make_event(COMPLETED, payments.paid_session(invoice_id, 2_500, payment_intent="pi_1"))
    )

    invoice = await payments.get(m.Invoice, invoice_id)
    assert (invoice.paid_cents, invoice.status) == (2_500, "unpaid")
    [post] = await payments.rows(m.OutboxMessage, outbox_of(PAYMENT_POST_KIND))
    assert post.payload["text"].endswith("Balance now $75.00.")


async def test_a_bad_signature_is_refused_and_nothing_recorded(payments: PayHarness) -> None:
    invoice_id = await payments.invoice(payments.rivera, 10_000)
    event = make_event(COMPLETED, payments.paid_session(invoice_id, 10_000))
    ts = int(payments.clock.now().timestamp())
    body, headers = signed_body(event, "whsec_someone_else", timestamp=ts)
    tampered_body, good_headers = signed_body(event, timestamp=ts)
    tampered = tampered_body.replace(b"10000", b"99999")

    answers = [
        await payments.http.post("/webhooks/stripe", content=body, headers=headers),
        await payments.http.post("/webhooks/stripe", content=tampered, headers=good_headers),
        await payments.http.post("/webhooks/stripe", content=tampered_body),
        await payments.http.post(
            "/webhooks/stripe", content=tampered_body, headers={"Stripe-Signature": "garbage"}
        ),
    ]

    assert [a.status_code for a in answers] == [400, 400, 400, 400]
    assert await payments.count(m.PaymentEvent) == 0
    assert await payments.count(m.Payment) == 0


@pytest.mark.parametrize("offset", [-(TOLERANCE + 1), TOLERANCE + 1, -3600, 86_400])
async def test_a_signature_outside_the_tolerance_is_refused(
    payments: PayHarness, offset: int
) -> None:
    """Judged by the service's clock (fixed in 2026 here), not the machine's."""
    invoice_id = await payments.invoice(payments.rivera, 10_000)
    event = make_event(COMPLETED, payments.paid_session(invoice_id, 10_000))

    response = await payments.post_event(
        event, timestamp=int(payments.clock.now().timestamp()) + offset
    )

    assert response.status_code == 400
    assert "stale signature" in response.json()["error"]
    assert await payments.count(m.PaymentEvent) == 0


@pytest.mark.parametrize("offset", [-TOLERANCE, TOLERANCE])
async def test_a_signature_within_the_tolerance_is_taken(payments: PayHarness, offset: int) -> None:
    invoice_id = await payments.invoice(payments.rivera, 10_000)
    event = make_event(COMPLETED, payments.paid_session(invoice_id, 10_000))

    response = await payments.post_event(
        event, timestamp=int(payments.clock.now().timestamp()) + offset
    )

    assert response.status_code == 200
    assert await payments.count(m.Payment) == 1


async def test_a_replayed_event_pays_once(payments: PayHarness) -> None:
    invoice_id = await payments.invoice(payments.rivera, 10_000)
    event = make_event(COMPLETED, payments.paid_session(invoice_id, 4_000))

    first = await payments.post_event(event)
    payments.clock.advance(seconds=30)
    again = await payments.post_event(event)
    racing = await asyncio.gather(*(payments.post_event(event) for _ in range(5)))

    assert first.outcome == "applied"
    assert again.status_code == 200 and again.outcome == "replay"
    assert {r.outcome for r in racing} == {"replay"}
    assert await payments.count(m.Payment) == 1
    assert await payments.count(m.PaymentEvent) == 1
    assert await payments.count(m.Notice) == 1
    assert await payments.count(m.OutboxMessage, outbox_of(PAYMENT_POST_KIND)) == 1
    assert (await payments.get(m.Invoice, invoice_id)).paid_cents == 4_000


@pytest.mark.parametrize("order", [(COMPLETED, ASYNC_SUCCEEDED), (ASYNC_SUCCEEDED, COMPLETED)])
async def test_two_events_about_one_checkout_pay_once(
    payments: PayHarness, order: tuple[str, str]
) -> None:
    invoice_id = await payments.invoice(payments.rivera, 10_000)
    session = payments.paid_session(invoice_id, 6_000)

    answers = [await payments.post_event(make_event(kind, session)) for kind in order]

    assert [a.status_code for a in answers] == [200, 200]
    assert [a.outcome for a in answers] == ["applied", "ignored"]
    [payment] = await payments.rows(m.Payment)
    events = await payments.rows(m.PaymentEvent)
    assert [e.kind for e in events] == list(order)
    assert [e.payment_id for e in events] == [payment.id, payment.id]
    assert (await payments.get(m.Invoice, invoice_id)).paid_cents == 6_000
    assert await payments.count(m.Notice) == 1


async def test_events_about_one_checkout_racing_pay_once(payments: PayHarness) -> None:
    invoice_id = await payments.invoice(payments.rivera, 10_000)
    session = payments.paid_session(invoice_id, 6_000)
    events = [make_event(COMPLETED, session), make_event(ASYNC_SUCCEEDED, session)] * 3

    answers = await asyncio.gather(*(payments.post_event(e) for e in events))

    assert {a.status_code for a in answers} == {200}
    assert sorted(a.outcome for a in answers) == ["applied", "ignored"] + ["replay"] * 4
    assert await payments.count(m.Payment) == 1
    assert (await payments.get(m.Invoice, invoice_id)).paid_cents == 6_000


async def test_async_payment_waits_for_success(payments: PayHarness) -> None:
    """Bank debits complete the checkout unpaid; the money counts when it succeeds."""
    invoice_id = await payments.invoice(payments.rivera, 10_000)
    unpaid = payments.paid_session(invoice_id, 10_000, payment_status="unpaid")

    pending = await payments.post_event(make_event(COMPLETED, unpaid))
    succeeded = await payments.post_event(
        make_event(ASYNC_SUCCEEDED, dict(unpaid, payment_status="paid", payment_intent="pi_9"))
    )

    assert pending.outcome == "ignored"
    assert succeeded.outcome == "applied"
    [payment] = await payments.rows(m.Payment)
    assert payment.reference == "pi_9"


async def test_an_unknown_invoice_is_unmatched_and_alerted(payments: PayHarness) -> None:
    stray = session_object(amount_cents=3_000, metadata={"invoice_id": "424242"})
    nameless = session_object(amount_cents=1_500)

    first = await payments.post_event(make_event(COMPLETED, stray))
    second = await payments.post_event(make_event(COMPLETED, nameless))
    again = await payments.post_event(make_event(ASYNC_SUCCEEDED, stray))

    assert [r.status_code for r in (first, second, again)] == [200, 200, 200]
    assert [r.outcome for r in (first, second, again)] == ["unmatched"] * 3
    assert await payments.count(m.Payment) == 0
    events = await payments.rows(m.PaymentEvent)
    assert [(e.outcome, e.invoice_id, e.amount_cents) for e in events] == [
        ("unmatched", None, 3_000),
        ("unmatched", None, 1_500),
        ("unmatched", None, 3_000),
    ]
    # One alert per checkout, however many events mention it.
    alerts = await payments.rows(m.OutboxMessage, outbox_of(PAYMENT_ALERT_KIND))
    assert len(alerts) == 2
    assert "$30.00" in alerts[0].payload["text"]
    assert stray["id"] in alerts[0].payload["text"]
    assert "names no invoice" in alerts[0].payload["text"]


async def test_more_than_the_balance_is_capped_and_the_rest_alerted(payments: PayHarness) -> None:
    invoice_id = await payments.invoice(payments.rivera, 10_000, paid_cents=7_000)
    invoice = await payments.get(m.Invoice, invoice_id)

    response = await payments.post_event(
        make_event(COMPLETED, payments.paid_session(invoice_id, 5_000, payment_intent="pi_x"))
    )

    assert response.status_code == 200
    assert response.outcome == "excess"
    [payment] = await payments.rows(m.Payment)
    assert payment.amount_cents == 3_000
    after = await payments.get(m.Invoice, invoice_id)
    assert (after.paid_cents, after.status) == (10_000, "paid")
    [event] = await payments.rows(m.PaymentEvent)
    assert (event.outcome, event.amount_cents, event.payment_id) == ("excess", 5_000, payment.id)
    [alert] = await payments.rows(m.OutboxMessage, outbox_of(PAYMENT_ALERT_KIND))
    assert alert.payload["invoice_id"] == invoice_id
    text = alert.payload["text"]
    assert invoice.number in text and "pi_x" in text
    assert "$20.00 needs a refund or credit" in text
    [post] = await payments.rows(m.OutboxMessage, outbox_of(PAYMENT_POST_KIND))
    assert post.payload["text"].startswith("Paid online: $30.00 by Parent0 Rivera")
    assert (
        await payments.count(m.ActivityEntry, m.ActivityEntry.action == "online_payment_excess")
        == 1
    )


@pytest.mark.parametrize(
    ("status", "paid", "says"),
    [("paid", 10_000, "paid in full"), ("cancelled", 0, "cancelled")],
)
async def test_money_for_a_closed_invoice_is_alerted_not_applied(
    payments: PayHarness, status: str, paid: int, says: str
) -> None:
    invoice_id = await payments.invoice(payments.rivera, 10_000, paid_cents=paid, status=status)

    response = await payments.post_event(
        make_event(COMPLETED, payments.paid_session(invoice_id, 2_000))
    )

    assert response.outcome == "excess"
    assert await payments.count(m.Payment) == 0
    [alert] = await payments.rows(m.OutboxMessage, outbox_of(PAYMENT_ALERT_KIND))
    assert says in alert.payload["text"]
    assert "$20.00 needs a refund" in alert.payload["text"]


async def test_another_currency_is_rejected_and_alerted(payments: PayHarness) -> None:
    invoice_id = await payments.invoice(payments.rivera, 10_000)

    response = await payments.post_event(
        make_event(COMPLETED, payments.paid_session(invoice_id, 2_000, currency="eur"))
    )

    assert response.outcome == "rejected"
    assert await payments.count(m.Payment) == 0
    [alert] = await payments.rows(m.OutboxMessage, outbox_of(PAYMENT_ALERT_KIND))
    assert "EUR" in alert.payload["text"]


async def test_an_expired_checkout_is_marked(payments: PayHarness) -> None:
    invoice_id = await payments.invoice(payments.rivera, 10_000)
    opened = await payments.pay(
        payments.token(payments.rivera.guardian_id), invoice_id=str(invoice_id)
    )
    assert opened.status_code == 303
    [session_id] = payments.fake.sessions

    response = await payments.post_event(
        payments.fake.event_for(session_id, "checkout.session.expired")
    )

    assert response.outcome == "applied"
    [checkout] = await payments.rows(m.OnlineCheckout)
    assert (checkout.status, checkout.completed_at) == ("expired", payments.clock.now())
    assert checkout.payment_id is None
    assert await payments.count(m.Payment) == 0


async def test_a_failed_bank_payment_marks_the_checkout(payments: PayHarness) -> None:
    invoice_id = await payments.invoice(payments.rivera, 10_000)
    await payments.pay(payments.token(payments.rivera.guardian_id), invoice_id=str(invoice_id))
    [session_id] = payments.fake.sessions
    session = dict(payments.fake.sessions[session_id], payment_status="unpaid")

    response = await payments.post_event(
        make_event("checkout.session.async_payment_failed", session)
    )

    assert response.outcome == "applied"
    [checkout] = await payments.rows(m.OnlineCheckout)
    assert checkout.status == "failed"


async def test_other_event_types_are_acknowledged_and_ignored(payments: PayHarness) -> None:
    event = make_event("payment_intent.created", {"id": "pi_1", "object": "payment_intent"})

    response = await payments.post_event(event)

    assert response.status_code == 200
    assert response.outcome == "ignored"
    assert await payments.count(m.PaymentEvent) == 0


async def test_a_signed_but_unreadable_body_is_refused(payments: PayHarness) -> None:
    ts = int(payments.clock.now().timestamp())
    body = b'{"id": "evt_1", "type": "checkout.session.completed", "data": {}}'

    response = await payments.http.post(
        "/webhooks/stripe", content=body, headers={"Stripe-Signature": sign(body, timestamp=ts)}
    )

    assert response.status_code == 400
    assert await payments.count(m.PaymentEvent) == 0


async def test_the_hosted_page_pays_through_the_webhook(payments: PayHarness) -> None:
    """Pay button -> Stripe's page -> Pay -> signed webhook -> payment -> back to the page."""
    import httpx

    invoice_id = await payments.invoice(payments.rivera, 10_000)
    invoice = await payments.get(m.Invoice, invoice_id)
    token = payments.token(payments.rivera.guardian_id)
    opened = await payments.pay(token, invoice_id=str(invoice_id), amount="40")
    hosted = opened.headers["location"]

    async with httpx.AsyncClient() as browser:
        page = await browser.get(hosted)
        assert "id='amount'>$40.00<" in page.text
        paid = await browser.post(hosted)

    assert paid.status_code == 303
    assert paid.headers["location"].endswith(f"/family/{token}?paid={invoice.number}")
    [delivery] = payments.fake.deliveries
    assert (delivery.status, delivery.event["type"]) == (200, COMPLETED)
    assert await payments.apply_events() == 1
    [payment] = await payments.rows(m.Payment)
    assert payment.amount_cents == 4_000
    [checkout] = await payments.rows(m.OnlineCheckout)
    assert (checkout.status, checkout.payment_id) == ("paid", payment.id)


async def test_the_webhook_keeps_the_event_and_the_worker_applies_it(
    payments: PayHarness,
) -> None:
    """Stripe is answered as soon as the event is kept; the payment follows from the outbox."""
    invoice_id = await payments.invoice(payments.rivera, 10_000)
    event = make_event(COMPLETED, payments.paid_session(invoice_id, 2_500))

    kept = await payments.post_event(event, apply=False)
    again = await payments.post_event(event, apply=False)

    assert (kept.json()["outcome"], again.json()["outcome"]) == ("queued", "replay")
    assert await payments.count(m.Payment) == 0
    assert await payments.count(m.OutboxMessage, outbox_of(STRIPE_EVENT_KIND)) == 1
    assert await payments.apply_events() == 1
    assert await payments.apply_events() == 0
    [payment] = await payments.rows(m.Payment)
    assert payment.amount_cents == 2_500
    [stored] = await payments.rows(m.OutboxMessage, outbox_of(STRIPE_EVENT_KIND))
    assert stored.status == "sent"
