"""`devicecare report <name>` for catalogue reports, and `report weekly-digest`, against a real
database (SQLite and PostgreSQL) holding tests/report_incident_district.py: the CSV it writes is
byte for byte what `/report` uploads to Slack, and bad input exits 1 with a clear message."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from bot.cli import app
from bot.reports.csv_rows import csv_bytes
from bot.settings import get_settings
from storage.db import create_engine, session_factory
from storage.reports import run_report
from storage.uow import UnitOfWorkFactory
from tests.builders import add_staff
from tests.report_incident_district import TZ, build_report_district
from workflows.clock import FixedClock
from workflows.reports import ReportFilters, ReportResult

WIDE = {"COLUMNS": "220"}
FEB = ["--from", "2026-02-01", "--to", "2026-02-28"]


async def _build(url: str) -> None:
    engine = create_engine(url)
    stores = UnitOfWorkFactory(
        session_factory(engine), FixedClock(datetime(2026, 1, 1, tzinfo=UTC))
    )
    try:
        await build_report_district(stores, stores.clock)  # type: ignore[arg-type]
        await add_staff(stores, "Technician", "tech@district.org")
        await add_staff(stores, "Billing Clerk", "clerk@district.org")
    finally:
        await engine.dispose()


async def _direct(url: str, name: str, **filters: tuple[str, ...]) -> ReportResult:
    """The report as /report computes it, straight from the store."""
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            return await run_report(
                session,
                name,
                ReportFilters(date(2026, 2, 1), date(2026, 2, 28), **filters),
                tz=TZ,
                today=date(2026, 3, 2),
            )
    finally:
        await engine.dispose()


@pytest.fixture
def cli_db(
    database_url: str, engine: AsyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("DISTRICT_TIMEZONE", "America/Chicago")
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    asyncio.run(_build(database_url))
    yield database_url
    get_settings.cache_clear()


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["report", *args], env=WIDE)
    return result.exit_code, result.output


def test_every_catalogue_report_is_a_command() -> None:
    from storage.reports import CATALOGUE

    code, output = invoke("--help")
    assert code == 0
    for name in CATALOGUE:
        assert name in output
    assert "weekly-digest" in output and "automation" in output


def test_csv_and_chart_match_slack(cli_db: str, tmp_path: Path) -> None:
    out, chart = tmp_path / "by-type.csv", tmp_path / "by-type.png"
    code, output = invoke("incidents-by-type", *FEB, "--csv", str(out), "--chart", str(chart))
    assert code == 0, output
    assert "7 incidents happened" in output
    assert "Wrote 4 row(s)" in output
    rows = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert rows == [
        ["type", "incidents", "percent_of_incidents"],
        ["screen", "4", "57.1"],
        ["physical_damage", "3", "42.9"],
        ["lost", "1", "14.3"],
        ["water", "1", "14.3"],
    ]
    direct = asyncio.run(_direct(cli_db, "incidents-by-type"))
    assert out.read_bytes() == csv_bytes(direct, TZ)
    image = Image.open(chart)
    assert image.format == "PNG"
    assert image.info["Title"] == "Incidents by type per day, 2026-02-01 to 2026-02-28"


def test_filters_and_money_columns(cli_db: str, tmp_path: Path) -> None:
    out = tmp_path / "grade7.csv"
    code, output = invoke("incidents-by-type", *FEB, "--grade", "7", "--csv", str(out))
    assert code == 0, output
    assert out.read_text(encoding="utf-8").splitlines()[1:] == [
        "screen,4,80.0",
        "physical_damage,3,60.0",
    ]

    money = tmp_path / "invoices.csv"
    code, output = invoke(
        "invoices",
        *FEB,
        "--building",
        "Washington High",
        "--csv",
        str(money),
        "--as",
        "clerk@district.org",
    )
    assert code == 0, output
    direct = asyncio.run(_direct(cli_db, "invoices", buildings=("Washington High",)))
    assert money.read_bytes() == csv_bytes(direct, TZ)
    rows = list(csv.DictReader(io.StringIO(money.read_text(encoding="utf-8"))))
    # Cara's water damage: $200.00 billed, $190.00 covered by insurance.
    assert [(r["billed"], r["covered"]) for r in rows] == [("200.00", "190.00")]


def test_bad_input_exits_1(cli_db: str, tmp_path: Path) -> None:
    for args, said in (
        (("invoices", *FEB, "--as", "tech@district.org"), "View Financial Reports"),
        (("invoices", *FEB, "--as", "nobody@district.org"), "No active staff member"),
        (("incidents-by-type", "--range", "someday"), "isn't a range"),
        (("incidents-by-type", "--from", "2026-02-30"), "isn't a date"),
        (("incidents-by-type", "--from", "2026-03-01", "--to", "2026-02-01"), "ends before"),
        (("incidents-by-type", *FEB, "--building", "Nowhere"), "no building called"),
        (("repeat-offenders", *FEB, "--chart", str(tmp_path / "x.png")), "no trend"),
    ):
        code, output = invoke(*args)
        assert code == 1, (args, output)
        assert said in " ".join(output.split()), (args, output)
    assert not (tmp_path / "x.png").exists()


def test_weekly_digest_command(cli_db: str) -> None:
    code, output = invoke("weekly-digest", "--week", "2026-02-18")
    assert code == 0, output
    assert "Weekly digest 2026-02-16 to 2026-02-22" in output
    assert "Incidents opened: 2" in output and "Incidents closed: 2" in output
    assert "New repeat offenders: 2: Ana Rivera (Physical Damage, Screen); Ben Cole (Screen)" in (
        " ".join(output.split())
    )
