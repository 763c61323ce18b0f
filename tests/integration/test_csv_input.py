"""Every importer reads its file through one layer (`storage.csv_in`): through the real commands,
bad bytes, bad headers and bad rows are reported with their line and never stop the good rows.

The NUL byte is the database-specific case (PostgreSQL refuses it in text, SQLite stores it), so
those tests run on both; the rest are about reading the file and run on SQLite.
"""

from __future__ import annotations

import asyncio
import csv
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner, Result

from bot.cli import app
from bot.settings import get_settings
from storage import models as m
from storage.db import create_engine, session_factory
from storage.uow import UnitOfWorkFactory
from tests.integration.billing_helpers import add_family, add_invoice
from workflows.clock import SystemClock

DISTRICT = Path(__file__).parent.parent / "fixtures" / "roster" / "district"
USERS = (DISTRICT / "users.csv").read_text()
ORGS = (DISTRICT / "orgs.csv").read_text()
DEVICES = (DISTRICT / "devices.csv").read_text()


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def said(result: Result) -> str:
    """The output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def clean(result: Result) -> None:
    """No traceback, and no exception escaped the command."""
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output


def _run(url: str, work: Any) -> Any:
    async def go() -> Any:
        engine = create_engine(url)
        try:
            return await work(UnitOfWorkFactory(session_factory(engine), SystemClock()))
        finally:
            await engine.dispose()

    return asyncio.run(go())


def count(url: str, model: Any, *where: Any) -> int:
    async def work(stores: UnitOfWorkFactory) -> int:
        async with stores() as store:
            stmt = select(func.count()).select_from(model).where(*where)
            result = int((await store.session.execute(stmt)).scalar_one())
            await store.commit()
            return result

    return int(_run(url, work))


def sis_ids(url: str) -> set[str]:
    async def work(stores: UnitOfWorkFactory) -> set[str]:
        async with stores() as store:
            result = set((await store.session.execute(select(m.Student.sis_id))).scalars())
            await store.commit()
            return result

    return set(_run(url, work))


@pytest.fixture
def sqlite_url(
    tmp_path: Path, sqlite_template: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    db = tmp_path / "devicecare.db"
    db.write_bytes(sqlite_template.read_bytes())
    url = f"sqlite+aiosqlite:///{db}"
    monkeypatch.setenv("DATABASE_URL", url)
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


@pytest.fixture
def any_url(
    engine: AsyncEngine, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """SQLite and PostgreSQL (emptied by `engine`), as the commands' DATABASE_URL."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    get_settings.cache_clear()
    yield database_url
    get_settings.cache_clear()


def roster(folder: Path, *, orgs: str = ORGS, users: str | bytes = USERS) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "orgs.csv").write_text(orgs)
    if isinstance(users, bytes):
        (folder / "users.csv").write_bytes(users)
    else:
        (folder / "users.csv").write_text(users)
    return folder


def import_roster(url: str, folder: Path, *extra: str) -> Result:
    result = invoke("import", str(folder), "--database-url", url, *extra)
    clean(result)
    return result


# --- roster -------------------------------------------------------------------------------------


def test_a_nul_in_one_roster_field_refuses_that_row_only(any_url: str, tmp_path: Path) -> None:
    users = USERS.replace("Leo,Rivera", "Le\x00o,Rivera")
    result = import_roster(any_url, roster(tmp_path / "r", users=users))

    assert result.exit_code == 0, result.output
    assert "users.csv:3: givenName has a NUL byte" in said(result)
    assert sis_ids(any_url) == {"stu-1", "stu-3", "stu-4", "stu-5"}


def test_a_control_character_refuses_the_device_row(any_url: str, tmp_path: Path) -> None:
    folder = roster(tmp_path / "r")
    devices = tmp_path / "devices.csv"
    devices.write_text(DEVICES.replace("Dell Latitude", "Dell\x1b[2J Latitude"))

    result = import_roster(any_url, folder, "--devices", str(devices))

    assert result.exit_code == 0, result.output
    assert "devices.csv:5: model has a control character (U+001B)" in said(result)
    assert count(any_url, m.Device) == 4


