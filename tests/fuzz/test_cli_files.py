"""Fuzzing every file the command line reads, through the real commands, on SQLite and
PostgreSQL: the roster folder (orgs.csv, users.csv) and device inventory of `devicecare import`,
the CSVs of `insurance import` and `insurance coverage import`, and the export and TOML mapping
of `payments import`.

Each case checks: no traceback and no exception out of the command; exit status 0 or 1; when
the command says it changed nothing, no row in any table changed; the ledger check passes
afterwards (`storage.reconcile.discrepancies` after each case, then `devicecare ledger check`).
The store is not reset between cases, so later files meet what earlier ones imported.

`FUZZ_EXAMPLES=5000 pytest -n 0 tests/fuzz/test_cli_files.py` runs a longer search.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, date, datetime
from itertools import count
from pathlib import Path
from typing import Any

import pytest
import typer
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool
from typer.testing import CliRunner, Result

from bot.cli.insurance import insurance_app
from bot.cli.ledger import ledger_app
from bot.cli.payments import payments_app
from bot.cli.roster import import_command
from bot.settings import get_settings
from storage import models as m
from storage.db import session_factory
from storage.reconcile import discrepancies
from storage.uow import UnitOfWorkFactory
from tests.builders import T0, add_district, add_enrollable_policy, add_student_with_device
from tests.csv_cells import rows_of, unsafe_cells
from tests.fuzz.csv_files import DATES, NUMBERS, csv_files, fuzz_settings, toml_mappings
from workflows.clock import FixedClock

# Cases per test in the test command, on SQLite; PostgreSQL runs a quarter of them.
EXAMPLES = {"roster": 45, "enrollments": 35, "coverage": 35, "payments": 55}
REFUSED = ("Nothing was changed", "nothing was written", "Nothing has been changed")

SIS_IDS = ("S1", "S2", "S3", "G1", "stu-9", "par-9", "B1", "org-9")
SERIALS = ("5CD1234XYZ", "5cd1234xyz", "PF0002", "NEW-1", "DMPX0009")
INVOICES = ("INV-000001", "INV-000002", "INV-000003", "inv 2", "3", "INV-999999")


def command_line() -> typer.Typer:
    """The commands that read files, mounted as bot/cli/main.py mounts them (the whole app takes a
    quarter of a second to build per call, which the fuzz can't afford)."""
    app = typer.Typer()
    app.callback()(lambda: None)
    app.command("import")(import_command)
    app.add_typer(insurance_app, name="insurance")
    app.add_typer(payments_app, name="payments")
    app.add_typer(ledger_app, name="ledger")
    return app


APP = command_line()


@dataclass
class World:
    url: str
    folder: Path
    files: Iterator[int]

    def path(self, name: str) -> Path:
        case = self.folder / f"case-{next(self.files)}"
        case.mkdir()
        return case / name


async def _seed(stores: UnitOfWorkFactory) -> None:
    district = await add_district(stores)
    await add_student_with_device(stores, sis_id="S2", serial="PF0002")
    await add_enrollable_policy(
        stores,
        name="Device Plan",
        term=(date(2020, 8, 1), date(2099, 7, 31)),
        window=(None, None),
    )
    async with stores() as store:  # three invoices whose ledger adds up: lines, a payment
        for total, paid, status in (
            (10_000, 0, "unpaid"),
            (5_000, 0, "unpaid"),
            (2_000, 2_000, "paid"),
        ):
            invoice = m.Invoice(
                number=await store.invoices.next_number("INV"),
                student_id=district.student_id,
                status=status,
                subtotal_cents=total,
                insurance_cents=0,
                total_cents=total,
                paid_cents=paid,
                due_date=date(2026, 2, 28),
                created_at=T0,
            )
            store.session.add(invoice)
            await store.session.flush()
            store.session.add(
                m.InvoiceLine(
                    invoice_id=invoice.id, position=1, description="Screen", kind="part",
                    unit_cents=total, amount_cents=total,
                )
            )  # fmt: skip
            if paid:
                store.session.add(
                    m.Payment(
                        invoice_id=invoice.id, amount_cents=paid, method="check",
                        received_on=date(2026, 1, 20), recorded_at=T0,
                        idempotency_key=f"seed-{invoice.id}",
                    )
                )  # fmt: skip
        await store.commit()


def _engine(url: str) -> AsyncEngine:
    # NullPool: each snapshot runs in its own event loop.
    return create_async_engine(url, poolclass=NullPool)


async def _with_stores(url: str, work: Any) -> Any:
    engine = _engine(url)
    try:
        return await work(UnitOfWorkFactory(session_factory(engine), FixedClock(datetime.now(UTC))))
    finally:
        await engine.dispose()


Rows = dict[str, list[tuple[Any, ...]]]


def _rows(url: str) -> Rows:
    """Every row of every table, to tell whether a command changed anything."""
    tables = [t.name for t in m.Base.metadata.sorted_tables]
    if url.startswith("sqlite"):  # the standard library's driver: a snapshot in a few ms
        with closing(sqlite3.connect(str(make_url(url).database))) as db:
            return {t: db.execute(f'SELECT * FROM "{t}" ORDER BY rowid').fetchall() for t in tables}
    return asyncio.run(_pg_rows(url, tables))


async def _pg_rows(url: str, tables: list[str]) -> Rows:
    engine = _engine(url)
    try:
        async with engine.connect() as conn:
            return {
                t: [tuple(r) for r in await conn.execute(text(f'SELECT * FROM "{t}" ORDER BY 1'))]
                for t in tables
            }
    finally:
        await engine.dispose()


async def _ledger(url: str) -> list[str]:
    """What the ledger check finds wrong (nothing, in a consistent store)."""
    engine = _engine(url)
    try:
        async with AsyncSession(engine) as session:
            return [d.describe() for d in await discrepancies(session)]
    finally:
        await engine.dispose()


@pytest.fixture
def world(
    engine: AsyncEngine,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[World]:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("PAYMENT_PORTAL_NAME", "RevTrak")
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    asyncio.run(_with_stores(database_url, _seed))
    assert asyncio.run(_ledger(database_url)) == []  # the ledger adds up before any case
    yield World(database_url, tmp_path, count())
    # After every case: the ledger as the command line checks it.
    check = CliRunner().invoke(APP, ["ledger", "check"])
    assert check.exit_code == 0 and "all consistent" in check.output, check.output
    get_settings.cache_clear()


def examples(world: World, name: str) -> Any:
    default = EXAMPLES[name]
    return fuzz_settings(default if world.url.startswith("sqlite") else max(default // 4, 5))


def run(world: World, *args: str) -> Result:
    """The command on the file(s), checked against the properties every case must keep."""
    before = _rows(world.url)
    result = CliRunner().invoke(APP, list(args))
    output = result.output
    assert "Traceback" not in output, output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{result.exception!r} escaped the command:\n{output}")
    assert result.exit_code in (0, 1), output
    if any(words in output for words in REFUSED):
        after = _rows(world.url)
        changed = [name for name in before if before[name] != after[name]]
        assert changed == [], f"refused, yet {changed} changed:\n{output}"
    found = asyncio.run(_ledger(world.url))
    assert found == [], f"ledger check after {args}: {found}"
    return result


# --- the roster folder and the device inventory -------------------------------------------------

ORG_VALUES = {
    "sourcedid": SIS_IDS,
    "name": ("Lincoln Middle", "Riverside"),
    "type": ("school", "district", "SCHOOL", "planet"),
}
USER_VALUES = {
    "sourcedid": SIS_IDS,
    "role": ("student", "parent", "guardian", "relativeOf", "teacher", "janitor"),
    "givenname": ("Ana", "Leo"),
    "familyname": ("Rivera", "Chen"),
    "orgsourcedids": ("B1", "org-9", "B1,org-9"),
    "agentsourcedids": ("G1", "par-9", "S1,S2"),
    "grades": ("07", "KG", "13", "PK,01"),
    "status": ("active", "tobedeleted", "gone"),
    "email": ("ana@example.org", "not-an-email"),
}
DEVICE_VALUES = {
    "serialnumber": SERIALS,
    "annotateduser": ("S1", "stu-9", "ana@example.org"),
    "annotatedlocation": ("B1", "Lincoln Middle", "Atlantis"),
    "annotatedassetid": ("LMS-0001", "LMS-0002"),
    "model": ("HP Chromebook 11 G9 EE", "iPad"),
    "status": ("ACTIVE", "DEPROVISIONED"),
}


def test_roster_and_device_files(world: World) -> None:
    @examples(world, "roster")
    @given(
        orgs=csv_files(("sourcedId", "name", "type"), ORG_VALUES),
        users=csv_files(
            (
                "sourcedId",
                "role",
                "givenName",
                "familyName",
                "orgSourcedIds",
                "agentSourcedIds",
                "grades",
                "status",
                "email",
            ),
            USER_VALUES,
        ),  # fmt: skip
        devices=st.none()
        | csv_files(
            (
                "serialNumber",
                "annotatedUser",
                "annotatedLocation",
                "annotatedAssetId",
                "model",
                "status",
            ),
            DEVICE_VALUES,
        ),  # fmt: skip
        strict=st.booleans(),
    )
    def case(orgs: bytes, users: bytes, devices: bytes | None, strict: bool) -> None:
        folder = world.path("orgs.csv").parent
        (folder / "orgs.csv").write_bytes(orgs)
        (folder / "users.csv").write_bytes(users)
        args = ["import", str(folder), "--database-url", world.url]
        if devices is not None:
            (folder / "devices.csv").write_bytes(devices)
            args += ["--devices", str(folder / "devices.csv")]
        run(world, *args, *(["--strict"] if strict else []))

    case()


# --- insurance enrollments and device coverage ------------------------------------------------


def test_enrollment_files(world: World) -> None:
    values = {
        "student_id": ("S1", "S2", "S9"),
        "policy": ("Device Plan", "1", "device plan", "No Such Plan"),
        "waiver_reason": ("Free lunch", ""),
    }

    @examples(world, "enrollments")
    @given(data=csv_files(("student_id", "policy", "waiver_reason"), values), apply=st.booleans())
    def case(data: bytes, apply: bool) -> None:
        path = world.path("enroll.csv")
        path.write_bytes(data)
        run(world, "insurance", "import", str(path), *(["--apply"] if apply else []))

    case()


def test_coverage_files(world: World) -> None:
    values = {
        "serial": SERIALS,
        "plan": ("AppleCare+ for Schools", "Warranty"),
        "coverage_start": ("2025-09-01", "09/01/2025", *DATES),
        "coverage_end": ("2027-08-31", "2024-01-01", *DATES),
        "provider": ("Apple", "Dell"),
    }
    columns = ("serial", "plan", "coverage_start", "coverage_end", "provider")

    @examples(world, "coverage")
    @given(data=csv_files(columns, values), dry_run=st.booleans())
    def case(data: bytes, dry_run: bool) -> None:
        path = world.path("coverage.csv")
        path.write_bytes(data)
        run(
            world, "insurance", "coverage", "import", str(path), *(["--dry-run"] if dry_run else [])
        )

    case()


# --- payment portal exports and their mapping files --------------------------------------------


def test_payment_files(world: World) -> None:
    values = {
        "reference": ("T-1", "T-2", "RT-1001", ""),
        "invoice": (*INVOICES, "Device fee INV-000001 Ana", "INV-1 and INV-2"),
        "amount": ("10.00", "$25.00", "(5.00)", "60", "100000000", *NUMBERS),
        "date": ("2026-02-01", "2026-02-01T23:30:00-06:00", "2030-01-01", *DATES),
        "payer": ("Maria Rivera",),
    }
    columns = ("reference", "invoice", "amount", "date", "payer")

    @examples(world, "payments")
    @given(
        data=csv_files(columns, values, delimiters=",;\t"),
        mapping=st.one_of(st.none(), st.none(), st.none(), toml_mappings()),
        preset=st.sampled_from([None, None, None, "revtrak", "myschoolbucks", "nope"]),
        dry_run=st.booleans(),
    )
    def case(data: bytes, mapping: bytes | None, preset: str | None, dry_run: bool) -> None:
        path = world.path("export.csv")
        path.write_bytes(data)
        report = path.with_name("report.csv")
        args = ["payments", "import", str(path), "--report", str(report)]
        if mapping is not None:
            path.with_name("mapping.toml").write_bytes(mapping)
            args += ["--mapping", str(path.with_name("mapping.toml"))]
        if preset is not None:
            args += ["--preset", preset]
        run(world, *args, *(["--dry-run"] if dry_run else []))
        if report.exists():  # whatever the file held, the report runs no formula
            assert unsafe_cells(rows_of(report.read_bytes())) == []

    case()
