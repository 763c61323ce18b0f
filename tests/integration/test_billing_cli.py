"""`devicecare billing …` against a real SQLite database."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select
from typer.testing import CliRunner, Result

from bot.cli import app
from bot.settings import get_settings
from services.billing_run import LOCK_NAME
from storage import models as m
from storage.db import create_engine as create_async_engine
from storage.db import session_factory
from storage.run_lock import exclusive
from storage.uow import UnitOfWorkFactory
from tests.integration.billing_helpers import add_family, add_invoice
from workflows.clock import FixedClock
from workflows.i18n import set_staff_language


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
    """The output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def _rows(db: Path, model: Any, *where: Any) -> list[Any]:
    engine = create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        rows = list(conn.execute(select(model).where(*where)).all())
    engine.dispose()
    return rows


def _count(db: Path, model: Any, *where: Any) -> int:
    engine = create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        value = conn.execute(select(func.count()).select_from(model).where(*where)).scalar_one()
    engine.dispose()
    return int(value)


def _settings(db: Path) -> Any:
    (row,) = _rows(db, m.DistrictSettings)
    return row


def _activity(db: Path, entity_type: str) -> list[Any]:
    return _rows(db, m.ActivityEntry, m.ActivityEntry.entity_type == entity_type)


def _seed_invoices(db: Path) -> None:
    """A family with two guardians (invoice due April 1) and one nobody can email."""

    async def seed() -> None:
        engine = create_async_engine(f"sqlite+aiosqlite:///{db}")
        stores = UnitOfWorkFactory(
            session_factory(engine), FixedClock(datetime(2026, 1, 1, tzinfo=UTC))
        )
        (student,), _ = await add_family(stores, "Rivera", guardians=2)
        await add_invoice(stores, student, created=date(2026, 1, 1), due=date(2026, 4, 1))
        (unreachable,), _ = await add_family(stores, "Lee", guardians=0)
        await add_invoice(stores, unreachable, created=date(2026, 1, 1), due=date(2026, 3, 4))
        await engine.dispose()

    asyncio.run(seed())


# --- settings -----------------------------------------------------------------------------


def test_settings_show_and_set_only_what_is_given(cli_env: Path) -> None:
    shown = invoke("billing", "settings", "show")
    assert shown.exit_code == 0, shown.output
    assert "pre-due reminder days" in shown.output and "14, 7, 1" in shown.output
    assert "06:00 (America/Chicago)" in shown.output

    changed = invoke(
        "billing", "settings", "set", "--pre-due-days", "10, 3", "--run-time", "5:30",
        "--auto-cancel", "--auto-cancel-days", "45", "--no-automation-default",
    )  # fmt: skip
    assert changed.exit_code == 0, changed.output
    assert "pre-due reminder days: 14, 7, 1 → 10, 3" in changed.output
    assert "daily run time: 06:00 → 05:30" in changed.output
    settings = _settings(cli_env)
    assert settings.pre_due_days == [10, 3] and settings.daily_run_time == "05:30"
    assert settings.auto_cancel_enabled and settings.auto_cancel_days == 45
    assert not settings.automation_default
    # Untouched ones stay as they were.
    assert settings.overdue_days == [7, 14, 30] and settings.default_due_days == 90
    (entry,) = _activity(cli_env, "settings")
    assert entry.action == "billing_settings_changed" and entry.actor_label == "Command line"
    assert entry.actor_staff_id is None
    assert entry.after["daily_run_time"] == "05:30"

    again = invoke("billing", "settings", "set", "--run-time", "05:30")
    assert again.exit_code == 0 and "unchanged" in again.output
    assert len(_activity(cli_env, "settings")) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--overdue-days", "30,14,7"], "Each overdue notice must come later"),
        (["--pre-due-days", "soon"], "--pre-due-days takes whole numbers of days"),
        (["--run-time", "25:00"], "24-hour time"),
        (["--default-due-days", "5"], "fewer than 5 days before the due date"),
        (["--auto-cancel-days", "0"], "Auto-cancellation must be 1 to 730 days"),
    ],
)
def test_invalid_settings_exit_non_zero_and_change_nothing(
    cli_env: Path, args: list[str], message: str
) -> None:
    result = invoke("billing", "settings", "set", *args)
    assert result.exit_code == 1, result.output
    assert message in said(result) and "Nothing was changed." in said(result)
    settings = _settings(cli_env)
    assert settings.overdue_days == [7, 14, 30] and settings.daily_run_time == "06:00"
    assert settings.pre_due_days == [14, 7, 1] and settings.default_due_days == 90
    assert _activity(cli_env, "settings") == []


