"""The online-payment rules on their own: amounts, the split of money received, signatures' age,
the Checkout Session we ask for and reading Stripe's events."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.stripe_fake import make_event, session_object
from workflows.online_payments import (
    CheckoutRequest,
    MalformedEvent,
    Outcome,
    PayAmountProblem,
    checkout_idempotency_key,
    checkout_session_params,
    choose_pay_amount,
    read_checkout_event,
    split_online_payment,
    webhook_age_problem,
)

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("typed", "cents"),
    [
        ("", 8_000),
        ("   ", 8_000),
        (None, 8_000),
        ("12.5", 1_250),
        ("$1,0", None),
        ("0.50", 50),
        ("80", 8_000),
        ("$ 79.99", 7_999),
    ],
)
def test_choose_pay_amount(typed: str | None, cents: int | None) -> None:
    if cents is None:
        with pytest.raises(PayAmountProblem):
            choose_pay_amount(typed, balance_cents=8_000, status="unpaid")
    else:
        assert choose_pay_amount(typed, balance_cents=8_000, status="first") == cents


@pytest.mark.parametrize(
    ("typed", "balance", "status", "code"),
    [
        ("abc", 8_000, "unpaid", "amount_invalid"),
        ("-1", 8_000, "unpaid", "amount_invalid"),
        ("1.001", 8_000, "unpaid", "amount_invalid"),
        ("0", 8_000, "unpaid", "amount_zero"),
        ("80.01", 8_000, "unpaid", "amount_over_balance"),
        ("0.49", 8_000, "unpaid", "amount_below_minimum"),
        ("", 49, "unpaid", "amount_below_minimum"),
        ("", 0, "paid", "nothing_owed"),
        ("10", 8_000, "cancelled", "cancelled"),
    ],
)
def test_choose_pay_amount_problems(typed: str, balance: int, status: str, code: str) -> None:
    with pytest.raises(PayAmountProblem) as problem:
        choose_pay_amount(typed, balance_cents=balance, status=status)
    assert problem.value.code == code
    assert problem.value.message


@pytest.mark.parametrize(
    ("amount", "balance", "status", "applied", "excess", "outcome"),
    [
        (5_000, 8_000, "unpaid", 5_000, 0, Outcome.APPLIED),
        (8_000, 8_000, "final", 8_000, 0, Outcome.APPLIED),
        (9_000, 8_000, "unpaid", 8_000, 1_000, Outcome.EXCESS),
        (2_000, 0, "paid", 0, 2_000, Outcome.EXCESS),
        (2_000, 8_000, "cancelled", 0, 2_000, Outcome.EXCESS),
    ],
)
def test_split_online_payment(
    amount: int, balance: int, status: str, applied: int, excess: int, outcome: Outcome
) -> None:
    split = split_online_payment(amount, balance_cents=balance, status=status)
    assert (split.applied_cents, split.excess_cents, split.outcome) == (applied, excess, outcome)
    assert split.applied_cents + split.excess_cents == amount


@pytest.mark.parametrize(
    ("age", "fresh"), [(0, True), (300, True), (-300, True), (301, False), (-301, False)]
)
def test_webhook_age_both_directions(age: int, fresh: bool) -> None:
    problem = webhook_age_problem(int(NOW.timestamp()) - age, NOW, 300)
    assert (problem is None) is fresh


REQUEST = CheckoutRequest(
    invoice_id=7,
    invoice_number="INV-000007",
    guardian_id=3,
    guardian_email="maria@example.org",
    amount_cents=2_550,
    currency="usd",
    page_url="https://pay.district.org/family/g3n0e1.sig",
)


def test_checkout_session_params() -> None:
    params = checkout_session_params(REQUEST)
    assert params["line_items"] == [
        {
            "quantity": 1,
            "price_data": {
                "currency": "usd",
                "unit_amount": 2_550,
                "product_data": {"name": "Invoice INV-000007"},
            },
        }
    ]
    assert params["metadata"] == {
        "invoice_id": "7",
        "invoice_number": "INV-000007",
        "guardian_id": "3",
        "amount_cents": "2550",
    }
    assert params["success_url"] == REQUEST.page_url + "?paid=INV-000007"
    assert params["cancel_url"] == REQUEST.page_url + "?cancelled=1"
    assert params["customer_email"] == "maria@example.org"
    no_email = checkout_session_params(
        CheckoutRequest(**{**REQUEST.__dict__, "guardian_email": None})
    )
    assert "customer_email" not in no_email


def test_idempotency_key_is_stable_within_a_window_only() -> None:
    key = checkout_idempotency_key(REQUEST, NOW)
    assert checkout_idempotency_key(REQUEST, NOW.replace(minute=9, second=59)) == key
    assert checkout_idempotency_key(REQUEST, NOW.replace(minute=10)) != key
    other_amount = CheckoutRequest(**{**REQUEST.__dict__, "amount_cents": 2_551})
    assert checkout_idempotency_key(other_amount, NOW) != key
    other_link = CheckoutRequest(**{**REQUEST.__dict__, "page_url": REQUEST.page_url + "x"})
    assert checkout_idempotency_key(other_link, NOW) != key


def test_read_checkout_event() -> None:
    session = session_object(
        amount_cents=1_000,
        metadata={"invoice_id": "12", "guardian_id": "4"},
        payment_intent="pi_1",
    )
    event = read_checkout_event(make_event("checkout.session.completed", session, event_id="evt_1"))
    assert event is not None
    assert (event.event_id, event.session_id, event.amount_cents) == ("evt_1", session["id"], 1_000)
    assert (event.invoice_id, event.guardian_id, event.payment_intent) == (12, 4, "pi_1")
    assert event.pays


def test_read_checkout_event_falls_back_to_client_reference() -> None:
    session = session_object(amount_cents=1_000, client_reference_id="33", payment_status="unpaid")
    event = read_checkout_event(make_event("checkout.session.completed", session))
    assert event is not None
    assert event.invoice_id == 33
    assert not event.pays


def test_read_checkout_event_ignores_other_types_and_refuses_garbage() -> None:
    assert read_checkout_event(make_event("charge.refunded", {"id": "ch_1"})) is None
    with pytest.raises(MalformedEvent):
        read_checkout_event(["not", "an", "event"])
    with pytest.raises(MalformedEvent):
        read_checkout_event(make_event("checkout.session.completed", {"id": "cs_1"}))
    with pytest.raises(MalformedEvent):
        bad = session_object(amount_cents=1_000)
        bad["amount_total"] = 10.5
        read_checkout_event(make_event("checkout.session.completed", bad))
