"""The Stripe stand-in signs as Stripe does, and runs on its own thread for browser tests."""

from __future__ import annotations

import httpx
import pytest
import stripe

from tests.stripe_fake import (
    SECRET_KEY,
    WEBHOOK_SECRET,
    FakeStripe,
    make_event,
    nest_form,
    sign,
    signed_body,
)


def test_signatures_verify_with_stripes_library() -> None:
    event = make_event("checkout.session.completed", {"id": "cs_1"})
    body, headers = signed_body(event, timestamp=1_700_000_000)
    assert stripe.WebhookSignature.verify_header(
        body, headers["Stripe-Signature"], WEBHOOK_SECRET, tolerance=None
    )
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(
            body + b" ", headers["Stripe-Signature"], WEBHOOK_SECRET, tolerance=None
        )
    assert sign("x", timestamp=5).startswith("t=5,v1=")


def test_nested_form_keys() -> None:
    form = nest_form(
        [
            ("line_items[0][price_data][unit_amount]", "100"),
            ("line_items[0][quantity]", "1"),
            ("line_items[1][quantity]", "2"),
            ("metadata[invoice_id]", "7"),
            ("mode", "payment"),
        ]
    )
    assert form == {
        "line_items": [{"price_data": {"unit_amount": "100"}, "quantity": "1"}, {"quantity": "2"}],
        "metadata": {"invoice_id": "7"},
        "mode": "payment",
    }


def test_runs_in_a_thread_with_the_sdk_and_a_hosted_page() -> None:
    fake = FakeStripe()
    with fake.serve_in_thread():
        client = stripe.StripeClient(
            SECRET_KEY,
            base_addresses={"api": fake.base_url},
            http_client=stripe.HTTPXClient(allow_sync_methods=True),
        )
        session = client.v1.checkout.sessions.create(
            {
                "mode": "payment",
                "line_items": [
                    {
                        "quantity": 1,
                        "price_data": {
                            "currency": "usd",
                            "unit_amount": 1234,
                            "product_data": {"name": "Invoice INV-000001"},
                        },
                    }
                ],
                "success_url": "https://example.org/done",
            },
            {"idempotency_key": "k1"},
        )
        page = httpx.get(session.url or "")

    assert session.id.startswith("cs_test_")
    assert session.amount_total == 1234
    assert fake.requests[0].idempotency_key == "k1"
    assert "<strong id='amount'>$12.34</strong>" in page.text
    assert "<button type='submit'>Pay</button>" in page.text
