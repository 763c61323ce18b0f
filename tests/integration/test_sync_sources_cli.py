"""`devicecare sync google|oneroster` as a district runs it: settings from the environment, the
real registry and clients, the sources' stand-ins at the network boundary."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select
from typer.testing import CliRunner, Result

from bot.cli import app
from bot.settings import get_settings
from storage import models as m
from tests.integration.test_oneroster_sync import records
from tests.sync_standins.google import FakeGoogle, device, key_file_text, new_private_key
from tests.sync_standins.oneroster import CLIENT_ID, CLIENT_SECRET, OneRosterStandIn
from tests.sync_standins.threaded import serving

SA_EMAIL = "devicecare-sync@district-devices.iam.gserviceaccount.com"
ADMIN = "it-admin@district.example.org"
KEY = new_private_key()


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "sync.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{path}")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")  # `sync status` prints a table
    get_settings.cache_clear()
    assert invoke("db", "upgrade").exit_code == 0
    yield path
    get_settings.cache_clear()


@pytest.fixture
def google(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGoogle]:
    fake = FakeGoogle()
    with serving(fake):
        fake.register(SA_EMAIL, KEY.public_key())
        fake.admins.add(ADMIN)
        fake.devices = [
            device(f"5CD{n:07d}", asset_id=f"AT{n:05d}", org_unit="/Students/Lincoln")
            for n in range(6)
        ]
        key = tmp_path / "google-key.json"
        key.write_text(key_file_text(KEY, client_email=SA_EMAIL, token_uri=fake.token_url))
        monkeypatch.setenv("GOOGLE_SERVICE_ACCOUNT_FILE", str(key))
        monkeypatch.setenv("GOOGLE_ADMIN_SUBJECT", ADMIN)
        monkeypatch.setenv("GOOGLE_API_URL", fake.base_url)
        get_settings.cache_clear()
        yield fake


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def said(result: Result) -> str:
    return " ".join(result.output.split())


def devices(path: Path) -> dict[str, tuple[str | None, str]]:
    engine = create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        rows = conn.execute(select(m.Device.serial, m.Device.asset_tag, m.Device.status))
        found = {serial: (tag, status) for serial, tag, status in rows}
    engine.dispose()
    return found


def test_google_devices_sync_through_the_configured_client(db: Path, google: FakeGoogle) -> None:
    dry = invoke("sync", "google", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "Dry run of Google Admin: 6 changes; nothing was changed." in said(dry)
    assert devices(db) == {}

    done = invoke("sync", "google")
    assert done.exit_code == 0, done.output
    assert "Synced Google Admin: 6 changes applied." in said(done)
    assert devices(db)["5CD0000003"] == ("AT00003", "in_service")

    # The next run reads only devices that synced since the last one (an incremental read).
    google.devices[0] = device(
        "5CD0000000", asset_id="AT00000", status="DEPROVISIONED", last_sync=datetime.now(UTC)
    )
    held = invoke("sync", "google")  # 1 of 6 is past the default 5% a run may take away
    assert held.exit_code == 3, held.output
    assert devices(db)["5CD0000000"] == ("AT00000", "in_service")
    again = invoke("sync", "google", "--allow-removals")
    assert again.exit_code == 0, again.output
    assert devices(db)["5CD0000000"] == ("AT00000", "retired")
    assert "Google Admin" in said(invoke("sync", "status"))
    assert google.token_requests  # the real client signed in at the stand-in


def test_a_key_file_that_cant_be_read_fails_the_run_in_one_line(
    db: Path, google: FakeGoogle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_SERVICE_ACCOUNT_FILE", str(tmp_path / "missing.json"))
    get_settings.cache_clear()
    result = invoke("sync", "google")
    assert result.exit_code == 1, result.output
    assert "GOOGLE_SERVICE_ACCOUNT_FILE" in said(result)
    assert "Traceback" not in result.output
    assert "failed" in said(invoke("sync", "status"))
    assert devices(db) == {}
    assert not google.token_requests


def test_a_oneroster_roster_syncs_through_the_configured_client(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    standin = OneRosterStandIn(orgs=records("district", "orgs"), users=records("district", "users"))
    with serving(standin):
        secret = tmp_path / "oneroster-secret"
        secret.write_text(CLIENT_SECRET + "\n")
        monkeypatch.setenv("ONEROSTER_BASE_URL", standin.base_url)
        monkeypatch.setenv("ONEROSTER_TOKEN_URL", standin.token_url)
        monkeypatch.setenv("ONEROSTER_CLIENT_ID", CLIENT_ID)
        monkeypatch.setenv("ONEROSTER_CLIENT_SECRET_FILE", str(secret))
        get_settings.cache_clear()
        done = invoke("sync", "oneroster")
        assert done.exit_code == 0, done.output
        assert "Synced OneRoster" in said(done)
        again = invoke("sync", "oneroster")
        assert again.exit_code == 0, again.output
        assert "OneRoster is in sync: nothing changed." in said(again)
    engine = create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        students = conn.execute(select(m.Student.sis_id)).scalars().all()
    engine.dispose()
    assert len(students) == 5
