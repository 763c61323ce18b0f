"""One real DeviceCare web app for the HTTP fuzz tests: Slack, Stripe and the family page on,
a small district in a real database (SQLite or PostgreSQL), Slack and Stripe played by the
local stand-ins the other tests use.

Hypothesis runs examples synchronously, so the app lives on an event loop of its own
(`asyncio.Runner`), built once per test module and reused by every example; each example
runs on that loop with `FuzzApp.run`.

For every example `FuzzApp.check` asserts the properties the suite stands for: no 5xx, no
logged traceback, nothing changed by a refused request, and the ledger still adds up.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from hypothesis import HealthCheck, settings
from sqlalchemy import func, literal, select, union_all

from bot.family_links import make_family_token
from bot.runtime import Runtime, build_runtime
from bot.settings import Settings
from bot.slack.app import build_slack_app
from bot.slack.client import close_web_client
from bot.slack.ids import SlackPostKind
from bot.web.app import create_web_app
from storage import models as m
from storage.db import create_engine
from storage.reconcile import discrepancies
from storage.seed import ensure_defaults
from tests.builders import add_district, add_staff
from tests.conftest import NOW, _empty_postgres
from tests.slack.conftest import _settle
from tests.slack.fake_api import BOT_TOKEN, FakeSlack
from tests.slack.signing import SIGNING_SECRET
from tests.stripe_fake import SECRET_KEY, WEBHOOK_SECRET, FakeStripe
from workflows.adjustments import apply_waiver
from workflows.clock import FixedClock, local_date
from workflows.incidents import OpenIncident, open_incident
from workflows.invoices import InvoiceKind, IssueInvoice, issue_invoice
from workflows.payments import PaymentMethod, RecordPayment, record_payment
from workflows.permissions import Actor
from workflows.ports import Context, InvoiceLineSpec

T = TypeVar("T")

APP_SECRET = "fuzz-secret-key"
TEAM_ID = "T_DISTRICT"
APP_ID = "A_DEVICECARE"
INCIDENTS_CHANNEL = "C_INCIDENTS"
APPROVALS_CHANNEL = "C_APPROVALS"
BILLING_CHANNEL = "C_BILLING"
BASE_URL = "https://devicecare.test"


def fuzz_settings(default: int) -> settings:
    """Hypothesis settings for one fuzz test: `default` cases in the test command (on each
    database), FUZZ_EXAMPLES cases for a longer run. Examples share one app, and a case may
    wait for Slack listeners, so there is no per-case deadline."""
    return settings(
        max_examples=int(os.environ.get("FUZZ_EXAMPLES", default)),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# --- what the district holds ------------------------------------------------------------------


@dataclass(frozen=True)
class Seeded:
    """Ids of the small district every fuzz module starts from."""

    guardian_id: int
    other_guardian_id: int
    student_id: int
    device_id: int
    incident_id: int
    invoice_ids: tuple[int, ...]
    payment_id: int
    staff: dict[str, str]  # Slack user id -> role


STAFF_ROLES = {
    "U_ADMIN": "SuperAdmin",
    "U_TECH": "Technician",
    "U_CLERK": "Billing Clerk",
    "U_DIRECTOR": "Finance Director",
    "U_DESK": "Front Desk",
}


async def seed_district(runtime: Runtime, fake: FakeSlack) -> Seeded:
    """A school, a family with a device and an incident, two invoices (one part paid and part
    waived), a second family with nothing owed, and a staff member of each role."""
    stores, clock, tz = runtime.stores, runtime.clock, runtime.settings.tz
    district = await add_district(stores)
    actors: dict[str, Actor] = {}
    for slack_id, role in STAFF_ROLES.items():
        email = f"{slack_id.lower()}@district.org"
        actor = await add_staff(stores, role, email)
        async with stores() as store:
            staff = await store.session.get(m.Staff, actor.staff_id)
            assert staff is not None
            staff.slack_user_id = slack_id
            await store.commit()
        fake.add_user(slack_id, email, actor.name)
        actors[slack_id] = actor
    admin = actors["U_ADMIN"]
    today = local_date(clock.now(), tz)
    async with stores() as store:
        ctx = Context(store, clock, tz)
        opened = await open_incident(
            ctx,
            admin,
            OpenIncident(
                device_id=district.device_id,
                occurred_on=today - timedelta(days=3),
                flags=("screen",),
                description="Cracked screen",
            ),
        )
        incident_id = opened.incident.id
        await store.slack_posts.save(
            SlackPostKind.INCIDENT_CARD, incident_id, INCIDENTS_CHANNEL, "1699999999.000001"
        )
        await store.commit()
    invoice_ids = []
    for cents in (12_500, 4_000):
        async with stores() as store:
            created = await issue_invoice(
                Context(store, clock, tz),
                admin,
                IssueInvoice(
                    student_id=district.student_id,
                    kind=InvoiceKind.FEE,
                    lines=(InvoiceLineSpec(description="Repair", kind="fee", unit_cents=cents),),
                    due_date=today + timedelta(days=30),
                    device_id=district.device_id,
                ),
            )
            invoice_ids.append(created.invoice.id)
            await store.commit()
    async with stores() as store:
        paid = await record_payment(
            Context(store, clock, tz),
            admin,
            RecordPayment(
                invoice_ids[0], 5_000, PaymentMethod.CASH, idempotency_key="fuzz:seed:pay"
            ),
        )
        payment_id = paid.payment.id
        await store.commit()
    async with stores() as store:
        invoice = await store.invoices.get(invoice_ids[0], lock=True)
        assert invoice is not None
        await apply_waiver(Context(store, clock, tz), admin, invoice, 1_000, "Hardship")
        await store.commit()
    async with stores() as store:
        other = m.Guardian(first_name="Lee", last_name="Chen", email="lee@example.org")
        store.session.add(other)
        await store.session.flush()
        other_id = other.id
        await store.commit()
    return Seeded(
        guardian_id=district.guardian_id,
        other_guardian_id=other_id,
        student_id=district.student_id,
        device_id=district.device_id,
        incident_id=incident_id,
        invoice_ids=tuple(invoice_ids),
        payment_id=payment_id,
        staff=dict(STAFF_ROLES),
    )


# --- what a request may change ----------------------------------------------------------------

# A refusal is audited (activity_log); everything else must stand still when a request is
# refused.
UNCOUNTED = frozenset({"activity_log"})

MONEY_COLUMNS: dict[Any, tuple[Any, ...]] = {
    m.Invoice: (
        m.Invoice.id,
        m.Invoice.status,
        m.Invoice.subtotal_cents,
        m.Invoice.insurance_cents,
        m.Invoice.total_cents,
        m.Invoice.paid_cents,
        m.Invoice.waived_cents,
        m.Invoice.refunded_cents,
    ),
    m.Payment: (m.Payment.id, m.Payment.invoice_id, m.Payment.amount_cents),
    m.InvoiceAdjustment: (
        m.InvoiceAdjustment.id,
        m.InvoiceAdjustment.kind,
        m.InvoiceAdjustment.status,
        m.InvoiceAdjustment.amount_cents,
    ),
    m.OutboxMessage: (m.OutboxMessage.id, m.OutboxMessage.kind, m.OutboxMessage.status),
}


@dataclass(frozen=True)
class Snapshot:
    counts: dict[str, int]
    money: str  # a digest of MONEY_COLUMNS, row by row

    def changes(self, after: Snapshot) -> list[str]:
        changed = [
            f"{name}: {self.counts[name]} -> {after.counts.get(name)} rows"
            for name in self.counts
            if self.counts[name] != after.counts.get(name)
        ]
        if self.money != after.money:
            changed.append("money columns of invoices/payments/adjustments/outbox changed")
        return changed


@cache
def _snapshot_queries() -> tuple[Any, list[Any]]:
    """Built once: a statement costs more to build than the small district costs to read."""
    tables = [t for t in m.Base.metadata.sorted_tables if t.name not in UNCOUNTED]
    counts = union_all(
        *(
            select(literal(t.name).label("name"), func.count().label("n")).select_from(t)
            for t in tables
        )
    )
    money = [select(*columns).order_by(columns[0]) for columns in MONEY_COLUMNS.values()]
    return counts, money


async def snapshot(runtime: Runtime) -> Snapshot:
    counts_query, money_queries = _snapshot_queries()
    digest = hashlib.sha256()
    async with runtime.reads() as store:
        session = store.session
        counts = {name: int(n) for name, n in (await session.execute(counts_query)).all()}
        for query in money_queries:
            digest.update(repr((await session.execute(query)).all()).encode())
    return Snapshot(counts, digest.hexdigest())


# --- logs -------------------------------------------------------------------------------------


class Records(logging.Handler):
    """Every WARNING and above, from any logger, while the module's app runs."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def tracebacks(self) -> list[str]:
        found = []
        for record in self.records:
            message = record.getMessage()
            if record.exc_info or record.exc_text or "Traceback" in message:
                found.append(f"{record.name}: {message[:300]} ({record.exc_info!r})")
        return found


