"""`devicecare fees …` against a real SQLite database (the system clock: dates are relative)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner, Result

from bot.cli import app
from bot.settings import get_settings
from storage import models as m
from storage.db import create_engine as create_async_engine
from storage.db import session_factory
from storage.uow import UnitOfWorkFactory
from tests.builders import add_staff, add_students
from workflows.clock import SystemClock
from workflows.ledger import split_money
from workflows.school_year import school_year_of

DUE = (date.today() + timedelta(days=30)).isoformat()
YEAR = school_year_of(date.today()).label


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    db = tmp_path / "cli.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{db}")
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    assert invoke("db", "upgrade").exit_code == 0
    yield db
    get_settings.cache_clear()


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def said(result: Result) -> str:
    return " ".join(result.output.split())


def _query(db: Path, stmt: Any) -> list[Any]:
    engine = create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        rows = list(conn.execute(stmt).all())
    engine.dispose()
    return rows


def _invoices(db: Path) -> list[m.Invoice]:
    engine = create_engine(f"sqlite:///{db}")
    with Session(engine) as session:
        invoices = list(session.scalars(select(m.Invoice)))
    engine.dispose()
    return invoices


def _seed(db: Path) -> None:
    """North Middle: three 6th graders and two 7th graders; South Middle: two 6th graders."""

    async def seed() -> None:
        engine = create_async_engine(f"sqlite+aiosqlite:///{db}")
        stores = UnitOfWorkFactory(session_factory(engine), SystemClock())
        async with stores() as store:
            store.session.add_all(
                [m.Building(name="North Middle", sis_id="NM"), m.Building(name="South Middle")]
            )
            await store.commit()
        await add_students(stores, 3, grade="6", building_id=1, sis_prefix="N6")
        await add_students(stores, 2, grade="7", building_id=1, sis_prefix="N7")
        await add_students(stores, 2, grade="6", building_id=2, sis_prefix="S6")
        await add_staff(stores, "Technician", "tech@district.org")
        await engine.dispose()

    asyncio.run(seed())


def test_add_list_preview_apply_and_rerun(cli_env: Path) -> None:
    _seed(cli_env)
    added = invoke(
        "fees", "add", "TECH-FEE", "--name", "Technology fee", "--year", YEAR, "--amount", "25.00",
        "--grades", "06, 7", "--buildings", "north middle", "--due", DUE,
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    assert "Added fee tech-fee" in said(added)
    assert "$25.00 per student, grades 6, 7; North Middle" in said(added)

    listed = invoke("fees", "list")
    assert listed.exit_code == 0, listed.output
    assert "tech-fee" in listed.output and "North" in listed.output

    preview = invoke("fees", "preview", "tech-fee", "--year", YEAR)
    assert preview.exit_code == 0, preview.output
    assert "students to bill now: 5" in said(preview)
    assert "total: $125.00" in said(preview)
    assert "already billed: 0" in said(preview)
    assert _query(cli_env, select(func.count()).select_from(m.Invoice)) == [(0,)]

    applied = invoke("fees", "apply", "tech-fee", "--year", YEAR)
    assert applied.exit_code == 0, applied.output
    assert "5 invoice(s) created, $125.00 in all, 5 email(s) queued" in said(applied)
    rerun = invoke("fees", "apply", "tech-fee")
    assert rerun.exit_code == 0, rerun.output
    assert "0 invoice(s) created" in said(rerun) and "5 student(s) had already" in said(rerun)
    invoices = _invoices(cli_env)
    assert len(invoices) == 5
    assert all(split_money(i).adds_up() for i in invoices)
    assert {i.due_date.isoformat() for i in invoices} == {DUE}
    labels = _query(
        cli_env, select(m.ActivityEntry.actor_label).where(m.ActivityEntry.action == "fee_applied")
    )
    assert labels == [("Command line",), ("Command line",)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--amount", "-5"], "is negative"),
        (["--amount", "0"], "more than $0.00"),
        (["--amount", "12.345"], "more than two decimal places"),
        (["--grades", "6,14"], "isn't a grade"),
        (["--buildings", "West High"], "no building called “West High”"),
        (["--year", "2026-2028"], "isn't a school year"),
        (["--due", "2020-01-01"], "between today and three years out"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    cli_env: Path, args: list[str], message: str
) -> None:
    _seed(cli_env)
    base = {"--name": "Technology fee", "--amount": "25", "--year": YEAR}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    flat = [part for pair in base.items() for part in pair]
    result = invoke("fees", "add", "tech-fee", *flat)
    assert result.exit_code == 1, result.output
    assert message in said(result) and "Nothing was changed." in said(result)
    assert _query(cli_env, select(func.count()).select_from(m.AnnualFee)) == [(0,)]


def test_unknown_fee_and_refused_role(cli_env: Path) -> None:
    _seed(cli_env)
    unknown = invoke("fees", "apply", "nope", "--year", YEAR)
    assert unknown.exit_code == 1 and "There is no fee nope" in said(unknown)
    assert invoke("fees", "add", "tech-fee", "--name", "Tech", "--amount", "25").exit_code == 0
    refused = invoke("fees", "apply", "tech-fee", "--as", "tech@district.org")
    assert refused.exit_code == 1
    assert "does not have the Manage Fees permission" in said(refused)
    assert _query(cli_env, select(func.count()).select_from(m.Invoice)) == [(0,)]
    refusals = _query(
        cli_env, select(m.ActivityEntry.comment).where(m.ActivityEntry.action == "refused")
    )
    assert refusals and "fees apply" in refusals[0][0]
