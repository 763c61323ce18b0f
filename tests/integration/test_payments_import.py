"""Importing a school payment portal's export: the store on SQLite and PostgreSQL, then the
`devicecare payments import` command."""

from __future__ import annotations

import asyncio
import csv
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner, Result

from bot.cli import app
from bot.settings import get_settings
from services.portal_import import PortalImporter
from storage import models as m
from storage.db import create_engine, session_factory
from storage.portal_file import read_export
from storage.uow import UnitOfWorkFactory
from tests.builders import add_staff
from tests.integration.billing_helpers import add_family, add_invoice
from workflows.clock import Clock, FixedClock, SystemClock
from workflows.errors import PermissionDenied
from workflows.permissions import Actor
from workflows.portal_import import ImportReport, MappingChoices, Outcome, PortalFile, build_mapping

TZ = ZoneInfo("America/Chicago")
FIXTURES = Path(__file__).parent.parent / "fixtures" / "portal"
SOURCE = "portal:revtrak"

# What each line of revtrak.csv does against the invoices `_invoices` makes.
REVTRAK_FIRST_RUN = {
    2: (Outcome.APPLIED, 4000, 0),  # $40.00 of $100.00
    3: (Outcome.EXCESS, 5000, 2500),  # $75.00 on a $50.00 invoice
    4: (Outcome.EXCESS, 0, 1000),  # a cancelled invoice
    5: (Outcome.EXCESS, 0, 2000),  # an invoice already paid
    6: (Outcome.UNMATCHED, 0, 0),  # INV-000099 doesn't exist
    7: (Outcome.UNMATCHED, 0, 0),  # no invoice number in the memo
    8: (Outcome.REVERSAL, 0, 0),  # (5.00)
    9: (Outcome.REJECTED, 0, 0),  # amount "abc"
    10: (Outcome.REJECTED, 0, 0),  # dated 2030
    12: (Outcome.ALREADY, 0, 0),  # line 2 again
}
# Outcomes a rerun finds already imported; unmatched and rejected rows are looked at again.
SETTLED = {Outcome.APPLIED, Outcome.EXCESS, Outcome.REVERSAL, Outcome.ALREADY}


async def _invoices(stores: UnitOfWorkFactory) -> list[int]:
    """INV-000001 $100 unpaid, INV-000002 $50 unpaid, INV-000003 $10 cancelled,
    INV-000004 $20 paid, for a student with one guardian (who gets the receipts)."""
    [student], _ = await add_family(stores, "Rivera")
    created = date(2026, 1, 10)
    due = date(2026, 2, 28)
    return [
        await add_invoice(stores, student, created=created, due=due, total_cents=10_000),
        await add_invoice(stores, student, created=created, due=due, total_cents=5_000),
        await add_invoice(
            stores, student, created=created, due=due, total_cents=1_000, status="cancelled"
        ),
        await add_invoice(
            stores,
            student,
            created=created,
            due=due,
            total_cents=2_000,
            paid_cents=2_000,
            status="paid",
        ),
    ]


def _export(name: str, preset: str | None = None) -> tuple[PortalFile, str]:
    mapping = build_mapping(MappingChoices(preset=preset))
    portal = read_export(FIXTURES / name, mapping)
    return portal, mapping.date_format


async def _import(
    stores: UnitOfWorkFactory,
    clock: Clock,
    actor: Actor,
    name: str,
    preset: str | None = None,
    *,
    source: str = SOURCE,
    dry_run: bool = False,
) -> ImportReport:
    portal, date_format = _export(name, preset)
    return await PortalImporter(stores, clock, TZ).run(
        actor, portal, source=source, date_format=date_format, dry_run=dry_run
    )


def _outcomes(report: ImportReport) -> dict[int, tuple[Outcome, int, int]]:
    return {r.line: (r.outcome, r.applied_cents, r.excess_cents) for r in report.rows}


