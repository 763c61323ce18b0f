"""`POST /webhooks/stripe`: Stripe tells us a family's Checkout was paid (or expired, or failed).

The signature is checked with Stripe's SDK against STRIPE_WEBHOOK_SECRET, and its age against
the service's clock. A verified event is kept in the outbox, keyed on its id, with one statement,
and Stripe is answered at once (a slow answer makes Stripe retry); the outbox worker then applies
it. Applying takes the event once, by its id, in the same transaction as the payment it records,
the receipt it queues and the Slack posts it causes; a replayed event, or a second event about
the same checkout, changes nothing. Money that doesn't fit the invoice (paid
already, cancelled, more than owed, no invoice at all) is never dropped: the event says so and
the billing channel is told what to refund.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
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
from storage import models as m
from storage.online_payments import (
    STRIPE_EVENT_KIND,
    checkout_by_session,
    claim_event,
    lock_invoice,
    new_checkout,
    queue_payment_alert,
    queue_payment_post,
    receive_event,
    record_event_outcome,
)
from storage.uow import SqlUnitOfWork
from workflows.errors import DuplicateReference
from workflows.invoices import InvoiceStatus, balance_of
from workflows.money import format_cents
from workflows.online_payments import (
    ENDING_EVENTS,
    STRIPE_ACTOR,
    STRIPE_SOURCE,
    CheckoutEvent,
    CheckoutStatus,
    MalformedEvent,
    Outcome,
    excess_alert_text,
    paid_online_text,
    read_checkout_event,
    split_online_payment,
    unmatched_alert_text,
    webhook_age_problem,
)
from workflows.payments import PaymentMethod, RecordPayment, record_payment
from workflows.permissions import Actor
from workflows.ports import Context

log = logging.getLogger("devicecare.stripe")

MAX_BODY_BYTES = 512 * 1024  # Stripe's events are a few kilobytes
REPLAY = "replay"
QUEUED = "queued"
# A unique key another transaction took first (an outbox alert, a checkout row): the retry
# sees its commit and does the right thing.
ATTEMPTS = 3


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


@dataclass
class Handled:
    outcome: str  # an Outcome, or "replay"
    detail: str = ""
    invoice_id: int | None = None
    payment_id: int | None = None


async def apply_checkout_event(runtime: Runtime, event: CheckoutEvent) -> Handled:
    """Take the event once and do what it says, all in one transaction."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return await _apply_once(runtime, event)
        except IntegrityError:
            if attempt == ATTEMPTS:
                raise
            log.info("stripe event %s met a concurrent change; retrying", event.event_id)
    raise AssertionError("unreachable")


async def _apply_once(runtime: Runtime, event: CheckoutEvent) -> Handled:
    now = runtime.clock.now()
    async with runtime.stores() as store:
        row_id = await claim_event(
            store.session,
            source=STRIPE_SOURCE,
            event_id=event.event_id,
            kind=event.kind,
            amount_cents=event.amount_cents,
            now=now,
        )
        if row_id is None:
            await store.commit()
            return Handled(REPLAY)
        handled = await _settle(runtime, store, event)
        await record_event_outcome(
            store.session,
            row_id,
            outcome=handled.outcome,
            detail=f"checkout {event.session_id}: {handled.detail}",
            invoice_id=handled.invoice_id,
            payment_id=handled.payment_id,
        )
        await store.commit()
        return handled