def test_settings_set_needs_something_to_set(cli_env: Path) -> None:
    result = invoke("billing", "settings", "set")
    assert result.exit_code == 2 and "at least one setting" in result.output


def test_as_staff_needs_manage_settings(cli_env: Path) -> None:
    assert invoke("staff", "add", "clerk@district.org", "--role", "Billing Clerk").exit_code == 0
    assert invoke("staff", "add", "fd@district.org", "--role", "Finance Director").exit_code == 0

    refused = invoke("billing", "settings", "set", "--run-time", "07:00", "--as",
                     "clerk@district.org")  # fmt: skip
    assert refused.exit_code == 1 and "Manage Settings" in refused.output
    assert _settings(cli_env).daily_run_time == "06:00"
    (refusal,) = _activity(cli_env, "security")
    assert refusal.action == "refused" and "billing settings" in refusal.comment

    unknown = invoke("billing", "settings", "set", "--run-time", "07:00", "--as", "x@district.org")
    assert unknown.exit_code == 1 and "No active staff member" in unknown.output

    allowed = invoke("billing", "settings", "set", "--run-time", "07:00", "--as", "FD@district.org")
    assert allowed.exit_code == 0, allowed.output
    (entry,) = _activity(cli_env, "settings")
    (director,) = _rows(cli_env, m.Staff, m.Staff.email == "fd@district.org")
    assert entry.actor_staff_id == director.id


# --- pauses -------------------------------------------------------------------------------


def test_pause_add_list_remove(cli_env: Path) -> None:
    empty = invoke("billing", "pause", "list")
    assert empty.exit_code == 0 and "no current or coming billing pauses" in empty.output

    added = invoke("billing", "pause", "add", "--from", "2026-12-21", "--to", "2027-01-01",
                   "--reason", "Winter break")  # fmt: skip
    assert added.exit_code == 0, added.output
    assert "Added billing pause #1 2026-12-21 to 2027-01-01 (12 days): Winter break" in said(added)
    overlapping = invoke("billing", "pause", "add", "--from", "2026-12-31", "--to", "2027-01-04",
                         "--reason", "Holidays")  # fmt: skip
    assert overlapping.exit_code == 1
    assert "overlaps the pause #1" in said(overlapping)
    bad_day = invoke("billing", "pause", "add", "--from", "2026-12-32", "--to", "2027-01-04",
                     "--reason", "Holidays")  # fmt: skip
    assert bad_day.exit_code == 2 and "--from" in bad_day.output
    backwards = invoke("billing", "pause", "add", "--from", "2027-01-04", "--to", "2027-01-02",
                       "--reason", "Holidays")  # fmt: skip
    assert backwards.exit_code == 1 and "end on or after" in backwards.output

    listed = invoke("billing", "pause", "list", "--all")
    assert (
        listed.exit_code == 0 and "Winter break" in listed.output and "2027-01-01" in listed.output
    )
    assert _count(cli_env, m.BillingPause) == 1

    removed = invoke("billing", "pause", "remove", "1")
    assert removed.exit_code == 0 and "Removed billing pause #1" in removed.output
    missing = invoke("billing", "pause", "remove", "1")
    assert missing.exit_code == 1 and "no billing pause #1" in missing.output
    assert _count(cli_env, m.BillingPause) == 0
    assert [e.action for e in _activity(cli_env, "billing_pause")] == [
        "billing_pause_added",
        "billing_pause_removed",
    ]


def test_pause_commands_take_as(cli_env: Path) -> None:
    assert invoke("staff", "add", "tech@district.org", "--role", "Technician").exit_code == 0
    refused = invoke("billing", "pause", "add", "--from", "2026-12-21", "--to", "2027-01-01",
                     "--reason", "Winter break", "--as", "tech@district.org")  # fmt: skip
    assert refused.exit_code == 1 and "Manage Settings" in refused.output
    assert invoke("billing", "pause", "list", "--as", "tech@district.org").exit_code == 1
    assert _count(cli_env, m.BillingPause) == 0
    assert len(_activity(cli_env, "security")) == 2


# --- the run ------------------------------------------------------------------------------


