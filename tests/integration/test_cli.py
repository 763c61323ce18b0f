"""The `devicecare` command line against a real SQLite database."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text
from typer.testing import CliRunner

from bot.cli import app
from bot.settings import get_settings
from storage import models as m


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    db = tmp_path / "cli.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{db}")
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield db
    get_settings.cache_clear()


def _count(db: Path, model: type) -> int:
    engine = create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        value = conn.execute(select(func.count()).select_from(model)).scalar_one()
    engine.dispose()
    return int(value)


def test_db_upgrade_creates_roles_and_settings(cli_env: Path) -> None:
    result = CliRunner().invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "up to date" in result.output
    assert _count(cli_env, m.Role) == 6
    assert _count(cli_env, m.DistrictSettings) == 1
    engine = create_engine(f"sqlite:///{cli_env}")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
    engine.dispose()


def test_staff_add_list_and_errors(cli_env: Path) -> None:
    runner = CliRunner()
    added = runner.invoke(app, ["staff", "add", "Pat@District.org", "--role", "technician"])
    assert added.exit_code == 0, added.output
    assert "Added pat@district.org (Technician)" in added.output
    changed = runner.invoke(
        app,
        ["staff", "add", "pat@district.org", "--role", "Billing Clerk", "--slack-id", "U024BE7LH"],
    )
    assert "Updated pat@district.org (Billing Clerk)" in changed.output
    same = runner.invoke(app, ["staff", "add", "pat@district.org", "--role", "Billing Clerk"])
    assert "Unchanged" in same.output
    listing = runner.invoke(app, ["staff", "list"])
    assert "U024BE7LH" in listing.output and "Billing Clerk" in listing.output
    roles = runner.invoke(app, ["staff", "roles"])
    assert "Finance Director" in roles.output and "all (SuperAdmin)" in roles.output
    bad_role = runner.invoke(app, ["staff", "add", "x@district.org", "--role", "Wizard"])
    assert bad_role.exit_code == 1 and "no role called 'Wizard'" in bad_role.output
    bad_email = runner.invoke(app, ["staff", "add", "not-an-email", "--role", "Admin"])
    assert bad_email.exit_code == 1 and "isn't an email address" in bad_email.output
    bad_slack = runner.invoke(
        app, ["staff", "add", "y@district.org", "--role", "Admin", "--slack-id", "nope"]
    )
    assert bad_slack.exit_code == 1 and "Slack user id" in bad_slack.output
    assert _count(cli_env, m.Staff) == 1
    assert _count(cli_env, m.ActivityEntry) == 2  # added, then changed


def test_demo_loads_once(cli_env: Path) -> None:
    runner = CliRunner()
    first = runner.invoke(app, ["demo"])
    assert first.exit_code == 0 and "Loaded the demo district" in first.output
    counts = {
        model: _count(cli_env, model)
        for model in (m.Student, m.Guardian, m.Device, m.InsuranceEnrollment, m.FeeItem)
    }
    second = runner.invoke(app, ["demo"])
    assert "already loaded" in second.output
    assert counts == {model: _count(cli_env, model) for model in counts}
    assert counts[m.Student] == 8 and counts[m.Device] == 10 and counts[m.FeeItem] == 13


@pytest.mark.postgres
def test_a_platform_postgres_url_works(pg_database: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`postgres://…` as Heroku, Render and Dokku hand it out, against the real server."""
    import subprocess
    import sys

    from sqlalchemy.engine import make_url

    url = make_url(pg_database).set(drivername="postgres").render_as_string(hide_password=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATABASE_URL")}
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "db", "current"],
        env=env | {"DATABASE_URL": url},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def test_version_is_the_installed_packages() -> None:
    from importlib.metadata import version

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"devicecare {version('devicecare')}"
