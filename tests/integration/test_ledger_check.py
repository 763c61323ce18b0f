"""`devicecare ledger check` on a clean store and on deliberately corrupted rows, and an
external reference that arrives a second way (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner, Result

from bot.cli import app
from bot.runtime import build_runtime
from bot.settings import Settings, get_settings
from bot.web.stripe_webhooks import apply_checkout_event
from services.portal_import import PortalImporter
from storage import models as m
from storage.db import create_engine, session_factory
from storage.inbox import Inbox
from storage.migrate import upgrade
from storage.portal_file import read_export
from storage.uow import UnitOfWorkFactory
from tests.builders import add_staff
from tests.conftest import NOW
from tests.integration.billing_helpers import add_family, add_invoice
from workflows.clock import FixedClock
from workflows.errors import DuplicateReference
from workflows.ledger import ledger_problems
from workflows.online_payments import CheckoutEvent
from workflows.payments import PaymentMethod, RecordPayment, record_payment, reference_key
from workflows.pending_payments import confirm_pending_payment
from workflows.portal_import import MappingChoices, Outcome, build_mapping
from workflows.ports import Context

TZ = ZoneInfo("America/Chicago")


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def said(result: Result) -> str:
    return " ".join(result.output.split())


async def _three_invoices(stores: UnitOfWorkFactory) -> list[int]:
    """Three $100.00 invoices, each with its line."""
    [student], _ = await add_family(stores, "Okafor")
    ids = [
        await add_invoice(stores, student, created=date(2026, 1, 10), due=date(2026, 2, 28))
        for _ in range(3)
    ]
    async with stores() as store:
        store.session.add_all(
            m.InvoiceLine(
                invoice_id=i,
                position=1,
                description="Screen",
                kind="custom",
                quantity=1,
                unit_cents=10_000,
                amount_cents=10_000,
            )  # fmt: skip
            for i in ids
        )
        await store.commit()
    return ids


@pytest.fixture
def cli_env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


async def _pay(stores: UnitOfWorkFactory, clock: FixedClock, invoice_id: int, key: str, **kw: Any):  # type: ignore[no-untyped-def]
    clerk = await add_staff(stores, "Billing Clerk", f"{key}@district.org")
    async with stores() as store:
        result = await record_payment(
            Context(store, clock, TZ),
            clerk,
            RecordPayment(invoice_id=invoice_id, idempotency_key=key, **kw),
        )
        await store.commit()
        return result


def _seeded(database_url: str, work: Any) -> Any:
    """Run `work(stores, clock)` on its own engine (a sync test owns no event loop)."""

    async def go() -> Any:
        engine = create_engine(database_url)
        try:
            return await work(UnitOfWorkFactory(session_factory(engine), FixedClock(NOW)), engine)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def test_a_clean_store_is_consistent(engine: AsyncEngine, database_url: str, cli_env: None) -> None:
    async def seed(stores: UnitOfWorkFactory, _: AsyncEngine) -> None:
        clock = FixedClock(NOW)
        ids = await _three_invoices(stores)
        await _pay(stores, clock, ids[0], "p1", amount_cents=4_000, method=PaymentMethod.CASH)

    _seeded(database_url, seed)
    result = invoke("ledger", "check")
    assert result.exit_code == 0, result.output
    assert said(result) == "3 invoices checked, all consistent"


def test_a_corrupted_row_is_named_and_the_command_fails(
    engine: AsyncEngine, database_url: str, cli_env: None
) -> None:
    async def seed(stores: UnitOfWorkFactory, engine: AsyncEngine) -> list[int]:
        clock = FixedClock(NOW)
        ids = await _three_invoices(stores)
        await _pay(stores, clock, ids[0], "p1", amount_cents=4_000, method=PaymentMethod.CASH)
        await _pay(stores, clock, ids[1], "p2", amount_cents=10_000, method=PaymentMethod.CASH)
        # A lost update, and a waiver with no waiver behind it, written behind the store's back
        # (the table's own checks already refuse a balance below zero).
        async with session_factory(engine)() as session:
            await session.execute(
                text("UPDATE invoices SET paid_cents = 2000 WHERE id = :id"), {"id": ids[0]}
            )
            await session.execute(
                text("UPDATE invoices SET waived_cents = 500 WHERE id = :id"), {"id": ids[2]}
            )
            await session.commit()
        return ids

    _seeded(database_url, seed)
    result = invoke("ledger", "check")
    assert result.exit_code == 1, result.output
    out = said(result)
    assert "INV-000001 (unpaid): paid 2000 but payments add to 4000" in out
    assert "INV-000003 (unpaid): waived 500 but waivers add to 0" in out
    assert "INV-000002" not in out
    assert "2 of 3 invoices checked are inconsistent." in out


@dataclass
class Amounts:
    subtotal_cents: int = 10_000
    insurance_cents: int = 0
    total_cents: int = 10_000
    paid_cents: int = 0
    waived_cents: int = 0
    refunded_cents: int = 0
    status: str = "unpaid"


def test_ledger_rules_on_one_invoice() -> None:
    assert ledger_problems(Amounts(paid_cents=4_000, refunded_cents=1_000)) == []
    assert ledger_problems(Amounts(total_cents=9_000)) == [
        "billed $100.00 but covered + collected + waived + refunded + outstanding come to $90.00"
    ]
    assert ledger_problems(Amounts(paid_cents=10_000, waived_cents=500)) == [
        "overpaid: the balance is -$5.00"
    ]
    assert ledger_problems(Amounts(paid_cents=100, refunded_cents=200)) == [
        "refunded $2.00, more than the $1.00 paid"
    ]


def test_reference_keys() -> None:
    assert reference_key("Check #01043") == reference_key("ck 1043") == "1043"
    assert reference_key("1043") == reference_key("No. 1043") == "1043"
    assert reference_key("RT-1001") == reference_key("rt 1001") == "rt1001"
    assert reference_key("  ") is None and reference_key(None) is None


async def test_a_check_recorded_in_slack_is_not_taken_again_from_a_reply_or_a_portal(
    stores: UnitOfWorkFactory, clock: FixedClock, engine: AsyncEngine
) -> None:
    ids = await _three_invoices(stores)
    await _pay(
        stores, clock, ids[0], "slack-1", amount_cents=3_000,
        method=PaymentMethod.CHECK, reference="1043",
    )  # fmt: skip

    # A parent's reply says the same check; staff confirm it: refused, with why.
    async with stores() as store:
        pending = m.PendingPayment(
            invoice_id=ids[0], amount_cents=3_000, method="check", reference="#1043",
            status="pending", created_at=clock.now(),
        )  # fmt: skip
        store.session.add(pending)
        await store.commit()
    clerk = await add_staff(stores, "Billing Clerk", "clerk@district.org")
    with pytest.raises(DuplicateReference) as refused:
        async with stores() as store:
            await confirm_pending_payment(
                Context(store, clock, TZ), Inbox(store), clerk, pending.id
            )
            await store.commit()
    assert refused.value.message == (
        '"#1043" is already recorded on invoice INV-000001 ($30.00 by check, received '
        "2026-03-02); the same payment is recorded only once."
    )
    assert refused.value.field == "reference"

    # The same check on another invoice is another payment (one check can pay two invoices).
    await _pay(
        stores, clock, ids[1], "slack-2", amount_cents=3_000,
        method=PaymentMethod.CHECK, reference="1043",
    )  # fmt: skip

    # A portal row under a reference already recorded by hand is "already imported".
    await _pay(
        stores, clock, ids[2], "slack-3", amount_cents=2_000,
        method=PaymentMethod.ONLINE, reference="RT-77",
    )  # fmt: skip
    mapping = build_mapping(MappingChoices(preset="revtrak"))
    export = read_export(
        b"Order Number,Order Date,Customer Name,Item Description,Amount\n"
        b"RT-77,02/03/2026,Pat,INV-000003,20.00\n",
        mapping,
    )
    report = await PortalImporter(stores, clock, TZ).run(
        clerk, export, source="portal:revtrak", date_format=mapping.date_format
    )
    [row] = report.rows
    assert row.outcome is Outcome.ALREADY and "already recorded on invoice INV-000003" in row.reason

    async with stores() as store:
        paid = [(await store.invoices.get(i)).paid_cents for i in ids]  # type: ignore[union-attr]
        await store.commit()
    assert paid == [3_000, 3_000, 2_000]

    # The database refuses it too, whatever code writes the row.
    with pytest.raises(IntegrityError):
        async with stores() as store:
            store.session.add(
                m.Payment(
                    invoice_id=ids[0],
                    amount_cents=100,
                    method="check",
                    reference="1043",
                    received_on=date(2026, 3, 1),
                    recorded_at=NOW,
                    idempotency_key="raw",
                    reference_key="1043",
                )  # fmt: skip
            )
            await store.flush()
            await store.commit()


async def test_the_migration_keys_existing_references_and_keeps_earlier_duplicates(
    tmp_path: Path,
) -> None:
    """Payments recorded twice under one reference before the rule: the first keeps the key."""
    migration = importlib.import_module("storage.migrations.versions.0009_payment_reference_key")
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    await asyncio.to_thread(upgrade, url, migration.down_revision)
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            # Plain SQL: today's model has columns this older schema lacks.
            household = (
                await conn.execute(
                    text("INSERT INTO households (name) VALUES ('Early family') RETURNING id")
                )
            ).scalar_one()
            student = (
                await conn.execute(
                    text(
                        "INSERT INTO students (sis_id, first_name, last_name, grade, "
                        "household_id, active) VALUES ('S-Early-0', 'Kid0', 'Early', '6', :h, 1) "
                        "RETURNING id"
                    ),
                    {"h": household},
                )
            ).scalar_one()
            first, second = [
                (
                    await conn.execute(
                        text(
                            "INSERT INTO invoices (number, student_id, status, subtotal_cents, "
                            "insurance_cents, total_cents, paid_cents, automation_enabled, "
                            "auto_cancelled, cap_reached, override_applied, created_at, "
                            "automation_epoch, reminder_count, kind, waived_cents, "
                            "refunded_cents) VALUES (:n, :s, 'unpaid', 10000, 0, 10000, 0, 1, "
                            "0, 0, 0, '2026-01-10 16:00:00', 0, 0, 'incident', 0, 0) RETURNING id"
                        ),
                        {"n": number, "s": student},
                    )
                ).scalar_one()
                for number in ("INV-000001", "INV-000002")
            ]
            for n, (invoice_id, reference) in enumerate(
                [(first, "1043"), (first, "Check #1043"), (second, "1043"), (second, None)]
            ):
                await conn.execute(
                    text(
                        "INSERT INTO payments (invoice_id, amount_cents, method, reference, "
                        "received_on, recorded_at, idempotency_key) VALUES "
                        "(:i, 100, 'check', :r, '2026-03-01', '2026-03-01 10:00:00', :k)"
                    ),
                    {"i": invoice_id, "r": reference, "k": f"old-{n}"},
                )
        await engine.dispose()
        await asyncio.to_thread(upgrade, url)
        engine = create_engine(url)
        async with engine.connect() as conn:
            keys = (
                await conn.execute(text("SELECT reference_key FROM payments ORDER BY id"))
            ).scalars()
            assert list(keys) == ["1043", None, "1043", None]
    finally:
        await engine.dispose()


async def test_a_stripe_payment_recorded_by_hand_first_is_not_applied_again(
    engine: AsyncEngine, database_url: str
) -> None:
    runtime = build_runtime(Settings(database_url=database_url), FixedClock(NOW))
    try:
        ids = await _three_invoices(runtime.stores)
        await _pay(
            runtime.stores, FixedClock(NOW), ids[0], "by-hand", amount_cents=4_000,
            method=PaymentMethod.ONLINE, reference="pi_3Nabc",
        )  # fmt: skip
        handled = await apply_checkout_event(
            runtime,
            CheckoutEvent(
                event_id="evt_1",
                kind="checkout.session.completed",
                session_id="cs_1",
                payment_status="paid",
                amount_cents=4_000,
                currency="usd",
                invoice_id=ids[0],
                guardian_id=None,
                payment_intent="pi_3Nabc",
                payer=None,
            ),  # fmt: skip
        )
        assert handled.outcome == "ignored"
        assert '"pi_3Nabc" is already recorded on invoice INV-000001' in handled.detail
        async with runtime.stores() as store:
            invoice = await store.invoices.get(ids[0])
            assert invoice is not None and invoice.paid_cents == 4_000
            assert len(await store.payments.for_invoice(ids[0])) == 1
            await store.commit()
        # Stripe delivering the event again finds it taken: still one payment.
        again = await apply_checkout_event(
            runtime,
            CheckoutEvent(
                event_id="evt_1",
                kind="checkout.session.completed",
                session_id="cs_1",
                payment_status="paid",
                amount_cents=4_000,
                currency="usd",
                invoice_id=ids[0],
                guardian_id=None,
                payment_intent="pi_3Nabc",
                payer=None,
            ),  # fmt: skip
        )
        assert again.outcome == "replay"
    finally:
        await runtime.close()
