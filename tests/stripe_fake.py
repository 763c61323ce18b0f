"""A local stand-in for Stripe at its HTTP boundary: the Checkout Sessions API, a hosted payment
page, and webhook events signed exactly as Stripe signs them.

- `POST /v1/checkout/sessions` takes the form-encoded body the official SDK sends (nested keys
  like `line_items[0][price_data][unit_amount]`), records it with its Authorization and
  Idempotency-Key headers, and answers with a `checkout.session` whose `url` is this server's
  `/pay/{id}`. A repeated Idempotency-Key gets the first answer again, as Stripe does.
- `GET /pay/{id}` is the hosted page: the amount in `#amount` and a button named "Pay".
  `POST /pay/{id}` completes the session, POSTs a signed `checkout.session.completed` event to
  the webhook target and redirects to the session's success_url.
- `make_event`, `sign` and `signed_body` build and sign any event for webhook tests.

The webhook target is a URL (`webhook_url`, real HTTP) or an ASGI app (`webhook_app`, in the
same event loop). `serve_in_thread()` runs the server on its own loop in a thread for tests
that drive a browser synchronously; give it a `webhook_url` then.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import html
import itertools
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import httpx
from aiohttp import web

SECRET_KEY = "sk_test_devicecare_fake"
WEBHOOK_SECRET = "whsec_devicecare_fake"

_KEY_PART = re.compile(r"\[([^\]]*)\]")


# --- signing and events (what Stripe sends) -----------------------------------------------


def sign(payload: str | bytes, secret: str = WEBHOOK_SECRET, *, timestamp: int) -> str:
    """The Stripe-Signature header for `payload`: `t=<ts>,v1=<hex HMAC-SHA256 of "ts.payload">`."""
    text = payload.decode() if isinstance(payload, bytes) else payload
    mac = hmac.new(secret.encode(), f"{timestamp}.{text}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def make_event(
    kind: str, obj: dict[str, Any], *, event_id: str | None = None, created: int | None = None
) -> dict[str, Any]:
    """A Stripe event envelope around `obj` (a checkout session, usually)."""
    return {
        "id": event_id or f"evt_test_{secrets.token_hex(12)}",
        "object": "event",
        "api_version": "2024-06-20",
        "created": created if created is not None else int(time.time()),
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": kind,
        "data": {"object": obj},
    }


def signed_body(
    event: dict[str, Any], secret: str = WEBHOOK_SECRET, *, timestamp: int
) -> tuple[bytes, dict[str, str]]:
    """The body and headers Stripe would POST for `event`."""
    body = json.dumps(event, separators=(",", ":"))
    return body.encode(), {
        "Content-Type": "application/json; charset=utf-8",
        "Stripe-Signature": sign(body, secret, timestamp=timestamp),
        "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
    }


def session_object(
    *,
    session_id: str | None = None,
    amount_cents: int,
    currency: str = "usd",
    metadata: dict[str, str] | None = None,
    client_reference_id: str | None = None,
    payment_status: str = "paid",
    status: str = "complete",
    payment_intent: str | None = None,
    customer_email: str | None = None,
    success_url: str | None = None,
    cancel_url: str | None = None,
    url: str | None = None,
) -> dict[str, Any]:
    """A `checkout.session` as Stripe returns it and puts in events."""
    session_id = session_id or f"cs_test_{secrets.token_hex(16)}"
    if payment_intent is None and payment_status == "paid":
        payment_intent = f"pi_test_{secrets.token_hex(12)}"
    return {
        "id": session_id,
        "object": "checkout.session",
        "mode": "payment",
        "amount_subtotal": amount_cents,
        "amount_total": amount_cents,
        "currency": currency,
        "metadata": dict(metadata or {}),
        "client_reference_id": client_reference_id,
        "payment_status": payment_status,
        "status": status,
        "payment_intent": payment_intent,
        "customer_email": customer_email,
        "customer_details": {"email": customer_email, "name": None} if customer_email else None,
        "success_url": success_url,
        "cancel_url": cancel_url,
        "url": url,
        "livemode": False,
    }


def nest_form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """`a[b][0][c]=v` pairs (Stripe's form encoding) as nested dicts and lists."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        head = key.split("[", 1)[0]
        parts = [head, *_KEY_PART.findall(key[len(head) :])]
        node: Any = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            nxt_is_index = not last and parts[i + 1].isdigit()
            if isinstance(node, list):
                index = int(part)
                while len(node) <= index:
                    node.append(None)
                if last:
                    node[index] = value
                else:
                    if node[index] is None:
                        node[index] = [] if nxt_is_index else {}
                    node = node[index]
            else:
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, [] if nxt_is_index else {})
    return root


# --- the server ----------------------------------------------------------------------------


@dataclass
class SessionRequest:
    """One `POST /v1/checkout/sessions` as received."""

    form: dict[str, Any]
    authorization: str | None
    idempotency_key: str | None
    stripe_version: str | None


@dataclass
class Delivery:
    event: dict[str, Any]
    status: int
    body: str


