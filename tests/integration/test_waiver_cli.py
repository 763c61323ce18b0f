"""The waiver approval amount on the command line, and waivers and refunds on an invoice's
timeline (`devicecare invoice timeline`)."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path

from typer.testing import CliRunner

from bot.cli import app
from storage.db import create_engine, session_factory
from storage.uow import UnitOfWorkFactory
from tests.builders import add_staff
from tests.conftest import NOW
from tests.integration.billing_helpers import TZ, add_family, add_invoice
from tests.integration.test_billing_cli import _settings, cli_env, invoke, said  # noqa: F401
from workflows.clock import FixedClock
from workflows.payments import PaymentMethod, RecordPayment, record_payment
from workflows.ports import Context
from workflows.refunds import RefundPayment, refund_payment
from workflows.waivers import RequestWaiver, request_waiver

WIDE = {"COLUMNS": "220"}


def test_waiver_approval_amount_is_set_in_dollars(cli_env: Path) -> None:  # noqa: F811
    shown = invoke("billing", "settings", "show")
    assert "waivers above this need approval" in shown.output and "$100.00" in shown.output
    changed = invoke("billing", "settings", "set", "--waiver-approval", "250")
    assert changed.exit_code == 0, changed.output
    assert "waivers above this need approval: $100.00 → $250.00" in said(changed)
    assert _settings(cli_env).waiver_approval_cents == 25_000
    for bad in ("-5", "abc", "1.234"):
        refused = invoke("billing", "settings", "set", "--waiver-approval", bad)
        assert refused.exit_code == 1 and "Nothing was changed" in said(refused)
    too_big = invoke("billing", "settings", "set", "--waiver-approval", "2000000")
    assert too_big.exit_code == 1 and "waiver approval amount" in said(too_big)
    assert _settings(cli_env).waiver_approval_cents == 25_000


async def _adjusted_invoice(url: str) -> None:
    engine = create_engine(url)
    clock = FixedClock(NOW)
    stores = UnitOfWorkFactory(session_factory(engine), clock)
    try:
        director = await add_staff(stores, "Finance Director")
        clerk = await add_staff(stores, "Billing Clerk")
        (student,), _ = await add_family(stores, "Rivera")
        invoice_id = await add_invoice(
            stores, student, created=date(2026, 1, 5), due=date(2026, 4, 1), total_cents=30_000
        )
        async with stores() as store:
            ctx = Context(store, clock, TZ)
            payment = await record_payment(
                ctx,
                clerk,
                RecordPayment(invoice_id, 10_000, PaymentMethod.CHECK, "p1", reference="1043"),
            )
            await request_waiver(ctx, clerk, RequestWaiver(invoice_id, 2_000, "Sibling discount"))
            await request_waiver(ctx, director, RequestWaiver(invoice_id, 15_000, "Hardship"))
            await refund_payment(
                ctx, director, RefundPayment(payment.payment.id, 5_000, "Device found", "r1")
            )
            await store.commit()
    finally:
        await engine.dispose()


def test_timeline_reads_waivers_and_refunds(cli_env: Path) -> None:  # noqa: F811
    asyncio.run(_adjusted_invoice(f"sqlite+aiosqlite:///{cli_env}"))
    result = CliRunner().invoke(app, ["invoice", "timeline", "INV-000001"], env=WIDE)
    assert result.exit_code == 0, result.output
    text = said(result)
    assert "Balance: $30.00 (total $300.00, paid $100.00, waived $170.00, refunded $50.00)" in text
    assert "Waived −$20.00" in text and "Sibling discount" in text
    assert "Waived −$150.00" in text and "Hardship" in text
    assert "Refunded $50.00 of check #1043" in text and "Device found" in text
    assert "Refund receipt to rivera0@example.org: queued" in text
