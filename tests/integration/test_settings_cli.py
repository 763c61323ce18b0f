"""`devicecare settings show|set` against a real SQLite database: the same checks as Slack,
bad input changes nothing, and every change is audited with who made it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select
from typer.testing import CliRunner, Result

from bot.cli import app
from bot.settings import get_settings
from storage import models as m
from storage.db import create_engine as create_async_engine
from storage.db import session_factory
from storage.uow import UnitOfWorkFactory
from tests.builders import add_staff
from workflows.clock import SystemClock


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    db = tmp_path / "cli.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{db}")
    monkeypatch.chdir(tmp_path)
    for name in ("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "PAYMENT_PORTAL_URL_TEMPLATE"):
        monkeypatch.delenv(name, raising=False)
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


def _settings(db: Path) -> Any:
    [row] = _query(db, select(m.DistrictSettings.__table__))
    return row


def _add_staff(db: Path, role: str, email: str) -> None:
    async def seed() -> None:
        engine = create_async_engine(f"sqlite+aiosqlite:///{db}")
        await add_staff(UnitOfWorkFactory(session_factory(engine), SystemClock()), role, email)
        await engine.dispose()

    asyncio.run(seed())


def test_set_and_show_the_district_facts(cli_env: Path) -> None:
    shown = invoke("settings", "show")
    assert shown.exit_code == 0, shown.output
    assert "District name (not set)" in said(shown)
    assert "Ways to pay offered: none" in said(shown)

    result = invoke(
        "settings",
        "set",
        "--district-name",
        "Lakeview Unified",
        "--check-address",
        "Business Office / 410 Harbor Rd / Lakeview, MN 55001",
        "--office-phone",
        "(555) 010-4477",
        "--office-hours",
        "Mon-Fri 8:00-4:00",
        "--office-email",
        "billing@lakeview.example",
    )
    assert result.exit_code == 0, result.output
    assert "District name: (not set) → Lakeview Unified" in said(result)
    row = _settings(cli_env)
    assert row.district_name == "Lakeview Unified"
    assert row.check_mailing_address == "Business Office\n410 Harbor Rd\nLakeview, MN 55001"
    assert (row.office_phone, row.office_hours, row.office_email) == (
        "(555) 010-4477",
        "Mon-Fri 8:00-4:00",
        "billing@lakeview.example",
    )
    [entry] = _query(
        cli_env,
        select(m.ActivityEntry).where(m.ActivityEntry.action == "district_facts_changed"),
    )
    assert entry.actor_label == "Command line" and entry.entity_type == "settings"
    assert entry.before["district_name"] == "" and entry.after["office_phone"] == "(555) 010-4477"

    shown = invoke("settings", "show")
    assert "Business Office, 410 Harbor Rd, Lakeview, MN 55001" in said(shown)
    assert "Ways to pay offered: check by mail, in person at the business office" in said(shown)

    # Setting the same again changes (and logs) nothing; "" clears one fact only.
    again = invoke("settings", "set", "--office-phone", "(555) 010-4477")
    assert again.exit_code == 0 and "Nothing changed" in said(again)
    cleared = invoke("settings", "set", "--office-hours", "")
    assert cleared.exit_code == 0, cleared.output
    row = _settings(cli_env)
    assert row.office_hours == "" and row.office_phone == "(555) 010-4477"
    entries = _query(
        cli_env,
        select(m.ActivityEntry.before, m.ActivityEntry.after).where(
            m.ActivityEntry.action == "district_facts_changed"
        ),
    )
    assert len(entries) == 2
    assert entries[-1] == ({"office_hours": "Mon-Fri 8:00-4:00"}, {"office_hours": ""})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--office-email", "billing at lakeview"], "must be an email address"),
        (["--office-phone", "call us"], "must look like a phone number"),
        (["--office-hours", "h" * 121], "at most 120 characters"),
        (["--district-name", "n" * 201], "at most 200 characters"),
        (["--check-address", "Harbor Road"], "ZIP code"),
        # One bad fact refuses the others given with it.
        (["--district-name", "Lakeview", "--office-email", "x@"], "email address"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    cli_env: Path, args: list[str], message: str
) -> None:
    result = invoke("settings", "set", *args)
    assert result.exit_code == 1, result.output
    assert message in said(result) and "Nothing was changed." in said(result)
    row = _settings(cli_env)
    assert row.district_name == "" and row.office_email == "" and row.office_phone == ""
    assert _query(cli_env, select(m.ActivityEntry.id)) == []


def test_nothing_to_set_is_a_usage_error(cli_env: Path) -> None:
    result = invoke("settings", "set")
    assert result.exit_code == 2 and "at least one setting" in said(result)


def test_staff_need_manage_settings(cli_env: Path) -> None:
    _add_staff(cli_env, "Billing Clerk", "clerk@district.org")
    _add_staff(cli_env, "Finance Director", "fd@district.org")
    refused = invoke(
        "settings", "set", "--office-phone", "555-010-4477", "--as", "clerk@district.org"
    )
    assert refused.exit_code == 1
    assert "Manage Settings" in said(refused) and "Nothing was changed." in said(refused)
    assert _settings(cli_env).office_phone == ""
    [refusal] = _query(
        cli_env, select(m.ActivityEntry.comment).where(m.ActivityEntry.action == "refused")
    )
    assert "district settings" in refusal[0]

    done = invoke("settings", "set", "--office-phone", "555-010-4477", "--as", "fd@district.org")
    assert done.exit_code == 0, done.output
    [label] = _query(
        cli_env,
        select(m.ActivityEntry.actor_label).where(
            m.ActivityEntry.action == "district_facts_changed"
        ),
    )
    assert label[0] != "Command line"
    unknown = invoke("settings", "set", "--office-phone", "555-010-4477", "--as", "who@x.org")
    assert unknown.exit_code == 1 and "No active staff member" in said(unknown)


def test_the_it_contact_is_set_and_shown(cli_env: Path) -> None:
    result = invoke(
        "settings", "set", "--it-contact-name", "Dana Reyes", "--it-contact", "#IT-Help"
    )
    assert result.exit_code == 0, result.output
    row = _settings(cli_env)
    assert (row.it_contact_name, row.it_contact) == ("Dana Reyes", "#it-help")
    shown = said(invoke("settings", "show"))
    assert "IT contact Dana Reyes" in shown
    assert "IT contact email or Slack channel #it-help" in shown

    bad = invoke("settings", "set", "--it-contact", "call Dana")
    assert bad.exit_code != 0
    assert "email address or a Slack channel" in said(bad)
    assert _settings(cli_env).it_contact == "#it-help"