@dataclass
class FakeStripe:
    secret_key: str = SECRET_KEY
    webhook_secret: str = WEBHOOK_SECRET
    webhook_url: str | None = None
    webhook_app: Any = None  # an ASGI app, called in this event loop
    # Unix seconds for signatures; tests with a fixed clock pass theirs.
    now: Callable[[], float] = time.time
    port: int = 0
    requests: list[SessionRequest] = field(default_factory=list)
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)
    _by_key: dict[str, dict[str, Any]] = field(default_factory=dict)
    _failures: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    _counter: Any = field(default_factory=lambda: itertools.count(1))
    _runner: web.AppRunner | None = None

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/checkout/sessions", self._create_session)
        app.router.add_get("/pay/{session_id}", self._hosted_page)
        app.router.add_post("/pay/{session_id}", self._pay)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @contextlib.contextmanager
    def serve_in_thread(self) -> Iterator[FakeStripe]:
        """Run the server on its own event loop in a background thread."""
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self.start())
            ready.set()
            loop.run_forever()

        thread = threading.Thread(target=run, name="fake-stripe", daemon=True)
        thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fake Stripe didn't start")
        try:
            yield self
        finally:
            asyncio.run_coroutine_threadsafe(self.stop(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            loop.close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- test helpers ---------------------------------------------------------------------

    def fail_next(
        self, status: int = 400, *, times: int = 1, message: str = "Something went wrong"
    ) -> None:
        """The next `times` session creations answer `status` with a Stripe error body."""
        kind = "invalid_request_error" if status < 500 else "api_error"
        error = {"error": {"type": kind, "message": message}}
        self._failures.extend([(status, error)] * times)

    def event_for(
        self, session_id: str, kind: str = "checkout.session.completed"
    ) -> dict[str, Any]:
        """An event about a session this server created (paid, for the completing kinds)."""
        session = dict(self.sessions[session_id])
        if kind in ("checkout.session.completed", "checkout.session.async_payment_succeeded"):
            session.update(status="complete", payment_status="paid")
            session["payment_intent"] = session.get("payment_intent") or (
                f"pi_test_{secrets.token_hex(12)}"
            )
        elif kind == "checkout.session.expired":
            session.update(status="expired", payment_status="unpaid")
        self.sessions[session_id] = session
        return make_event(kind, session, created=int(self.now()))

    async def send(self, event: dict[str, Any], *, timestamp: int | None = None) -> Delivery:
        """POST `event`, signed, to the webhook target; the answer is recorded and returned."""
        ts = int(self.now()) if timestamp is None else timestamp
        body, headers = signed_body(event, self.webhook_secret, timestamp=ts)
        if self.webhook_app is not None:
            transport = httpx.ASGITransport(app=self.webhook_app)
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
                response = await http.post("/webhooks/stripe", content=body, headers=headers)
        elif self.webhook_url is not None:
            async with httpx.AsyncClient() as http:
                response = await http.post(self.webhook_url, content=body, headers=headers)
        else:
            raise RuntimeError("no webhook target: set webhook_url or webhook_app")
        delivery = Delivery(event, response.status_code, response.text)
        self.deliveries.append(delivery)
        return delivery

    # --- handlers -------------------------------------------------------------------------

    async def _create_session(self, request: web.Request) -> web.Response:
        authorization = request.headers.get("Authorization")
        if authorization != f"Bearer {self.secret_key}":
            return web.json_response(
                {"error": {"type": "invalid_request_error", "message": "Invalid API Key"}},
                status=401,
            )
        form = nest_form(parse_qsl(await request.text(), keep_blank_values=True))
        key = request.headers.get("Idempotency-Key")
        self.requests.append(
            SessionRequest(form, authorization, key, request.headers.get("Stripe-Version"))
        )
        if self._failures:
            status, error = self._failures.pop(0)
            return web.json_response(error, status=status)
        if key and key in self._by_key:
            return web.json_response(self._by_key[key], headers={"Idempotent-Replayed": "true"})
        items = form.get("line_items") or []
        amount = sum(
            int(item["price_data"]["unit_amount"]) * int(item.get("quantity", 1)) for item in items
        )
        currency = items[0]["price_data"]["currency"] if items else "usd"
        session_id = f"cs_test_{next(self._counter):04d}{secrets.token_hex(10)}"
        session = session_object(
            session_id=session_id,
            amount_cents=amount,
            currency=currency,
            metadata=form.get("metadata") or {},
            client_reference_id=form.get("client_reference_id"),
            payment_status="unpaid",
            status="open",
            customer_email=form.get("customer_email"),
            success_url=form.get("success_url"),
            cancel_url=form.get("cancel_url"),
            url=f"{self.base_url}/pay/{session_id}",
        )
        session["line_items_requested"] = items
        self.sessions[session_id] = session
        if key:
            self._by_key[key] = session
        return web.json_response(session)

    async def _hosted_page(self, request: web.Request) -> web.Response:
        session = self.sessions.get(request.match_info["session_id"])
        if session is None:
            return web.Response(status=404, text="No such checkout session")
        cents = int(session["amount_total"])
        dollars = f"${cents // 100:,}.{cents % 100:02d}"
        names = ", ".join(
            html.escape(str(item["price_data"]["product_data"]["name"]))
            for item in session.get("line_items_requested") or []
        )
        page = (
            "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<title>Pay (test mode)</title></head><body>"
            f"<h1>{names or 'Checkout'}</h1>"
            f"<p>Total <strong id='amount'>{dollars}</strong> "
            f"{html.escape(str(session['currency']).upper())}</p>"
            "<form method='post'><button type='submit'>Pay</button></form>"
            f"<p><a href='{html.escape(str(session.get('cancel_url') or ''))}'>Cancel</a></p>"
            "</body></html>"
        )
        return web.Response(text=page, content_type="text/html")

    async def _pay(self, request: web.Request) -> web.Response:
        session_id = request.match_info["session_id"]
        if session_id not in self.sessions:
            return web.Response(status=404, text="No such checkout session")
        delivery = await self.send(self.event_for(session_id))
        if delivery.status >= 300:
            return web.Response(
                status=502, text=f"webhook answered {delivery.status}: {delivery.body}"
            )
        raise web.HTTPSeeOther(self.sessions[session_id]["success_url"])