async def _settle(runtime: Runtime, store: SqlUnitOfWork, event: CheckoutEvent) -> Handled:
    session = store.session
    now = runtime.clock.now()
    invoice_id = event.invoice_id
    if invoice_id is None:
        started = await checkout_by_session(session, event.session_id)
        invoice_id = None if started is None else started.invoice_id
    # The invoice lock serialises every event about it; what is read after it is current.
    invoice = None if invoice_id is None else await lock_invoice(store, invoice_id)
    checkout = await checkout_by_session(session, event.session_id, fresh=True)
    on_invoice = None if invoice is None else invoice.id

    ending = ENDING_EVENTS.get(event.kind)
    if ending is not None:
        if checkout is None or checkout.status != CheckoutStatus.OPEN:
            return Handled(Outcome.IGNORED, f"{ending.value}; no open checkout", on_invoice)
        checkout.status = ending.value
        checkout.completed_at = now
        return Handled(Outcome.APPLIED, f"checkout {ending.value}; nothing was paid", on_invoice)
    if not event.pays:
        status = event.payment_status or "missing"
        return Handled(Outcome.IGNORED, f"payment status {status}", on_invoice)
    if event.amount_cents <= 0:
        return Handled(Outcome.IGNORED, "nothing was charged", on_invoice)

    reference = event.payment_intent or event.session_id
    if invoice is None:
        await queue_payment_alert(
            store,
            key=event.session_id,
            text=unmatched_alert_text(
                received_cents=event.amount_cents, session_id=event.session_id, reference=reference
            ),
        )
        return Handled(Outcome.UNMATCHED, f"no invoice #{invoice_id or '?'}")

    currency = runtime.settings.stripe_currency.lower()
    if event.currency != currency:
        await queue_payment_alert(
            store,
            key=event.session_id,
            invoice_id=invoice.id,
            text=excess_alert_text(
                invoice_number=invoice.number,
                received_cents=event.amount_cents,
                excess_cents=event.amount_cents,
                reason=f"was in {event.currency.upper() or 'no currency'}, not {currency.upper()}",
                reference=reference,
            ),
        )
        return Handled(Outcome.REJECTED, f"currency {event.currency or 'missing'}", on_invoice)

    # The first paying event marks the checkout paid (creating its row if the Pay button
    # didn't), in the same commit as the payment: a later event about it finds that here.
    if checkout is not None and checkout.status == CheckoutStatus.PAID:
        return Handled(
            Outcome.IGNORED,
            "this checkout was settled by an earlier event",
            on_invoice,
            checkout.payment_id,
        )

    split = split_online_payment(
        event.amount_cents, balance_cents=balance_of(invoice), status=invoice.status
    )
    actor = Actor.system(STRIPE_ACTOR)
    payment_id: int | None = None
    if split.applied_cents:
        try:
            recorded = await record_payment(
                Context(store, runtime.clock, runtime.settings.tz),
                actor,
                RecordPayment(
                    invoice_id=invoice.id,
                    amount_cents=split.applied_cents,
                    method=PaymentMethod.ONLINE,
                    idempotency_key=f"stripe:{event.session_id}",
                    reference=reference,
                ),
            )
        except DuplicateReference as exc:
            # Staff recorded this Stripe payment by hand first: it is not applied again, and
            # answering 200 stops Stripe redelivering it.
            return Handled(Outcome.IGNORED, exc.message, on_invoice)
        payment_id = recorded.payment.id
        await queue_payment_post(
            store,
            invoice_id=invoice.id,
            payment_id=payment_id,
            text=paid_online_text(
                amount_cents=split.applied_cents,
                payer=await _payer(store, event),
                reference=reference,
                balance_cents=balance_of(invoice),
            ),
        )
    if split.excess_cents:
        if invoice.status == InvoiceStatus.CANCELLED:
            reason = "arrived after the invoice was cancelled"
        elif split.applied_cents:
            reason = f"was more than the balance; {format_cents(split.applied_cents)} was applied"
        else:
            reason = "arrived after the invoice was paid in full"
        await queue_payment_alert(
            store,
            key=event.session_id,
            invoice_id=invoice.id,
            text=excess_alert_text(
                invoice_number=invoice.number,
                received_cents=event.amount_cents,
                excess_cents=split.excess_cents,
                reason=reason,
                reference=reference,
            ),
        )
        await store.activity.log(
            actor,
            "invoice",
            invoice.id,
            "online_payment_excess",
            after={
                "received_cents": event.amount_cents,
                "applied_cents": split.applied_cents,
                "excess_cents": split.excess_cents,
                "reference": reference,
            },
        )
    if checkout is None:
        checkout = new_checkout(
            session_id=event.session_id,
            invoice_id=invoice.id,
            guardian_id=event.guardian_id if await _guardian_exists(store, event) else None,
            amount_cents=event.amount_cents,
            url=None,
            now=now,
            status=CheckoutStatus.PAID,
        )
        session.add(checkout)
    checkout.status = CheckoutStatus.PAID
    checkout.completed_at = now
    checkout.payment_id = payment_id
    detail = f"applied {split.applied_cents} cents"
    if split.excess_cents:
        detail += f", {split.excess_cents} cents to refund"
    return Handled(split.outcome, detail, on_invoice, payment_id)


async def _guardian_exists(store: SqlUnitOfWork, event: CheckoutEvent) -> bool:
    return event.guardian_id is not None and (
        await store.session.get(m.Guardian, event.guardian_id) is not None
    )


async def _payer(store: SqlUnitOfWork, event: CheckoutEvent) -> str:
    if event.guardian_id is not None:
        guardian = await store.session.get(m.Guardian, event.guardian_id)
        if guardian is not None:
            return guardian.full_name
    return event.payer or "a family"


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
