"""The Pay button: a Checkout Session made through Stripe's SDK against the local stand-in."""

from __future__ import annotations

import html

import httpx
import pytest

from storage import models as m
from tests.payments.conftest import BASE_URL, PayHarness
from tests.stripe_fake import SECRET_KEY


def shown(response: httpx.Response) -> str:
    return html.unescape(response.text)


async def test_full_balance_checkout_redirects_to_stripe(payments: PayHarness) -> None:
    invoice_id = await payments.invoice(payments.rivera, 12_550)
    invoice = await payments.get(m.Invoice, invoice_id)
    token = payments.token(payments.rivera.guardian_id)

    response = await payments.pay(token, invoice_id=str(invoice_id), amount="")

    assert response.status_code == 303
    [sent] = payments.fake.requests
    assert sent.authorization == f"Bearer {SECRET_KEY}"
    assert sent.idempotency_key
    form = sent.form
    assert form["mode"] == "payment"
    [item] = form["line_items"]
    assert item["quantity"] == "1"
    assert item["price_data"] == {
        "currency": "usd",
        "unit_amount": "12550",
        "product_data": {"name": f"Invoice {invoice.number}"},
    }
    assert form["client_reference_id"] == str(invoice_id)
    assert form["metadata"] == {
        "invoice_id": str(invoice_id),
        "invoice_number": invoice.number,
        "guardian_id": str(payments.rivera.guardian_id),
        "amount_cents": "12550",
    }
    page = f"{BASE_URL}/family/{token}"
    assert form["success_url"] == f"{page}?paid={invoice.number}"
    assert form["cancel_url"] == f"{page}?cancelled=1"
    assert form["customer_email"] == "rivera0@example.org"

    [session_id] = payments.fake.sessions
    assert response.headers["location"] == f"{payments.fake.base_url}/pay/{session_id}"
    [checkout] = await payments.rows(m.OnlineCheckout)
    assert (checkout.session_id, checkout.invoice_id, checkout.guardian_id) == (
        session_id,
        invoice_id,
        payments.rivera.guardian_id,
    )
    assert (checkout.amount_cents, checkout.status) == (12_550, "open")
    assert checkout.url == response.headers["location"]
    # Nothing is paid until Stripe says so.
    assert await payments.count(m.Payment) == 0


async def test_partial_amount_is_charged(payments: PayHarness) -> None:
    invoice_id = await payments.invoice(payments.rivera, 10_000, paid_cents=2_000)
    token = payments.token(payments.rivera.guardian_id)

    response = await payments.pay(token, invoice_id=str(invoice_id), amount="$12.50")

    assert response.status_code == 303
    [sent] = payments.fake.requests
    assert sent.form["line_items"][0]["price_data"]["unit_amount"] == "1250"
    assert sent.form["metadata"]["amount_cents"] == "1250"
    [checkout] = await payments.rows(m.OnlineCheckout)
    assert checkout.amount_cents == 1250


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ("twelve", "isn't a valid amount"),
        ("12.5.0", "isn't a valid amount"),
        ("1e3", "isn't a valid amount"),
        ("nan", "isn't a valid amount"),
        ("-5", "negative"),
        ("0", "more than $0.00"),
        ("0.00", "more than $0.00"),
        ("10.005", "more than two decimal places"),
        ("80.01", "more than the $80.00 still owed"),
        ("0.49", "at least $0.50"),
    ],
)
async def test_bad_amounts_are_refused_and_nothing_is_created(
    payments: PayHarness, typed: str, says: str
) -> None:
    invoice_id = await payments.invoice(payments.rivera, 10_000, paid_cents=2_000)
    token = payments.token(payments.rivera.guardian_id)

    response = await payments.pay(token, invoice_id=str(invoice_id), amount=typed)

    # The family page again, the message by that invoice's form and the amount shown back.
    assert response.status_code == 400
    page = shown(response)
    assert f'id="amount-{invoice_id}-error"' in page
    assert says in page
    assert f'value="{typed}"' in page
    assert f'action="/family/{token}/pay"' in page
    assert payments.fake.requests == []
    assert await payments.count(m.OnlineCheckout) == 0


async def test_a_balance_under_the_minimum_is_not_sent_to_stripe(payments: PayHarness) -> None:
    invoice_id = await payments.invoice(payments.rivera, 1_000, paid_cents=970)

    response = await payments.pay(
        payments.token(payments.rivera.guardian_id), invoice_id=str(invoice_id)
    )

    assert response.status_code == 400
    assert "at least $0.50" in shown(response)
    assert payments.fake.requests == []


async def test_paid_and_cancelled_invoices_take_no_payment(payments: PayHarness) -> None:
    paid = await payments.invoice(payments.rivera, 5_000, paid_cents=5_000, status="paid")
    cancelled = await payments.invoice(payments.rivera, 5_000, status="cancelled")
    token = payments.token(payments.rivera.guardian_id)

    first = await payments.pay(token, invoice_id=str(paid))
    second = await payments.pay(token, invoice_id=str(cancelled))

    assert first.status_code == second.status_code == 400
    assert "already paid in full" in shown(first)
    assert "cancelled" in shown(second)
    assert f'href="{BASE_URL}/family/{token}"' in first.text
    assert payments.fake.requests == []


