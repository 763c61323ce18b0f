"""Fuzzing /webhooks/stripe: events signed with the webhook secret as Stripe signs them, of
any type, about checkout sessions naming our invoices or nothing, with any field bent; and
bodies the route must refuse. Each case: no 5xx, no logged traceback, nothing changed when
refused; a kept event is applied by the outbox worker without failing, and the ledger adds
up after."""

from __future__ import annotations

import httpx
from hypothesis import given
from sqlalchemy import select

from bot.jobs.worker import OutboxWorker
from bot.web.stripe_webhooks import outbox_handlers
from storage import models as m
from storage.online_payments import STRIPE_EVENT_KIND
from tests.fuzz.http_harness import (
    FuzzApp,
    fuzz_app,  # noqa: F401 - the module's app
    fuzz_settings,
)
from tests.fuzz.http_strategies import StripeCase, stripe_requests
from tests.stripe_fake import WEBHOOK_SECRET

# The harness's clock stands still at tests.conftest.NOW; signatures are made for it.
from tests.conftest import NOW  # noqa: E402  isort: skip

IDS = tuple(range(1, 7))


async def _failed_events(app: FuzzApp) -> dict[int, str]:
    async with app.runtime.reads() as store:
        rows = await store.session.execute(
            select(m.OutboxMessage.id, m.OutboxMessage.last_error).where(
                m.OutboxMessage.kind == STRIPE_EVENT_KIND, m.OutboxMessage.last_error.is_not(None)
            )
        )
        return {row.id: str(row.last_error) for row in rows}


@fuzz_settings(300)
@given(case=stripe_requests(WEBHOOK_SECRET, int(NOW.timestamp()), IDS))
def test_stripe_webhook(fuzz_app: FuzzApp, case: StripeCase) -> None:  # noqa: F811
    app = fuzz_app
    worker = OutboxWorker(app.runtime.stores, app.runtime.clock, outbox_handlers(app.runtime))

    failed: dict[int, str] = {}

    async def send() -> httpx.Response:
        before = await _failed_events(app)
        response = await app.http.post("/webhooks/stripe", content=case.body, headers=case.headers)
        # What the worker does next with a kept event is part of the answer's consequences:
        # applying it must not fail (a failure is retried, and logged, again and again).
        while await worker.run_once():
            pass
        failed.update({k: v for k, v in (await _failed_events(app)).items() if k not in before})
        return response

    answer = app.run(app.check(send, describe=f"{case.what}: {case.body[:600]!r}"))
    if not case.signed:
        assert 400 <= answer.status < 500, case.what
    assert not failed, f"{case.body[:600]!r}: {failed}"
