"""Odd bodies at /webhooks/stripe: a 4xx and one log line, never a 500 (Stripe retries those)."""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import AsyncIterator

import pytest

from storage import models as m
from tests.payments.conftest import PayHarness
from tests.stripe_fake import WEBHOOK_SECRET, sign


def _sign_bytes(body: bytes, timestamp: int) -> str:
    mac = hmac.new(WEBHOOK_SECRET.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


async def test_a_body_that_is_not_utf8_gets_400(
    payments: PayHarness, caplog: pytest.LogCaptureFixture
) -> None:
    ts = int(payments.clock.now().timestamp())
    body = b'{"id": "evt_\xff\xfe", "type": "checkout.session.completed"}'
    with caplog.at_level(logging.INFO):
        response = await payments.http.post(
            "/webhooks/stripe", content=body, headers={"Stripe-Signature": _sign_bytes(body, ts)}
        )
    assert response.status_code == 400
    assert not [r for r in caplog.records if r.exc_info]
    assert len([r for r in caplog.records if "stripe webhook" in r.getMessage()]) == 1
    assert await payments.count(m.PaymentEvent) == 0


@pytest.mark.parametrize(
    "body",
    [
        "[" * 100_000 + "]" * 100_000,
        '{"id": "evt_1", "a": ' + "[" * 1_000 + "]" * 1_000 + "}",
        '["evt_1"]',
        '"evt_1"',
    ],
)
async def test_signed_nonsense_json_gets_400(
    payments: PayHarness, body: str, caplog: pytest.LogCaptureFixture
) -> None:
    ts = int(payments.clock.now().timestamp())
    with caplog.at_level(logging.INFO):
        response = await payments.http.post(
            "/webhooks/stripe",
            content=body.encode(),
            headers={"Stripe-Signature": sign(body, timestamp=ts)},
        )
    assert response.status_code == 400
    assert not [r for r in caplog.records if r.exc_info]
    assert await payments.count(m.PaymentEvent) == 0


async def test_an_oversized_body_is_refused_before_it_is_read(payments: PayHarness) -> None:
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(30 * 16):  # 30 MB in 64 KB pieces, with no Content-Length
            sent += 64 * 1024
            yield b" " * (64 * 1024)

    response = await payments.http.post(
        "/webhooks/stripe", content=chunks(), headers={"Stripe-Signature": "t=1,v1=00"}
    )
    assert response.status_code == 413
    assert sent <= 1024 * 1024


async def test_a_declared_length_over_the_cap_is_refused(payments: PayHarness) -> None:
    body = b" " * (512 * 1024 + 1)
    response = await payments.http.post(
        "/webhooks/stripe", content=body, headers={"Stripe-Signature": "t=1,v1=00"}
    )
    assert response.status_code == 413


async def test_a_content_length_that_is_not_a_number_gets_400(payments: PayHarness) -> None:
    import httpx

    request = payments.http.build_request(
        "POST",
        "/webhooks/stripe",
        content=b"{}",
        headers={"Stripe-Signature": "t=1,v1=00"},
    )
    request.headers["Content-Length"] = "2x"
    response: httpx.Response = await payments.http.send(request)
    assert response.status_code == 400