@pytest.mark.parametrize(
    ("users", "expected"),
    [
        ("", "users.csv is empty"),
        ("\ufeff\r\n", "users.csv is empty"),
        ("id,first,last\nstu-1,Ana,Rivera\n", "users.csv has no column sourcedId, role"),
    ],
)
def test_an_empty_or_wrongly_headed_roster_file_exits_1(
    sqlite_url: str, tmp_path: Path, users: str, expected: str
) -> None:
    result = import_roster(sqlite_url, roster(tmp_path / "r", users=users))

    assert result.exit_code == 1, result.output
    text = said(result)
    assert expected in text
    assert "sourcedId, role, givenName, familyName" in text  # the columns it needs
    assert "Nothing was changed." in text
    assert count(sqlite_url, m.Building) == 0


def test_a_refused_roster_never_touches_the_database(tmp_path: Path) -> None:
    db = tmp_path / "never.db"
    result = import_roster(f"sqlite+aiosqlite:///{db}", roster(tmp_path / "r", users=""))

    assert result.exit_code == 1, result.output
    assert not db.exists()  # refused before the database was even migrated


def test_an_unclosed_quote_is_reported_where_it_starts(sqlite_url: str, tmp_path: Path) -> None:
    users = USERS.replace('"par-2,par-3"', '"par-2,par-3')  # stu-3, line 4
    result = import_roster(sqlite_url, roster(tmp_path / "r", users=users))

    assert result.exit_code == 0, result.output
    text = said(result)
    # The stray quote pairs with the first quote of line 6; lines 5 and 6 are read again.
    assert "users.csv:4: a quote opened on this line closes only on line 6" in text
    assert "users.csv:5" not in text and "users.csv:6" not in text
    assert sis_ids(sqlite_url) == {"stu-1", "stu-2", "stu-4", "stu-5"}


def test_a_quote_never_closed_is_reported_where_it_starts(sqlite_url: str, tmp_path: Path) -> None:
    users = (
        "sourcedId,role,givenName,familyName,orgSourcedIds,grades\n"
        "stu-1,student,Ana,Rivera,org-hms,07\n"
        'stu-2,student,Leo,"Rivera,org-res,05\n'
        "stu-3,student,Mia,Chen,org-hms,06\n"
        "stu-4,student,Noah,Patel,org-res,KG\n"
    )
    result = import_roster(sqlite_url, roster(tmp_path / "r", users=users))

    assert result.exit_code == 0, result.output
    assert "users.csv:3: a quote opened on this line is never closed" in said(result)
    assert "users.csv:4" not in said(result)
    assert sis_ids(sqlite_url) == {"stu-1", "stu-3", "stu-4"}


def test_bytes_that_are_not_utf8_are_refused_with_their_line(
    sqlite_url: str, tmp_path: Path
) -> None:
    users = USERS.replace("Okafor", "Ok\u00e1for").encode("cp1252")
    result = import_roster(sqlite_url, roster(tmp_path / "r", users=users))

    assert result.exit_code == 1, result.output
    assert "users.csv line 6 is not UTF-8 text (byte 0xE1)" in said(result)
    assert count(sqlite_url, m.Building) == 0


def test_line_numbers_count_quoted_newlines(sqlite_url: str, tmp_path: Path) -> None:
    lines = USERS.splitlines()
    lines[1] = lines[1].replace("Ana,Rivera", '"Ana\nMaria",Rivera')
    lines[2] = lines[2].replace("org-res,student", "org-res,janitor")
    result = import_roster(sqlite_url, roster(tmp_path / "r", users="\n".join(lines) + "\n"))

    assert "users.csv:4: unknown role 'janitor'" in said(result)


# --- insurance enrollments and device coverage ----------------------------------------------