async def test_another_familys_invoice_is_not_found(payments: PayHarness) -> None:
    theirs = await payments.invoice(payments.chen, 10_000)

    response = await payments.pay(
        payments.token(payments.rivera.guardian_id), invoice_id=str(theirs)
    )
    missing = await payments.pay(payments.token(payments.rivera.guardian_id), invoice_id="999999")
    garbage = await payments.pay(payments.token(payments.rivera.guardian_id), invoice_id="1; --")

    assert response.status_code == missing.status_code == garbage.status_code == 404
    assert "isn't one of yours" in shown(response)
    assert payments.fake.requests == []
    assert await payments.count(m.OnlineCheckout) == 0


async def test_altered_and_expired_links_are_refused(payments: PayHarness) -> None:
    invoice_id = await payments.invoice(payments.rivera, 10_000)
    token = payments.token(payments.rivera.guardian_id)
    altered = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    expired = payments.token(payments.rivera.guardian_id, days=-1)

    bad = await payments.pay(altered, invoice_id=str(invoice_id))
    old = await payments.pay(expired, invoice_id=str(invoice_id))

    assert bad.status_code == 404
    assert old.status_code == 410
    assert payments.fake.requests == []


async def test_a_double_click_opens_one_checkout(payments: PayHarness) -> None:
    invoice_id = await payments.invoice(payments.rivera, 10_000)
    token = payments.token(payments.rivera.guardian_id)

    first = await payments.pay(token, invoice_id=str(invoice_id), amount="25")
    payments.clock.advance(seconds=3)
    second = await payments.pay(token, invoice_id=str(invoice_id), amount="25.00")
    other_amount = await payments.pay(token, invoice_id=str(invoice_id), amount="30")

    assert first.headers["location"] == second.headers["location"]
    assert other_amount.headers["location"] != first.headers["location"]
    assert len(payments.fake.sessions) == 2
    assert await payments.count(m.OnlineCheckout) == 2


async def test_racing_clicks_share_stripes_session(payments: PayHarness) -> None:
    import asyncio

    invoice_id = await payments.invoice(payments.rivera, 10_000)
    token = payments.token(payments.rivera.guardian_id)

    answers = await asyncio.gather(
        *(payments.pay(token, invoice_id=str(invoice_id)) for _ in range(4))
    )

    assert {a.status_code for a in answers} == {303}
    assert len({a.headers["location"] for a in answers}) == 1
    # Every request reached Stripe with the same key, and Stripe answered with one session.
    assert len({r.idempotency_key for r in payments.fake.requests}) == 1
    assert len(payments.fake.sessions) == 1
    assert await payments.count(m.OnlineCheckout) == 1


async def test_stripe_failure_tells_the_family_nothing_was_charged(payments: PayHarness) -> None:
    invoice_id = await payments.invoice(payments.rivera, 10_000)
    payments.fake.fail_next(500, times=5)

    response = await payments.pay(
        payments.token(payments.rivera.guardian_id), invoice_id=str(invoice_id)
    )

    assert response.status_code == 502
    assert f'id="amount-{invoice_id}-error"' in response.text
    assert "unavailable right now" in shown(response)
    assert "Nothing was charged" in shown(response)
    assert await payments.count(m.OnlineCheckout) == 0


async def test_a_refused_api_key_is_a_clear_page_too(payments: PayHarness) -> None:
    invoice_id = await payments.invoice(payments.rivera, 10_000)
    payments.fake.secret_key = "sk_test_rotated"

    response = await payments.pay(
        payments.token(payments.rivera.guardian_id), invoice_id=str(invoice_id)
    )

    assert response.status_code == 502
    assert "Nothing was charged" in shown(response)


async def test_one_link_cannot_start_checkouts_without_end(payments: PayHarness) -> None:
    token = payments.token(payments.rivera.guardian_id)
    limit = payments.runtime.settings.family_page_rate_per_minute
    answers = [(await payments.pay(token, invoice_id="0")).status_code for _ in range(limit)]

    over = await payments.pay(token, invoice_id="0")
    other_family = await payments.pay(payments.token(payments.chen.guardian_id), invoice_id="0")

    assert set(answers) == {404}
    assert over.status_code == 429
    assert other_family.status_code == 404


async def test_a_spanish_speaking_family_is_told_in_spanish(payments: PayHarness) -> None:
    async with payments.runtime.stores() as store:
        guardian = await store.session.get(m.Guardian, payments.rivera.guardian_id)
        assert guardian is not None
        guardian.preferred_language = "es"
        await store.commit()
    invoice_id = await payments.invoice(payments.rivera, 10_000, paid_cents=2_000)
    token = payments.token(payments.rivera.guardian_id)

    over = await payments.pay(token, invoice_id=str(invoice_id), amount="80.01")
    unreadable = await payments.pay(token, invoice_id=str(invoice_id), amount="doce")
    payments.fake.fail_next(500, times=5)
    down = await payments.pay(token, invoice_id=str(invoice_id))

    assert (over.status_code, unreadable.status_code, down.status_code) == (400, 400, 502)
    assert "$80.01 es más de los $80.00 que se deben en esta factura." in shown(over)
    assert "Escriba la cantidad en dólares" in shown(unreadable)
    assert "No se cobró nada" in shown(down)
    assert "still owed" not in shown(over)
    assert await payments.count(m.OnlineCheckout) == 0
