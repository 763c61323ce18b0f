"""`devicecare report …` and `devicecare invoice timeline` against a real database."""

from __future__ import annotations

import asyncio
import csv
from collections.abc import Iterator
from datetime import UTC, date, datetime, time
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from bot.cli import app
from bot.settings import get_settings
from storage import models as m
from storage.db import create_engine, session_factory
from storage.uow import UnitOfWorkFactory
from tests.builders import add_staff
from tests.integration.billing_helpers import TZ, add_family, add_invoice, at_run_time, runner
from workflows.clock import FixedClock
from workflows.invoices import cancel_invoice
from workflows.ports import Context

WIDE = {"COLUMNS": "220"}  # so rich doesn't fold the tables' cells


@pytest.fixture
def cli_db(
    database_url: str, engine: AsyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The district below in a fresh database (SQLite and PostgreSQL), named by DATABASE_URL."""
    url = database_url
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    upgraded = CliRunner().invoke(app, ["db", "upgrade"])
    assert upgraded.exit_code == 0, upgraded.output
    asyncio.run(_district(url))
    yield url
    get_settings.cache_clear()


async def _district(url: str) -> None:
    """INV-000001 reminded and overdue, INV-000002 with automation off, INV-000003
    auto-cancelled on Apr 30, INV-000004 cancelled by a clerk on Apr 10."""
    engine = create_engine(url)
    clock = FixedClock(datetime(2026, 1, 1, tzinfo=UTC))
    stores = UnitOfWorkFactory(session_factory(engine), clock)
    try:
        async with stores() as store:
            (await store.settings.get()).auto_cancel_enabled = True
            await store.commit()
        clerk = await add_staff(stores, "Billing Clerk")
        (student,), _ = await add_family(stores, "Rivera")
        jan1 = date(2026, 1, 1)
        await add_invoice(stores, student, created=jan1, due=date(2026, 4, 1))
        await add_invoice(
            stores, student, created=jan1, due=date(2026, 5, 1), total_cents=3_000, automation=False
        )
        auto = await add_invoice(
            stores, student, created=date(2025, 12, 1), due=jan1, status="collections"
        )
        manual = await add_invoice(
            stores, student, created=jan1, due=date(2026, 5, 1), total_cents=4_500
        )
        async with stores() as store:
            await store.session.execute(
                update(m.Invoice)
                .where(m.Invoice.id == auto)
                .values(final_notice_on=date(2026, 3, 1))
            )
            await store.commit()
        clock.set(datetime.combine(date(2026, 4, 10), time(9), tzinfo=TZ).astimezone(UTC))
        async with stores() as store:
            await cancel_invoice(Context(store, clock, TZ), clerk, manual, reason="=1+1")
            await store.commit()
        for day in (date(2026, 3, 18), date(2026, 4, 30)):
            clock.set(at_run_time(day))
            assert (await runner(engine, clock).run(day)).ran
    finally:
        await engine.dispose()


def _rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def test_automation_report_on_screen_and_as_csv(cli_db: str, tmp_path: Path) -> None:
    cli = CliRunner()
    shown = cli.invoke(app, ["report", "automation"], env=WIDE)
    assert shown.exit_code == 0, shown.output
    assert "Open invoices by automation" in shown.output
    assert "1st Notice" in shown.output and "INV-000001" in shown.output
    assert "INV-000002" in shown.output and "INV-000003" not in shown.output
    assert "$100.00" in shown.output and "$30.00" in shown.output

    out = tmp_path / "off.csv"
    written = cli.invoke(app, ["report", "automation", "--off", "--csv", str(out)], env=WIDE)
    assert written.exit_code == 0, written.output
    assert "Wrote 1 open invoice(s) with automation off" in written.output
    assert _rows(out) == [
        [
            "invoice_number",
            "student",
            "status",
            "due_date",
            "balance",
            "automation",
            "reminder_count",
            "last_reminder_at",
        ],
        ["INV-000002", "Kid0 Rivera", "Unpaid", "2026-05-01", "30.00", "off", "0", ""],
    ]
    out_on = tmp_path / "on.csv"
    cli.invoke(app, ["report", "automation", "--on", "--csv", str(out_on)], env=WIDE)
    # Reminded on Mar 18 and sent the first overdue notice on Apr 30 (06:00 district time).
    assert _rows(out_on)[1:] == [
        [
            "INV-000001",
            "Kid0 Rivera",
            "1st Notice",
            "2026-04-01",
            "100.00",
            "on",
            "2",
            "2026-04-30T06:00:00-05:00",
        ],
    ]
    both = cli.invoke(app, ["report", "automation", "--on", "--off"])
    assert both.exit_code == 2 and "not both" in both.output


def test_cancelled_report_csv_marks_auto_cancelled(cli_db: str, tmp_path: Path) -> None:
    cli = CliRunner()
    out = tmp_path / "cancelled.csv"
    result = cli.invoke(
        app,
        ["report", "cancelled", "--from", "2026-04-01", "--to", "2026-04-30", "--csv", str(out)],
        env=WIDE,
    )
    assert result.exit_code == 0, result.output
    assert "Auto-Cancelled" in result.output and "Wrote 2 cancelled invoice(s)" in result.output
    assert _rows(out) == [
        [
            "invoice_number",
            "student",
            "amount",
            "cancelled_at",
            "auto_cancelled",
            "cancelled_by",
            "reason",
        ],
        # A reason starting with "=" stays text in a spreadsheet.
        [
            "INV-000004",
            "Kid0 Rivera",
            "45.00",
            "2026-04-10T09:00:00-05:00",
            "no",
            "Billing Clerk Person",
            "'=1+1",
        ],
        [
            "INV-000003",
            "Kid0 Rivera",
            "100.00",
            "2026-04-30T06:00:00-05:00",
            "yes",
            "DeviceCare automation",
            "Invoice automatically cancelled on 2026-04-30 after 119 days overdue.",
        ],
    ]
    shown = cli.invoke(
        app, ["report", "cancelled", "--from", "2026-04-01", "--to", "2026-04-30"], env=WIDE
    )
    assert shown.exit_code == 0, shown.output
    assert "INV-000003" in shown.output and "=1+1" in shown.output
    assert "Cancelled by staff" in shown.output and "$145.00" in shown.output
    april_9 = cli.invoke(
        app, ["report", "cancelled", "--from", "2026-04-01", "--to", "2026-04-09"], env=WIDE
    )
    assert april_9.exit_code == 0 and "INV-00000" not in april_9.output
    reversed_range = cli.invoke(
        app, ["report", "cancelled", "--from", "2026-04-30", "--to", "2026-04-01"]
    )
    assert reversed_range.exit_code == 2 and "ends before it starts" in reversed_range.output
    bad_day = cli.invoke(app, ["report", "cancelled", "--from", "April", "--to", "2026-04-01"])
    assert bad_day.exit_code == 2 and "isn't a date" in bad_day.output


def test_invoice_timeline(cli_db: str) -> None:
    cli = CliRunner()
    result = cli.invoke(app, ["invoice", "timeline", "inv-000001"], env=WIDE)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "INV-000001 · Kid0 Rivera" in out and "Status: 1st Notice" in out
    assert "Automation: on · 2 reminder(s) sent, the last 2026-04-30 06:00" in out
    order = [
        "Invoice created for $100.00",
        "14-day pre-due reminder",
        "Reminder to rivera0@example.org: queued",
        "1st overdue notice",
        "Status Unpaid → 1st Notice",
        "1st overdue to rivera0@example.org: queued",
    ]
    positions = [out.index(text) for text in order]
    assert positions == sorted(positions)
    cancelled = cli.invoke(app, ["invoice", "timeline", "INV-3"], env=WIDE)
    assert "Status: Auto-Cancelled" in cancelled.output
    missing = cli.invoke(app, ["invoice", "timeline", "INV-000999"])
    assert missing.exit_code == 1 and "There's no invoice INV-000999" in missing.output
