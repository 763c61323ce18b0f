"""`devicecare insurance …` against a real SQLite database."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, insert, select
from typer.testing import CliRunner, Result

from bot.cli import app
from bot.settings import get_settings
from storage import models as m

T0 = datetime(2024, 7, 1, tzinfo=UTC)


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


def _sync(db: Path) -> Any:
    return create_engine(f"sqlite:///{db}")


def _count(db: Path, model: Any, *where: Any) -> int:
    engine = _sync(db)
    with engine.connect() as conn:
        value = conn.execute(select(func.count()).select_from(model).where(*where)).scalar_one()
    engine.dispose()
    return int(value)


def _add_roster(db: Path) -> None:
    engine = _sync(db)
    with engine.begin() as conn:
        for n in (1, 2):
            conn.execute(
                insert(m.Student).values(
                    id=n, sis_id=f"S{n}", first_name="Kid", last_name=f"S{n}", active=True
                )
            )
        conn.execute(
            insert(m.Device).values(
                serial="DMPXK1ABCD12",
                model="iPad (9th generation)",
                kind="tablet",
                status="in_service",
                created_at=T0,
            )
        )
    engine.dispose()


def _policy_set(*extra: str) -> Result:
    return invoke(
        "insurance",
        "policy",
        "set",
        "Device Plan",
        "--term-label",
        "2026-2027",
        "--term-start",
        "2020-08-01",
        "--term-end",
        "2099-07-31",
        "--premium",
        "25.00",
        "--coverage-starts",
        "on_payment",
        "--expiry-reminder-days",
        "30",
        *extra,
    )


def test_policy_set_and_list(cli_env: Path) -> None:
    result = _policy_set()
    assert result.exit_code == 0, result.output
    assert "premium cents: 0 → 2500" in said(result)
    again = _policy_set()
    assert "nothing changed" in said(again)
    bad = invoke(
        "insurance",
        "policy",
        "set",
        "Device Plan",
        "--window-opens",
        "2099-08-01",
        "--window-closes",
        "2099-07-01",
    )
    assert bad.exit_code == 1 and "closes before it opens" in said(bad)
    bad_money = invoke("insurance", "policy", "set", "Device Plan", "--premium", "-5")
    assert bad_money.exit_code == 1 and "negative" in said(bad_money)
    listed = invoke("insurance", "policy", "list")
    assert listed.exit_code == 0 and "Device Plan" in said(listed) and "$25.00" in said(listed)


def test_a_policy_takes_a_device_plan_and_gives_it_up(cli_env: Path) -> None:
    name = "AppleCare+ for iPads"
    given = invoke("insurance", "policy", "set", name, "--device-plan", " AppleCare+ ")
    assert given.exit_code == 0, given.output
    assert "device plan: None → AppleCare+" in said(given)
    assert "nothing changed" in said(
        invoke("insurance", "policy", "set", name, "--device-plan", "AppleCare+")
    )
    dropped = invoke("insurance", "policy", "set", name, "--device-plan", "")
    assert dropped.exit_code == 0 and "device plan: AppleCare+ → None" in said(dropped)


def test_enrollment_import_validate_then_apply(cli_env: Path, tmp_path: Path) -> None:
    _add_roster(cli_env)
    assert _policy_set().exit_code == 0
    csv_file = tmp_path / "enroll.csv"
    csv_file.write_text(
        "student_id,policy,waiver_reason\nS1,Device Plan,\nS2,Device Plan,Free lunch\n"
        "S9,Device Plan,\n",
        encoding="utf-8",
    )
    preview = invoke("insurance", "import", str(csv_file))
    assert preview.exit_code == 1
    text = said(preview)
    assert "would enroll" in text and "unknown student S9" in text and "Nothing was changed" in text
    assert _count(cli_env, m.InsuranceEnrollment) == 0

    applied = invoke("insurance", "import", str(csv_file), "--apply")
    assert applied.exit_code == 1  # the bad row is still reported
    assert "2 enrolled" in said(applied)
    assert _count(cli_env, m.InsuranceEnrollment) == 2
    assert _count(cli_env, m.Invoice, m.Invoice.kind == "premium") == 2
    rerun = invoke("insurance", "import", str(csv_file), "--apply")
    assert "0 enrolled, 2 already enrolled, 1 bad" in said(rerun)
    assert _count(cli_env, m.InsuranceEnrollment) == 2

    unknown = invoke("insurance", "import", str(csv_file), "--as", "nobody@district.org")
    assert unknown.exit_code == 1 and "No active staff member" in said(unknown)


def test_coverage_import_and_remind(cli_env: Path, tmp_path: Path) -> None:
    _add_roster(cli_env)
    csv_file = tmp_path / "applecare.csv"
    csv_file.write_text(
        "Serial Number,Coverage Description,Coverage Start Date,Coverage End Date,Provider\n"
        "dmpxk1abcd12,AppleCare+ for Schools,2025-09-01,2027-08-31,Apple\n"
        "UNKNOWN1,AppleCare+ for Schools,2025-09-01,2027-08-31,Apple\n",
        encoding="utf-8",
    )
    dry = invoke("insurance", "coverage", "import", str(csv_file), "--dry-run")
    assert "1 coverage rows would be added" in said(dry)
    assert _count(cli_env, m.DeviceCoverage) == 0
    result = invoke("insurance", "coverage", "import", str(csv_file))
    assert result.exit_code == 1
    assert "applecare.csv:3: unknown serial UNKNOWN1" in said(result)
    assert _count(cli_env, m.DeviceCoverage) == 1
    invoke("insurance", "coverage", "import", str(csv_file))
    assert _count(cli_env, m.DeviceCoverage) == 1

    remind = invoke("insurance", "remind", "--date", "2026-06-01")
    assert remind.exit_code == 0 and "0 families reminded" in said(remind)
