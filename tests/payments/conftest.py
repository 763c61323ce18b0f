"""The real web app (SQLite or PostgreSQL) with Stripe played by the local stand-in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.family_links import make_family_token
from bot.jobs.worker import OutboxWorker
from bot.runtime import Runtime, build_runtime
from bot.settings import Settings
from bot.web.app import create_web_app
from bot.web.stripe_webhooks import outbox_handlers
from storage import models as m
from tests.integration.billing_helpers import add_family, add_invoice
from tests.stripe_fake import SECRET_KEY, WEBHOOK_SECRET, FakeStripe, session_object, signed_body
from workflows.clock import FixedClock, local_date

BASE_URL = "http://devicecare.test"
APP_SECRET = "test-secret-key"
TOLERANCE = 300
BILLING_CHANNEL = "C_BILLING"


@dataclass
class Family:
    student_id: int
    guardian_id: int


@dataclass
class Posted:
    """A webhook delivery's answer, and what applying the event did (its payment_events
    outcome; "replay" for an event received before; None when it was refused)."""

    response: httpx.Response
    outcome: str | None

    @property
    def status_code(self) -> int:
        return self.response.status_code

    def json(self) -> Any:
        return self.response.json()


@dataclass
class PayHarness:
    runtime: Runtime
    fake: FakeStripe
    http: httpx.AsyncClient
    clock: FixedClock
    rivera: Family
    chen: Family
    worker: OutboxWorker
    applying: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def apply_events(self) -> int:
        """Run the outbox worker's Stripe handler until no received event is left."""
        total = 0
        async with self.applying:
            while handled := await self.worker.run_once():
                total += handled
        return total

    def today(self) -> date:
        return local_date(self.clock.now(), self.runtime.settings.tz)

    def token(self, guardian_id: int, *, days: int = 30) -> str:
        return make_family_token(guardian_id, None, self.today() + timedelta(days=days), APP_SECRET)

    async def invoice(self, family: Family, total_cents: int = 10_000, **kwargs: Any) -> int:
        return await add_invoice(
            self.runtime.stores,
            family.student_id,
            created=self.today(),
            due=self.today() + timedelta(days=30),
            total_cents=total_cents,
            **kwargs,
        )

    async def pay(self, token: str, **form: str) -> httpx.Response:
        return await self.http.post(f"/family/{token}/pay", data=form)

    async def post_event(
        self, event: dict[str, Any], *, timestamp: int | None = None, apply: bool = True
    ) -> Posted:
        """Deliver `event` signed, as Stripe does, then (unless `apply` is False) let the
        worker apply what was received."""
        ts = int(self.clock.now().timestamp()) if timestamp is None else timestamp
        body, headers = signed_body(event, WEBHOOK_SECRET, timestamp=ts)
        response = await self.http.post("/webhooks/stripe", content=body, headers=headers)
        if apply:
            await self.apply_events()
        return Posted(response, await self.outcome_of(response, event))

    async def outcome_of(self, response: httpx.Response, event: dict[str, Any]) -> str | None:
        if response.status_code != 200:
            return None
        answered = str(response.json()["outcome"])
        if answered != "queued":
            return answered
        async with self.runtime.reads() as store:
            stmt = select(m.PaymentEvent.outcome).where(
                m.PaymentEvent.source == "stripe", m.PaymentEvent.event_id == event["id"]
            )
            applied = (await store.session.execute(stmt)).scalar_one_or_none()
        return applied or answered

    def paid_session(
        self, invoice_id: int | None, amount_cents: int, **kwargs: Any
    ) -> dict[str, Any]:
        """A paid checkout session naming `invoice_id` as our Pay button would have."""
        metadata = (
            {}
            if invoice_id is None
            else {
                "invoice_id": str(invoice_id),
                "amount_cents": str(amount_cents),
                "guardian_id": str(self.rivera.guardian_id),
            }
        )
        return session_object(amount_cents=amount_cents, metadata=metadata, **kwargs)

    async def count(self, model: Any, *where: Any) -> int:
        async with self.runtime.reads() as store:
            stmt = select(func.count()).select_from(model).where(*where)
            return int((await store.session.execute(stmt)).scalar_one())

    async def rows(self, model: Any, *where: Any) -> list[Any]:
        async with self.runtime.reads() as store:
            stmt = select(model).where(*where).order_by(model.id)
            return list((await store.session.execute(stmt)).scalars())

    async def get(self, model: Any, ident: int) -> Any:
        async with self.runtime.reads() as store:
            return await store.session.get(model, ident)


@pytest.fixture
async def payments(
    engine: AsyncEngine, database_url: str, clock: FixedClock, tmp_path: Path
) -> AsyncIterator[PayHarness]:
    fake = FakeStripe(now=lambda: clock.now().timestamp())
    await fake.start()
    settings = Settings(
        _env_file=None,
        database_url=database_url,
        blob_dir=tmp_path / "blobs",
        public_base_url=BASE_URL,
        secret_key=APP_SECRET,
        stripe_secret_key=SECRET_KEY,
        stripe_webhook_secret=WEBHOOK_SECRET,
        stripe_api_base=fake.base_url,
        stripe_webhook_tolerance_seconds=TOLERANCE,
        slack_billing_channel=BILLING_CHANNEL,
    )
    runtime = build_runtime(settings, clock)
    app = create_web_app(runtime)
    fake.webhook_app = app
    (rivera_students, rivera_guardians) = await add_family(runtime.stores, "Rivera")
    (chen_students, chen_guardians) = await add_family(runtime.stores, "Chen")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
        yield PayHarness(
            runtime,
            fake,
            http,
            clock,
            Family(rivera_students[0], rivera_guardians[0]),
            Family(chen_students[0], chen_guardians[0]),
            OutboxWorker(runtime.stores, clock, outbox_handlers(runtime)),
        )
    await runtime.close()
    await fake.stop()


def outbox_of(kind: str) -> Any:
    return m.OutboxMessage.kind == kind