# --- the app ----------------------------------------------------------------------------------


@dataclass
class Answer:
    """What one fuzzed request got back, and whether it counts as refused."""

    status: int
    body: bytes
    refused: bool


@dataclass(repr=False)
class FuzzApp:
    runner: asyncio.Runner
    runtime: Runtime
    http: httpx.AsyncClient
    slack: FakeSlack
    stripe: FakeStripe
    seeded: Seeded
    records: Records
    database: str
    cases: int = 0
    answers: Counter[str] = field(default_factory=Counter)  # "200", "400", "refused 200", …
    state: Snapshot | None = None  # the store as the last case left it
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def __repr__(self) -> str:  # Hypothesis prints it with every failing case
        return f"FuzzApp({self.database})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coro)

    @property
    def today(self) -> date:
        return local_date(self.runtime.clock.now(), self.runtime.settings.tz)

    def family_token(
        self, guardian_id: int, notice_id: int | None = None, ends: date | None = None
    ) -> str:
        ends = ends or self.today + timedelta(days=30)
        return make_family_token(guardian_id, notice_id, ends, APP_SECRET)

    async def settle(self) -> None:
        """Wait for the work bolt keeps doing after its ack, then let its loggers flush."""
        await _settle(timeout=10.0)
        await asyncio.sleep(0)

    async def check(
        self,
        send: Callable[[], Awaitable[httpx.Response]],
        *,
        refused: Callable[[httpx.Response, list[Any]], bool] | None = None,
        describe: str = "",
        label: str = "",
    ) -> Answer:
        """Send one request and assert every property; `refused` says from the answer (and
        the Slack calls it caused) whether the app refused it, beyond a 4xx; `label` sorts
        the case in the tally of answers."""
        self.cases += 1
        # Each case starts where the last one left the store (nothing else writes to it).
        before = self.state or await snapshot(self.runtime)
        self.state = None
        calls_before = len(self.slack.calls)
        self.records.records.clear()
        try:
            response = await send()
        except Exception as exc:
            # Behind a real server this is a 500 and a traceback in the log.
            raise AssertionError(f"the app raised {exc!r}: {describe[:500]}") from exc
        await self.settle()
        calls = self.slack.calls[calls_before:]
        where = f"{describe[:500]} -> {response.status_code} {response.content[:300]!r}"
        assert response.status_code < 500, f"server error: {where}"
        tracebacks = self.records.tracebacks()
        assert not tracebacks, f"traceback logged: {where}\n" + "\n".join(tracebacks)
        is_refused = response.status_code >= 400 or (
            refused is not None and refused(response, calls)
        )
        refusal = "refused " if is_refused else ""
        self.answers[f"{label}{' ' if label else ''}{refusal}{response.status_code}"] += 1
        after = await snapshot(self.runtime)
        if is_refused:
            changes = before.changes(after)
            assert not changes, f"a refused request changed rows: {where}: {changes}"
        self.state = after
        problems = await self.ledger_problems()
        assert not problems, f"ledger check failed after {where}: {problems}"
        return Answer(response.status_code, response.content, is_refused)

    async def ledger_problems(self) -> list[str]:
        async with self.runtime.reads() as store:
            return [d.describe() for d in await discrepancies(store.session)]