def test_dry_run_lists_every_planned_step_and_changes_nothing(cli_env: Path) -> None:
    _seed_invoices(cli_env)
    result = invoke("billing", "run", "--dry-run", "--date", "2026-03-18")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Dry run for Wednesday 2026-03-18: nothing has been sent or changed." in out
    lines = out.splitlines()
    reminder = next(line for line in lines if "INV-000001" in line)
    assert "14-day pre-due reminder" in reminder and reminder.split()[-1] == "2"
    overdue = next(line for line in lines if "INV-000002" in line)
    assert "1st overdue notice" in overdue and "Unpaid → 1st Notice" in overdue
    assert "14 days" in overdue
    assert "emails to families" in out and "moved to 1st Notice" in out
    assert "1 invoice(s) with no guardian email address that works" in out
    assert _count(cli_env, m.BillingStep) == 0 and _count(cli_env, m.BillingRun) == 0
    assert _count(cli_env, m.Notice) == 0


def test_run_writes_and_prints_totals(cli_env: Path) -> None:
    _seed_invoices(cli_env)
    result = invoke("billing", "run", "--date", "2026-03-18")
    assert result.exit_code == 0, result.output
    assert "Billing run for Wednesday 2026-03-18: done." in result.output
    assert "14-day pre-due reminder" in result.output and "1st overdue notice" in result.output
    (run,) = _rows(cli_env, m.BillingRun)
    assert run.status == "completed" and run.day == date(2026, 3, 18)
    assert _count(cli_env, m.BillingStep) == 2
    assert _count(cli_env, m.Notice, m.Notice.template == "billing_digest") == 0
    assert _count(cli_env, m.Notice, m.Notice.status == "queued") == 2


def test_paused_day(cli_env: Path) -> None:
    assert invoke("billing", "pause", "add", "--from", "2026-03-16", "--to", "2026-03-20",
                  "--reason", "Spring break").exit_code == 0  # fmt: skip
    preview = invoke("billing", "run", "--dry-run", "--date", "2026-03-18")
    assert preview.exit_code == 0 and "paused that day" in preview.output
    result = invoke("billing", "run", "--date", "2026-03-18")
    assert result.exit_code == 0 and "paused today" in result.output


def test_run_refused_while_another_holds_the_lock(cli_env: Path) -> None:
    async def while_locked() -> Result:
        engine = create_async_engine(f"sqlite+aiosqlite:///{cli_env}")
        try:
            async with exclusive(engine, LOCK_NAME) as held:
                assert held
                return await asyncio.to_thread(invoke, "billing", "run", "--date", "2026-03-18")
        finally:
            await engine.dispose()

    result = asyncio.run(while_locked())
    assert result.exit_code == 1
    assert "Another billing run is in progress." in result.output
    assert _count(cli_env, m.BillingRun) == 0
    # The dry run takes no lock and still answers.
    assert asyncio.run(_dry_run_while_locked(cli_env)).exit_code == 0


async def _dry_run_while_locked(db: Path) -> Result:
    engine = create_async_engine(f"sqlite+aiosqlite:///{db}")
    try:
        async with exclusive(engine, LOCK_NAME):
            return await asyncio.to_thread(
                invoke, "billing", "run", "--dry-run", "--date", "2026-03-18"
            )
    finally:
        await engine.dispose()


def test_a_future_day_is_refused_but_can_be_previewed(cli_env: Path) -> None:
    result = invoke("billing", "run", "--date", "2099-01-01")
    assert result.exit_code == 1
    assert "is in the future" in said(result) and "Nothing was changed." in said(result)
    assert _count(cli_env, m.BillingRun) == 0
    preview = invoke("billing", "run", "--date", "2099-01-01", "--dry-run")
    assert preview.exit_code == 0, said(preview)


def test_staff_read_the_command_line_in_the_staff_language(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STAFF_LANGUAGE", "es")
    get_settings.cache_clear()
    try:
        listed = invoke("billing", "pause", "list")
        # Before any runtime is opened too: a usage error of the options.
        nothing = invoke("billing", "settings", "set")
    finally:
        set_staff_language("en")
    assert listed.exit_code == 0, said(listed)
    assert said(listed) == "No hay pausas de facturación actuales ni próximas."
    assert nothing.exit_code == 2
    assert "Indique al menos una configuración para cambiar; vea --help." in said(nothing)
    monkeypatch.delenv("STAFF_LANGUAGE")
    get_settings.cache_clear()
    assert said(invoke("billing", "pause", "list")) == (
        "There are no current or coming billing pauses."
    )
