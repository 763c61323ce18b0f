"""`POST /family/{token}/pay`: the family page's Pay button, answered with Stripe Checkout.

The signed link names the guardian; the invoice must bill one of their students and still owe
something. An amount the page can't take, or Stripe being unreachable, shows the family page
again with the message next to that invoice's form. Otherwise the family goes to a Checkout
Session Stripe hosts (created through the official SDK, outside any database transaction),
and comes back to their page with `?paid=` or `?cancelled=1`. Nothing is paid here: the
payment is recorded when Stripe's webhook says so.
"""

from __future__ import annotations

import html
import logging

import stripe
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from bot.family_links import LinkProblem, family_url
from bot.runtime import Runtime
from bot.settings import Settings
from bot.web.family_page import (
    PayError,
    family_page_response,
    link_problem_page,
    read_form,
    read_link,
)
from bot.web.rate_limit import SlidingWindowLimiter
from storage.db_errors import DuplicateRow
from storage.online_payments import (
    family_invoice,
    new_checkout,
    record_checkout,
    reusable_checkout,
)
from workflows.online_payments import (
    CHECKOUT_REUSE_WINDOW,
    CheckoutRequest,
    PayAmountProblem,
    checkout_idempotency_key,
    checkout_session_params,
    choose_pay_amount,
)

log = logging.getLogger("devicecare.stripe")

UNAVAILABLE = (
    "Online payment is unavailable right now. Nothing was charged; please try again in a few "
    "minutes, or pay another way."
)
STRIPE_TIMEOUT_SECONDS = 20
STRIPE_RETRIES = 2  # safe: every create carries an idempotency key


def stripe_client(settings: Settings) -> stripe.StripeClient:
    """The SDK's client, pointed at STRIPE_API_BASE when one is set."""
    assert settings.stripe_secret_key is not None, "online payments are off without a key"
    base = {"api": settings.stripe_api_base.rstrip("/")} if settings.stripe_api_base else None
    return stripe.StripeClient(
        settings.stripe_secret_key.get_secret_value(),
        base_addresses=base,  # type: ignore[arg-type]
        max_network_retries=STRIPE_RETRIES,
        http_client=stripe.HTTPXClient(timeout=STRIPE_TIMEOUT_SECONDS),
    )


def family_message_page(title: str, message: str, *, back_url: str | None, status: int) -> Response:
    """A small page in the family's browser when the Pay button can't go on to Stripe."""
    back = f'<p><a href="{html.escape(back_url)}">Back to your invoices</a></p>' if back_url else ""
    body = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title></head>"
        "<body style='font-family: sans-serif; max-width: 40rem; margin: 2rem auto'>"
        f"<h1>{html.escape(title)}</h1><p role='alert'>{html.escape(message)}</p>{back}"
        "</body></html>"
    )
    return HTMLResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


def routes(runtime: Runtime) -> list[BaseRoute]:
    settings = runtime.settings
    client = stripe_client(settings) if settings.stripe_enabled else None
    # Each checkout is a call to Stripe: one family link can't start them without end.
    per_link = SlidingWindowLimiter(settings.family_page_rate_per_minute)

    async def pay(request: Request) -> Response:
        token = str(request.path_params["token"])
        page_url = family_url(settings.public_base_url, token)
        if client is None:
            return family_message_page(
                "Online payment isn't offered",
                "This district doesn't take card payments online. Your invoice email says how "
                "to pay.",
                back_url=page_url,
                status=404,
            )
        try:
            link = read_link(runtime, token)
        except LinkProblem as problem:
            return await link_problem_page(runtime, request, problem)
        verdict = per_link.check(f"guardian:{link.guardian_id}")
        if not verdict.allowed:
            return family_message_page(
                "Please wait a moment",
                f"Too many tries; please try again in {verdict.retry_after_seconds} seconds.",
                back_url=page_url,
                status=429,
            )
        form = await read_form(request)
        if form is None:
            return family_message_page(
                "Form too large", "Please try again.", back_url=page_url, status=413
            )
        invoice_text = form.get("invoice_id", "").strip()
        invoice_id = int(invoice_text) if invoice_text.isdigit() and len(invoice_text) < 12 else 0

        async with runtime.reads() as store:
            facts = await family_invoice(store, guardian_id=link.guardian_id, invoice_id=invoice_id)
        if facts is None:
            return family_message_page(
                "Invoice not found",
                "That invoice isn't one of yours. Choose it from your invoice page.",
                back_url=page_url,
                status=404,
            )
        typed = form.get("amount", "")
        try:
            amount_cents = choose_pay_amount(
                typed, balance_cents=facts.balance_cents, status=facts.status
            )
        except PayAmountProblem as problem:
            if problem.code in ("nothing_owed", "cancelled"):
                # The page shows no Pay form for such an invoice to put the message by.
                return family_message_page(
                    "Nothing to pay", problem.message, back_url=page_url, status=400
                )
            return await family_page_response(
                runtime,
                token,
                link,
                pay_error=PayError(
                    facts.invoice_id,
                    problem.message,
                    typed[:40],
                    code=problem.code,
                    amounts=problem.amounts,
                ),
                status_code=400,
            )

        now = runtime.clock.now()
        async with runtime.reads() as store:
            earlier = await reusable_checkout(
                store,
                invoice_id=facts.invoice_id,
                guardian_id=link.guardian_id,
                amount_cents=amount_cents,
                since=now - CHECKOUT_REUSE_WINDOW,
            )
        if earlier is not None and earlier.url:
            return RedirectResponse(earlier.url, status_code=303)

        checkout = CheckoutRequest(
            invoice_id=facts.invoice_id,
            invoice_number=facts.number,
            guardian_id=link.guardian_id,
            guardian_email=facts.guardian_email,
            amount_cents=amount_cents,
            currency=settings.stripe_currency.lower(),
            page_url=page_url,
        )

        async def unavailable() -> Response:
            # Stripe didn't give a checkout: the family is told to try later or pay another way.
            return await family_page_response(
                runtime,
                token,
                link,
                pay_error=PayError(facts.invoice_id, UNAVAILABLE, typed[:40], code="unavailable"),
                status_code=502,
            )

        try:
            created = await client.v1.checkout.sessions.create_async(
                checkout_session_params(checkout),  # type: ignore[arg-type]
                {"idempotency_key": checkout_idempotency_key(checkout, now)},
            )
        except stripe.StripeError as exc:
            log.error(
                "Stripe refused a checkout for invoice %s: %s (%s)",
                facts.number,
                type(exc).__name__,
                exc.user_message or exc,
            )
            return await unavailable()
        url = created.url
        if not url:
            log.error("Stripe checkout %s came back without a URL", created.id)
            return await unavailable()
        try:
            async with runtime.stores() as store:
                await record_checkout(
                    store,
                    new_checkout(
                        session_id=created.id,
                        invoice_id=facts.invoice_id,
                        guardian_id=link.guardian_id,
                        amount_cents=amount_cents,
                        url=url,
                        now=now,
                    ),
                )
                await store.commit()
        except DuplicateRow:
            # A double-click: Stripe answered both with the same session; one row holds it.
            log.info("checkout %s recorded by a parallel request", created.id)
        return RedirectResponse(url, status_code=303)

    return [Route("/family/{token}/pay", pay, methods=["POST"])]