def test_enrollment_file_problems(sqlite_url: str, tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    result = invoke("insurance", "import", str(empty))
    clean(result)
    assert result.exit_code == 1
    assert "empty.csv is empty" in said(result) and "student_id, policy" in said(result)

    rows = tmp_path / "enroll.csv"
    rows.write_text('student_id,policy\nS1,Plan\x00\nS2,"Plan\nS3,Plan\n')
    result = invoke("insurance", "import", str(rows))
    clean(result)
    text = said(result)
    assert result.exit_code == 1
    assert "2 error policy has a NUL byte" in text
    assert "3 error a quote opened on this line is never closed" in text
    assert "4 S3 Plan error unknown student S3" in text


def test_coverage_file_problems(sqlite_url: str, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("serial,plan\nX1,AppleCare\n")
    result = invoke("insurance", "coverage", "import", str(wrong))
    clean(result)
    assert result.exit_code == 1
    text = said(result)
    assert "wrong.csv has no column coverage_start, coverage_end" in text
    assert "Nothing was changed." in text

    rows = tmp_path / "cover.csv"
    rows.write_text(
        "serial,plan,coverage_start,coverage_end\n"
        "X1,Apple\x07Care,2025-09-01,2027-08-31\n"
        'X2,"AppleCare,2025-09-01,2027-08-31\n'
        "X3,AppleCare,2025-09-01,2027-08-31\n"
    )
    result = invoke("insurance", "coverage", "import", str(rows))
    clean(result)
    text = said(result)
    assert "cover.csv:2: plan has a control character (U+0007)" in text
    assert "cover.csv:3: a quote opened on this line is never closed" in text
    assert "cover.csv:4: unknown serial X3" in text


# --- payments -----------------------------------------------------------------------------------


def _one_invoice(url: str) -> None:
    async def work(stores: UnitOfWorkFactory) -> None:
        [student], _ = await add_family(stores, "Rivera")
        day = date(2026, 1, 10)
        await add_invoice(stores, student, created=day, due=date(2026, 2, 28), total_cents=10_000)

    _run(url, work)


def test_a_nul_in_a_payment_row_rejects_that_row(any_url: str, tmp_path: Path) -> None:
    _one_invoice(any_url)
    export = tmp_path / "portal.csv"
    export.write_text(
        "reference,invoice,amount,date,payer\n"
        "T-1,INV-000001,10.00,2026-02-01,Ma\x00ria\n"
        "T-2,INV-000001,15.00,2026-02-01,Maria\n"
    )
    report = tmp_path / "report.csv"
    result = invoke("payments", "import", str(export), "--report", str(report))
    clean(result)

    assert result.exit_code == 0, result.output
    rows = list(csv.reader(report.open(encoding="utf-8-sig")))
    assert rows[1][:2] == ["2", "rejected"] and rows[1][-1] == "payer has a NUL byte"
    assert count(any_url, m.Payment) == 1
    assert count(any_url, m.PaymentEvent, m.PaymentEvent.event_id == "T-1") == 0


def test_payment_file_problems(sqlite_url: str, tmp_path: Path) -> None:
    _one_invoice(sqlite_url)
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"\xef\xbb\xbf")
    result = invoke("payments", "import", str(empty))
    clean(result)
    assert result.exit_code == 1
    assert "The file is empty" in said(result) and '"invoice", "amount", "date"' in said(result)

    utf16 = tmp_path / "utf16.csv"
    utf16.write_bytes("invoice,amount,date\n".encode("utf-16"))
    result = invoke("payments", "import", str(utf16))
    clean(result)
    assert result.exit_code == 1 and "UTF-16" in said(result)

    export = tmp_path / "portal.csv"
    export.write_text(
        "reference,invoice,amount,date\n"
        'T-1,"INV-000001,10.00,2026-02-01\n'
        "T-2,INV-000001,15.00,2026-02-01\n"
    )
    report = tmp_path / "report.csv"
    result = invoke("payments", "import", str(export), "--report", str(report))
    clean(result)
    assert result.exit_code == 0
    rows = list(csv.reader(report.open(encoding="utf-8-sig")))
    assert [(r[0], r[-1]) for r in rows[1:]] == [
        ("2", "a quote opened on this line is never closed")
    ]
    assert count(sqlite_url, m.Payment) == 1


def test_a_payment_dated_past_the_calendar_is_a_rejected_row(
    sqlite_url: str, tmp_path: Path
) -> None:
    """Found by the fuzz suite: a UTC offset moved these days out of Python's date range."""
    _one_invoice(sqlite_url)
    export = tmp_path / "portal.csv"
    export.write_text(
        "reference,invoice,amount,date\n"
        "T-1,INV-000001,5.00,9999-12-31T23:59:59-12:00\n"
        "T-2,INV-000001,5.00,0001-01-01T00:00:00+14:00\n"
        "T-3,INV-000001,5.00,2026-02-01\n"
    )
    report = tmp_path / "report.csv"
    result = invoke("payments", "import", str(export), "--report", str(report))
    clean(result)

    assert result.exit_code == 0, result.output
    rows = list(csv.reader(report.open(encoding="utf-8-sig")))
    assert [(r[0], r[1]) for r in rows[1:]] == [("2", "rejected"), ("3", "rejected")]
    assert count(sqlite_url, m.Payment) == 1