async def _count(stores: UnitOfWorkFactory, model: Any, *where: Any) -> int:
    async with stores() as store:
        stmt = select(func.count()).select_from(model).where(*where)
        result = int((await store.session.execute(stmt)).scalar_one())
        await store.commit()
        return result


async def _invoice(stores: UnitOfWorkFactory, invoice_id: int) -> m.Invoice:
    async with stores() as store:
        invoice = await store.invoices.get(invoice_id)
        assert invoice is not None
        await store.commit()
        return invoice


async def test_each_row_is_applied_once_and_the_rest_reported(
    stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    ids = await _invoices(stores)
    clerk = await add_staff(stores, "Billing Clerk", "clerk@district.org")

    first = await _import(stores, clock, clerk, "revtrak.csv", "revtrak")

    assert _outcomes(first) == REVTRAK_FIRST_RUN
    reasons = {r.line: r.reason for r in first.rows}
    assert reasons[3] == (
        "Only $50.00 was owed on invoice INV-000002. Applied $50.00; $25.00 to refund."
    )
    assert reasons[4] == (
        "Invoice INV-000003 is cancelled; it takes no payments. Nothing applied; $10.00 to refund."
    )
    assert reasons[5] == (
        "Invoice INV-000004 was already paid in full. Nothing applied; $20.00 to refund."
    )
    assert reasons[6] == "There is no invoice INV-000099."
    assert reasons[7] == "No invoice number found in the invoice column."
    assert "refund or reversal of $5.00" in reasons[8]
    assert reasons[9] == '"abc" isn\'t an amount.'
    assert reasons[10] == "A payment can't be received in the future."
    assert first.applied_cents == 9000 and first.excess_cents == 5500

    one, two, three, four = [await _invoice(stores, i) for i in ids]
    assert (one.paid_cents, one.status) == (4000, "unpaid")
    assert (two.paid_cents, two.status) == (5000, "paid")
    assert (three.paid_cents, three.status) == (0, "cancelled")
    assert (four.paid_cents, four.status) == (2000, "paid")

    async with stores() as store:
        payments = list(
            (await store.session.execute(select(m.Payment).order_by(m.Payment.id))).scalars()
        )
        events = list(
            (
                await store.session.execute(select(m.PaymentEvent).order_by(m.PaymentEvent.id))
            ).scalars()
        )
        recorded_by = (
            await store.session.execute(
                select(m.ActivityEntry.actor_label).where(
                    m.ActivityEntry.action == "payment_recorded"
                )
            )
        ).scalars()
        actors = list(recorded_by)
        await store.commit()
    assert [
        (p.invoice_id, p.amount_cents, p.method, p.reference, p.received_on, p.idempotency_key)
        for p in payments
    ] == [
        (ids[0], 4000, "online", "RT-1001", date(2026, 2, 3), "portal:revtrak:RT-1001"),
        (ids[1], 5000, "online", "RT-1002", date(2026, 2, 4), "portal:revtrak:RT-1002"),
    ]
    assert [(e.source, e.event_id, e.outcome, e.amount_cents) for e in events] == [
        (SOURCE, "RT-1001", "applied", 4000),
        (SOURCE, "RT-1002", "excess", 7500),
        (SOURCE, "RT-1003", "excess", 1000),
        (SOURCE, "RT-1004", "excess", 2000),
        (SOURCE, "RT-1007", "ignored", -500),
    ]
    assert events[0].payment_id == payments[0].id and events[2].payment_id is None
    assert len(actors) == 2 and all(a == clerk.name for a in actors)
    receipts = await _count(stores, m.Notice, m.Notice.template == "payment_receipt")
    assert receipts == 2

    again = await _import(stores, clock, clerk, "revtrak.csv", "revtrak")

    expected = {
        line: (Outcome.ALREADY, 0, 0) if outcome in SETTLED else (outcome, 0, 0)
        for line, (outcome, _, _) in REVTRAK_FIRST_RUN.items()
    }
    assert _outcomes(again) == expected
    assert again.applied_cents == 0
    assert next(r.reason for r in again.rows if r.line == 3).startswith(
        "Imported on 2026-03-02: Only $50.00 was owed"
    )
    assert await _count(stores, m.Payment) == 2
    assert await _count(stores, m.PaymentEvent) == 5
    assert await _count(stores, m.Notice, m.Notice.template == "payment_receipt") == 2
    assert (await _invoice(stores, ids[0])).paid_cents == 4000


async def test_a_dry_run_tells_the_same_and_changes_nothing(
    stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    ids = await _invoices(stores)
    clerk = await add_staff(stores, "Billing Clerk", "clerk@district.org")
    activity = await _count(stores, m.ActivityEntry)

    dry = await _import(stores, clock, clerk, "revtrak.csv", "revtrak", dry_run=True)

    # Later rows see earlier ones (line 12 repeats line 2), as in the real import.
    assert _outcomes(dry) == REVTRAK_FIRST_RUN
    assert dry.dry_run
    assert await _count(stores, m.Payment) == 0
    assert await _count(stores, m.PaymentEvent) == 0
    assert await _count(stores, m.Notice) == 0
    assert await _count(stores, m.ActivityEntry) == activity
    assert (await _invoice(stores, ids[1])).status == "unpaid"

    real = await _import(stores, clock, clerk, "revtrak.csv", "revtrak")
    assert _outcomes(real) == _outcomes(dry)


async def test_rows_without_a_transaction_id_are_known_by_their_content(
    stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    ids = await _invoices(stores)
    clerk = await add_staff(stores, "Billing Clerk", "clerk@district.org")

    report = await _import(stores, clock, clerk, "no_reference.csv")

    assert [(r.line, r.outcome, r.applied_cents) for r in report.rows] == [
        (2, Outcome.APPLIED, 1000),
        (3, Outcome.ALREADY, 0),  # the same content: the same payment
        (4, Outcome.APPLIED, 500),
    ]
    async with stores() as store:
        payments = (await store.session.execute(select(m.Payment))).scalars().all()
        await store.commit()
    assert {p.reference for p in payments} == {None}  # a content hash means nothing to a family
    assert {p.idempotency_key.startswith("portal:revtrak:row-") for p in payments} == {True}
    rerun = await _import(stores, clock, clerk, "no_reference.csv")
    assert {r.outcome for r in rerun.rows} == {Outcome.ALREADY}
    assert (await _invoice(stores, ids[0])).paid_cents == 1500


async def test_other_portals_delimiters_and_time_zones(
    stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    ids = await _invoices(stores)
    clerk = await add_staff(stores, "Billing Clerk", "clerk@district.org")

    msb = await _import(
        stores, clock, clerk, "myschoolbucks.csv", "myschoolbucks", source="portal:msb"
    )
    cash = await _import(
        stores, clock, clerk, "schoolcash.csv", "schoolcash", source="portal:schoolcash"
    )

    assert [(r.outcome, r.applied_cents) for r in msb.rows] == [
        (Outcome.APPLIED, 6000),
        (Outcome.APPLIED, 5000),
    ]
    assert [(r.outcome, r.applied_cents, r.received_on) for r in cash.rows] == [
        # 05:30 UTC on Feb 12 is the evening of Feb 11 in Chicago.
        (Outcome.APPLIED, 2500, date(2026, 2, 11))
    ]
    one = await _invoice(stores, ids[0])
    assert one.paid_cents == 8500
    # The same transaction id from another portal is another payment.
    assert await _count(stores, m.PaymentEvent) == 3


async def test_without_record_payments_nothing_happens_and_the_refusal_is_kept(
    stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    await _invoices(stores)
    technician = await add_staff(stores, "Technician", "tech@district.org")

    with pytest.raises(PermissionDenied, match="Record Payments"):
        await _import(stores, clock, technician, "revtrak.csv", "revtrak")

    assert await _count(stores, m.Payment) == 0
    assert await _count(stores, m.PaymentEvent) == 0
    async with stores() as store:
        refusal = (
            await store.session.execute(
                select(m.ActivityEntry.comment).where(m.ActivityEntry.action == "refused")
            )
        ).scalar_one()
        await store.commit()
    assert refusal is not None and refusal.startswith("payments import from portal:revtrak")


async def test_two_imports_of_one_file_at_once_apply_each_row_once(
    stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    ids = await _invoices(stores)
    clerk = await add_staff(stores, "Billing Clerk", "clerk@district.org")

    reports = await asyncio.gather(
        _import(stores, clock, clerk, "revtrak.csv", "revtrak"),
        _import(stores, clock, clerk, "revtrak.csv", "revtrak"),
    )

    assert await _count(stores, m.Payment) == 2
    assert await _count(stores, m.PaymentEvent) == 5
    assert (await _invoice(stores, ids[0])).paid_cents == 4000
    assert (await _invoice(stores, ids[1])).paid_cents == 5000
    assert sum(r.applied_cents for r in reports) == 9000
    for line in (2, 3, 4, 5, 8):
        took = [r.outcome for report in reports for r in report.rows if r.line == line]
        assert sorted(took) == sorted([REVTRAK_FIRST_RUN[line][0], Outcome.ALREADY])


# --- the command --------------------------------------------------------------------------------


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def said(result: Result) -> str:
    """The output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def _run(work: Any) -> Any:
    """Run one coroutine against the test database with the system clock, as the CLI does."""

    async def go() -> Any:
        engine = create_engine(get_settings().database_url)
        try:
            return await work(UnitOfWorkFactory(session_factory(engine), SystemClock()))
        finally:
            await engine.dispose()

    return asyncio.run(go())


@pytest.fixture
def cli_db(
    engine: AsyncEngine, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[list[int]]:
    """The command against the test database (emptied by `engine`), with the four invoices."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("PAYMENT_PORTAL_NAME", "RevTrak")
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()

    async def seed(stores: UnitOfWorkFactory) -> list[int]:
        ids = await _invoices(stores)
        await add_staff(stores, "Billing Clerk", "clerk@district.org")
        await add_staff(stores, "Technician", "tech@district.org")
        return ids

    yield _run(seed)
    get_settings.cache_clear()


def _count_now(model: Any, *where: Any) -> int:
    return int(_run(lambda stores: _count(stores, model, *where)))


def test_the_command_imports_reports_and_reruns_without_doubling(
    cli_db: list[int], tmp_path: Path
) -> None:
    revtrak = str(FIXTURES / "revtrak.csv")
    report = tmp_path / "attention.csv"

    dry = invoke("payments", "import", revtrak, "--preset", "revtrak", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "Dry run of revtrak.csv as portal:revtrak: 10 row(s)" in said(dry)
    assert "would be applied to invoices: $90.00" in said(dry)
    assert _count_now(m.Payment) == 0 and _count_now(m.PaymentEvent) == 0

    done = invoke(
        "payments", "import", revtrak, "--preset", "revtrak", "--report", str(report),
        "--as", "clerk@district.org",
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    out = said(done)
    assert "Imported revtrak.csv as portal:revtrak: 10 row(s)" in out
    assert "applied to invoices: $90.00" in out
    assert "over what was owed (to refund): $55.00" in out
    assert "Wrote 8 row(s) that need attention" in out
    assert _count_now(m.Payment) == 2
    with report.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["line"], r["outcome"]) for r in rows] == [
        ("3", "excess"),
        ("4", "excess"),
        ("5", "excess"),
        ("6", "unmatched"),
        ("7", "unmatched"),
        ("8", "reversal"),
        ("9", "rejected"),
        ("10", "rejected"),
    ]
    assert rows[3] == {
        "line": "6",
        "outcome": "unmatched",
        "reference": "RT-1005",
        "invoice": "INV-000099",
        "amount": "1234.50",
        "date": "2026-02-06",
        "payer": "Jo Park",
        "reason": "There is no invoice INV-000099.",
    }
    assert rows[6]["amount"] == "abc" and rows[6]["date"] == "02/07/2026"
    assert rows[5]["amount"] == "-5.00"

    again = invoke("payments", "import", revtrak, "--preset", "revtrak")
    assert again.exit_code == 0, again.output
    assert "applied to invoices: $0.00" in said(again)
    assert _count_now(m.Payment) == 2
    assert _count_now(m.Notice, m.Notice.template == "payment_receipt") == 2


def test_columns_from_a_mapping_file_and_the_portal_name_from_settings(
    cli_db: list[int],
) -> None:
    result = invoke(
        "payments", "import", str(FIXTURES / "myschoolbucks_notes.csv"),
        "--mapping", str(FIXTURES / "myschoolbucks_mapping.toml"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "as portal:myschoolbucks" in said(result)  # the file's portal, not the settings'
    assert _count_now(m.Payment, m.Payment.idempotency_key == "portal:myschoolbucks:MSB-90") == 1

    plain = invoke(
        "payments", "import", str(FIXTURES / "no_reference.csv"), "--date-format", "iso"
    )  # fmt: skip
    assert plain.exit_code == 0, plain.output
    assert "as portal:revtrak" in said(plain)  # PAYMENT_PORTAL_NAME, slugged
    assert "no transaction id column" in said(plain)


def test_a_file_that_cant_be_used_exits_1_and_changes_nothing(
    cli_db: list[int], tmp_path: Path
) -> None:
    missing = invoke("payments", "import", str(FIXTURES / "revtrak.csv"))
    assert missing.exit_code == 1
    text = said(missing)
    assert 'no column "invoice" (--invoice-column) or "date" (--date-column).' in text
    assert '"Order Number", "Order Date", "Customer Name", "ITEM DESCRIPTION"' in text
    assert "Nothing was changed." in text

    absent = invoke("payments", "import", str(tmp_path / "nope.csv"))
    assert absent.exit_code == 1 and "The file can't be read" in said(absent)

    bad_preset = invoke("payments", "import", str(FIXTURES / "revtrak.csv"), "--preset", "paypal")
    assert bad_preset.exit_code == 1 and 'There is no preset "paypal"' in said(bad_preset)

    bad_map = tmp_path / "bad.toml"
    bad_map.write_text('[columns]\nmemo = "Memo"\n')
    mapped = invoke("payments", "import", str(FIXTURES / "revtrak.csv"), "--mapping", str(bad_map))
    assert mapped.exit_code == 1 and "unknown column(s) memo" in said(mapped)

    nowhere = invoke(
        "payments", "import", str(FIXTURES / "revtrak.csv"), "--preset", "revtrak",
        "--report", str(tmp_path / "no-such-folder" / "report.csv"),
    )  # fmt: skip
    assert nowhere.exit_code == 1 and "can't be written there" in said(nowhere)
    assert _count_now(m.Payment) == 0


def test_a_refused_permission_exits_2(cli_db: list[int]) -> None:
    revtrak = str(FIXTURES / "revtrak.csv")
    refused = invoke(
        "payments", "import", revtrak, "--preset", "revtrak", "--as", "tech@district.org"
    )
    assert refused.exit_code == 2, refused.output
    assert "does not have the Record Payments permission" in said(refused)
    unknown = invoke(
        "payments", "import", revtrak, "--preset", "revtrak", "--as", "who@district.org"
    )
    assert unknown.exit_code == 2 and "No active staff member" in said(unknown)
    assert _count_now(m.Payment) == 0
    assert _count_now(m.ActivityEntry, m.ActivityEntry.action == "refused") == 1