def ledger_check(database_url: str) -> None:
    """`devicecare ledger check` on the store the module's cases left behind: exit 0."""
    from typer.testing import CliRunner

    from bot.cli import app as cli
    from bot.settings import get_settings

    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["ledger", "check"], env={"DATABASE_URL": database_url})
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output


def _database_url(
    kind: str, tmp: Path, sqlite_template: Path, request: pytest.FixtureRequest
) -> str:
    if kind == "sqlite":
        path = tmp / "devicecare.db"
        shutil.copy(sqlite_template, path)
        return f"sqlite+aiosqlite:///{path}"
    return str(request.getfixturevalue("pg_database"))


async def _start(runner: asyncio.Runner, database_url: str, tmp: Path, records: Records) -> FuzzApp:
    engine = create_engine(database_url)
    if engine.dialect.name == "postgresql":
        # The session's test database: whatever the last module left in it goes.
        await _empty_postgres(engine)
    await engine.dispose()
    slack = FakeSlack()
    await slack.start()
    clock = FixedClock(NOW)
    stripe = FakeStripe(now=lambda: clock.now().timestamp())
    await stripe.start()
    settings = Settings(
        _env_file=None,
        database_url=database_url,
        blob_dir=tmp / "blobs",
        public_base_url=BASE_URL,
        secret_key=APP_SECRET,
        slack_bot_token=BOT_TOKEN,
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url=slack.base_url,
        slack_team_id=TEAM_ID,
        slack_app_id=APP_ID,
        slack_incidents_channel=INCIDENTS_CHANNEL,
        slack_approvals_channel=APPROVALS_CHANNEL,
        slack_billing_channel=BILLING_CHANNEL,
        stripe_secret_key=SECRET_KEY,
        stripe_webhook_secret=WEBHOOK_SECRET,
        stripe_api_base=stripe.base_url,
        # Thousands of requests a minute from one test client are the point here.
        family_page_rate_per_minute=10_000,
    )
    runtime = build_runtime(settings, clock)
    async with runtime.sessions() as session:
        await ensure_defaults(session)
        await session.commit()
    seeded = await seed_district(runtime, slack)
    slack_app = build_slack_app(runtime)
    web = create_web_app(runtime, slack_app)
    stripe.webhook_app = web
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=web), base_url=BASE_URL)

    async def close() -> None:
        await _settle()
        await http.aclose()
        await close_web_client(slack_app.client)
        await runtime.close()
        await stripe.stop()
        await slack.stop()

    app = FuzzApp(runner, runtime, http, slack, stripe, seeded, records, engine.dialect.name)
    app.closers.append(close)
    return app


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def fuzz_app(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    sqlite_template: Path,
) -> Iterator[FuzzApp]:
    """The module's app, on SQLite and then on PostgreSQL."""
    tmp = tmp_path_factory.mktemp(f"fuzz-{uuid.uuid4().hex[:6]}")
    url = _database_url(request.param, tmp, sqlite_template, request)
    records = Records()
    root = logging.getLogger()
    root.addHandler(records)
    runner = asyncio.Runner()
    try:
        app = runner.run(_start(runner, url, tmp, records))
        yield app
        # Shown with -s (or -rA): how the cases were answered, to see the fuzzing reach past
        # the refusals.
        print(
            f"\n{request.module.__name__} [{app.database}]: {app.cases} cases, {dict(app.answers)}"
        )
        for close in app.closers:
            runner.run(close())
        ledger_check(url)
    finally:
        root.removeHandler(records)
        runner.close()
