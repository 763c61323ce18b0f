"""Every CSV file a command writes, on a district whose names, references and amounts are
hostile (`=1+1`, `@SUM(A1)`, `+cmd|' /C calc'!A0`...): no cell may be one a spreadsheet runs as
a formula, and amounts the product formats (`-12.50`) stay plain numbers. Real `devicecare`
commands against a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import typer
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from bot.cli import app
from bot.settings import get_settings
from storage.db import create_engine, session_factory
from storage.reports import CATALOGUE
from storage.uow import UnitOfWorkFactory
from tests.builders import add_staff
from tests.csv_cells import HOSTILE, neutralised_seen, rows_of, seed_hostile_text, unsafe_cells
from tests.report_incident_district import build_report_district
from tests.report_money_district import build_money_district
from workflows.clock import FixedClock

YEAR = ["--from", "2025-07-01", "--to", "2026-03-02"]
CLERK = "csv.clerk@district.org"
ROOT = Path(__file__).resolve().parents[2]

# A portal export (RevTrak's columns) whose references, payers, dates and amounts are hostile.
PAYMENTS = (
    "Order Number,Order Date,Customer Name,ITEM DESCRIPTION,Amount,Status\r\n"
    "=1+1,02/03/2026,@SUM(A1),Device fee INV-000099,$5.00,Complete\r\n"
    "+cmd|' /C calc'!A0,02/03/2026,-2+3,INV-000008,=1+1,Complete\r\n"
    "RT-3,02/04/2026,Maria Rivera,Refund INV-000008,(12.50),Refunded\r\n"
    "RT-4,=NOW(),Maria Rivera,INV-000008,$1.00,Complete\r\n"
    'RT-5,02/05/2026,"\t=1+1",Technology fee,@SUM(A1),Complete\r\n'
    '"=HYPERLINK(""http://attacker.example"")",02/05/2026,Jo,INV-000008,-2+3,Complete\r\n'
)


@pytest.fixture
def hostile_db(
    database_url: str, engine: AsyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """tests/report_money_district.py and tests/report_incident_district.py, with hostile text
    in every column the reports show."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("DISTRICT_TIMEZONE", "America/Chicago")
    monkeypatch.setenv("PAYMENT_PORTAL_NAME", "RevTrak")
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()

    async def build() -> None:
        db = create_engine(database_url)
        clock = FixedClock(datetime(2025, 6, 1, tzinfo=UTC))
        stores = UnitOfWorkFactory(session_factory(db), clock)
        try:
            await build_money_district(stores, clock)
            await seed_hostile_text(stores)  # which also frees the SIS ids both districts use
            await build_report_district(stores, clock)  # incidents, offenders, closures
            await add_staff(stores, "Billing Clerk", CLERK)
            await seed_hostile_text(stores)
        finally:
            await db.dispose()

    asyncio.run(build())
    yield database_url
    get_settings.cache_clear()


def run(*args: str) -> None:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "220"})
    assert result.exit_code == 0, (args, result.output)


def csv_commands(folder: Path) -> dict[str, list[str]]:
    """Every command that writes a CSV file, with the file it writes."""
    commands = {
        name: ["report", name, *YEAR, "--csv", str(folder / f"{name}.csv")]
        for name in sorted(CATALOGUE)
        if name != "cancelled"  # `report cancelled` is the command below
    }
    commands["automation"] = ["report", "automation", "--csv", str(folder / "automation.csv")]
    commands["cancelled"] = ["report", "cancelled", *YEAR, "--csv", str(folder / "cancelled.csv")]
    export = folder / "portal.csv"
    export.write_text(PAYMENTS, encoding="utf-8", newline="")
    commands["payments-import"] = [
        "payments", "import", str(export), "--preset", "revtrak", "--dry-run",
        "--report", str(folder / "payments-import.csv"), "--as", CLERK,
    ]  # fmt: skip
    return commands


def test_every_csv_a_command_writes_is_safe_in_a_spreadsheet(
    hostile_db: str, tmp_path: Path
) -> None:
    files: dict[str, list[list[str]]] = {}
    for name, args in csv_commands(tmp_path).items():
        run(*args)
        path = Path(args[args.index("--report" if "--report" in args else "--csv") + 1])
        files[name] = rows_of(path.read_bytes())
        assert len(files[name]) > 1, f"{name} wrote no rows; the walk would prove nothing"

    for name, rows in files.items():
        assert unsafe_cells(rows) == [], name
    # The hostile strings did reach the files, as text.
    assert neutralised_seen(list(files.values())) == set(HOSTILE)

    payments = {row[0]: row for row in files["payments-import"][1:]}
    header = files["payments-import"][0]
    amount, date = header.index("amount"), header.index("date")
    assert payments["3"][amount] == "'=1+1"  # an unreadable amount is text, quoted
    assert payments["4"][amount] == "-12.50"  # a refund the product read stays a number
    assert payments["5"][date] == "'=NOW()"
    assert payments["6"][amount] == "'@SUM(A1)"
    assert payments["7"][amount] == "'-2+3"
    assert payments["2"][0] == "2" and payments["2"][header.index("reference")] == "'=1+1"
    # Amounts the reports format are numbers, negative ones included.
    money = [cell for rows in files.values() for row in rows[1:] for cell in row]
    assert any(re.fullmatch(r"-[0-9]+\.[0-9]{2}", c) for c in money)


def cli_commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, set[str]]]:
    """Every `devicecare` command, as its words and its option names."""
    subcommands = getattr(command, "commands", None)
    if subcommands is not None:
        for name, sub in subcommands.items():
            yield from cli_commands(sub, (*path, name))
        return
    yield " ".join(path), {o for p in command.params for o in getattr(p, "opts", ())}


def test_the_walk_covers_every_command_that_writes_a_csv(tmp_path: Path) -> None:
    writing = {
        words
        for words, options in cli_commands(typer.main.get_command(app))
        if options & {"--csv", "--report"}
    }
    walked = {" ".join(args[:2]) for args in csv_commands(tmp_path).values()}
    assert writing == walked


def test_the_product_has_one_csv_writer() -> None:
    """Only bot/csv_out.py makes a csv writer; everything else writes through it."""
    writers = re.compile(r"csv\.(writer|DictWriter)\(")
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("bot", "services", "storage", "workflows")
        for path in (ROOT / folder).rglob("*.py")
        if writers.search(path.read_text(encoding="utf-8")) and path.name != "csv_out.py"
    ]
    assert offenders == []
