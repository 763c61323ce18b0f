"""`POST /webhooks/stripe`: Stripe tells us a family's Checkout was paid (or expired, or failed).

The signature is checked with Stripe's SDK against STRIPE_WEBHOOK_SECRET, and its age against
the service's clock. A verified event is kept in the outbox, keyed on its id, with one statement,
and Stripe is answered at once (a slow answer makes Stripe retry); the outbox worker then applies
it with the settlement use case (services/stripe_settlement.py): once, by its id, in the same
transaction as the payment it records.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route
from stripe import SignatureVerificationError, WebhookSignature

from bot.jobs.worker import Handler
from bot.runtime import Runtime
from bot.web.http_edge import (
    BodyTooLarge,
    MalformedBody,
    contains_nul,
    decode_utf8,
    loads_object,
    read_body,
)
from services.stripe_settlement import REPLAY, Handled, StripeSettlement
from storage.online_payments import STRIPE_EVENT_KIND, receive_event
from workflows.online_payments import (
    CheckoutEvent,
    MalformedEvent,
    Outcome,
    read_checkout_event,
    webhook_age_problem,
)

log = logging.getLogger("devicecare.stripe")

MAX_BODY_BYTES = 512 * 1024  # Stripe's events are a few kilobytes
QUEUED = "queued"


class BadSignature(Exception):
    """The request isn't from Stripe, or not recently enough; nothing is recorded."""


def signed_at(header: str) -> int:
    """The `t=` of a Stripe-Signature header (already verified by the SDK)."""
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            return int(value)
    raise BadSignature("the Stripe-Signature header has no timestamp")


def verify_stripe_request(
    payload: bytes, header: str | None, secret: str, *, now_ts: float, tolerance: int
) -> None:
    """Raise BadSignature unless Stripe signed `payload` with `secret` within `tolerance`."""
    try:
        # The SDK's own age check reads the system clock; it is off here and done below with
        # the service's clock instead.
        WebhookSignature.verify_header(payload, header, secret, tolerance=None)
    except SignatureVerificationError as exc:
        raise BadSignature(str(exc).split(". ")[0]) from exc
    problem = webhook_age_problem(
        signed_at(header or ""), datetime.fromtimestamp(now_ts, UTC), tolerance
    )
    if problem:
        raise BadSignature(f"stale signature: {problem}")


def settlement(runtime: Runtime) -> StripeSettlement:
    """The settlement use case, configured from the runtime."""
    return StripeSettlement(
        runtime.stores,
        runtime.clock,
        runtime.settings.tz,
        currency=runtime.settings.stripe_currency,
    )


async def apply_checkout_event(runtime: Runtime, event: CheckoutEvent) -> Handled:
    """Take the event once and do what it says, all in one transaction."""
    return await settlement(runtime).apply(event)


def routes(runtime: Runtime) -> list[BaseRoute]:
    settings = runtime.settings

    async def stripe_webhook(request: Request) -> JSONResponse:
        if settings.stripe_webhook_secret is None:
            return JSONResponse({"error": "Stripe webhooks are not configured"}, status_code=503)
        try:
            payload = await read_body(request, MAX_BODY_BYTES)
            decode_utf8(payload)  # the SDK decodes it too, and would raise
        except BodyTooLarge as exc:
            log.warning("stripe webhook refused: %s", exc)
            return JSONResponse({"error": "body too large"}, status_code=413)
        except MalformedBody as exc:
            log.warning("stripe webhook refused: %s", exc)
            return JSONResponse({"error": f"unreadable body: {exc}"}, status_code=400)
        try:
            verify_stripe_request(
                payload,
                request.headers.get("stripe-signature"),
                settings.stripe_webhook_secret.get_secret_value(),
                now_ts=runtime.clock.now().timestamp(),
                tolerance=settings.stripe_webhook_tolerance_seconds,
            )
        except BadSignature as exc:
            log.warning("stripe webhook refused: %s", exc)
            return JSONResponse({"error": f"signature refused: {exc}"}, status_code=400)
        try:
            document = loads_object(payload)
            # PostgreSQL can't store a NUL: kept, the event would fail in the worker forever.
            if contains_nul(document):
                raise MalformedBody("a NUL character in the event")
            event = read_checkout_event(document)
        except (MalformedBody, MalformedEvent) as exc:
            log.warning("stripe webhook unreadable: %s", exc)
            return JSONResponse({"error": f"unreadable event: {exc}"}, status_code=400)
        if event is None:
            return JSONResponse({"received": True, "outcome": Outcome.IGNORED})
        try:
            # A Core connection: one statement needs none of the ORM session's bookkeeping.
            async with runtime.engine.begin() as conn:
                new = await receive_event(
                    conn, event_id=event.event_id, event=asdict(event), now=runtime.clock.now()
                )
        except Exception:
            # Stripe retries on a 5xx, and the event's id keeps the retry from doubling up.
            log.exception("stripe event %s could not be kept", event.event_id)
            return JSONResponse({"error": "internal error; retry later"}, status_code=500)
        return JSONResponse({"received": True, "outcome": QUEUED if new else REPLAY})

    return [Route("/webhooks/stripe", stripe_webhook, methods=["POST"])]


def outbox_handlers(runtime: Runtime) -> dict[str, Handler]:
    """The worker's handler that applies received Stripe events (failures are retried)."""

    async def apply_stripe_event(payload: dict[str, Any]) -> None:
        event = CheckoutEvent(**payload)
        handled = await apply_checkout_event(runtime, event)
        if handled.outcome in (Outcome.UNMATCHED, Outcome.EXCESS, Outcome.REJECTED):
            log.warning("stripe event %s: %s (%s)", event.event_id, handled.outcome, handled.detail)

    return {STRIPE_EVENT_KIND: apply_stripe_event}
