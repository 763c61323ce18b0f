"""`devicecare sync apple` as a district runs it: settings from the environment, the real
registry, client and device sync, the Apple School Manager stand-in at the network boundary."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import create_engine, select
from typer.testing import CliRunner, Result

from bot.cli import app
from bot.settings import get_settings
from storage import models as m
from tests.sync_standins.apple import (
    CLIENT_ID,
    KEY_ID,
    FakeAppleSchoolManager,
    GeneratedDevices,
    new_key,
    pem_of,
)
from tests.sync_standins.threaded import serving

KEY = new_key()


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
def apple(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAppleSchoolManager]:
    fake = FakeAppleSchoolManager(devices=GeneratedDevices(12))
    fake.register(KEY.public_key())
    with serving(fake):
        key = tmp_path / "apple-key.pem"
        key.write_text(pem_of(KEY))
        monkeypatch.setenv("APPLE_CLIENT_ID", CLIENT_ID)
        monkeypatch.setenv("APPLE_KEY_ID", KEY_ID)
        monkeypatch.setenv("APPLE_PRIVATE_KEY_FILE", str(key))
        monkeypatch.setenv("APPLE_API_URL", fake.base_url)
        monkeypatch.setenv("APPLE_TOKEN_URL", fake.token_url)
        get_settings.cache_clear()
        yield fake


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def said(result: Result) -> str:
    return " ".join(result.output.split())


def stored(path: Path) -> tuple[dict[str, tuple[str, str | None, str, str]], list[tuple]]:
    engine = create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        d = m.Device
        rows = conn.execute(select(d.serial, d.model, d.part_number, d.kind, d.status))
        devices = {row[0]: (row[1], row[2], row[3], row[4]) for row in rows}
        c = m.DeviceCoverage
        coverage = list(
            conn.execute(
                select(d.serial, c.provider, c.plan, c.coverage_start, c.coverage_end)
                .join(d, d.id == c.device_id)
                .order_by(d.serial, c.coverage_start, c.plan)
            )
        )
    engine.dispose()
    return devices, [tuple(row) for row in coverage]


def test_apple_devices_and_coverage_sync_through_the_configured_client(
    db: Path, apple: FakeAppleSchoolManager
) -> None:
    dry = invoke("sync", "apple", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "Dry run of Apple School Manager" in said(dry)
    assert stored(db) == ({}, [])

    done = invoke("sync", "apple")
    assert done.exit_code == 0, done.output
    assert "Synced Apple School Manager" in said(done)
    devices, coverage = stored(db)
    assert len(devices) == 12
    ipad = ("iPad (10th generation)", "MPQ03LL/A", "ipad", "in_service")
    assert devices["ASM000000000"] == ipad
    assert devices["ASM000000001"][:2] == ("MacBook Air (13-inch, M2, 2022)", "MLY33LL/A")
    plans = [row for row in coverage if row[0] == "ASM000000000"]
    assert [(p[1], p[2]) for p in plans] == [
        ("Apple", "AppleCare+ for Schools"),
        ("Apple", "Limited Warranty"),
    ]
    assert not [row for row in coverage if row[0] == "ASM000000003"]  # an Apple TV has none

    assert apple.requests["coverage"] == 24  # the dry run read it all, and so did the sync
    again = invoke("sync", "apple")
    assert again.exit_code == 0, again.output
    assert "Apple School Manager is in sync: nothing changed." in said(again)
    # Nothing changed at Apple since the last run's cursor: no coverage read, none removed.
    assert apple.requests["coverage"] == 24
    assert stored(db)[1] == coverage
    status = CliRunner().invoke(app, ["sync", "status"], env={"COLUMNS": "200"})
    assert "Apple School Manager" in said(status)
    assert len(apple.assertions) == 3  # each run signed in once, with a fresh assertion


def test_a_key_that_is_not_apples_kind_fails_the_run_in_one_line(
    db: Path, apple: FakeAppleSchoolManager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    text = wrong.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    monkeypatch.delenv("APPLE_PRIVATE_KEY_FILE")
    monkeypatch.setenv("APPLE_PRIVATE_KEY", text)
    get_settings.cache_clear()

    result = invoke("sync", "apple")

    assert result.exit_code == 1, result.output
    assert "APPLE_PRIVATE_KEY is not a P-256 EC private key" in said(result)
    assert "Traceback" not in result.output
    assert text.splitlines()[1] not in result.output
    assert stored(db) == ({}, [])
    assert apple.requests["token"] == 0


def test_a_key_apple_refuses_fails_the_run_and_changes_nothing(
    db: Path, apple: FakeAppleSchoolManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("APPLE_PRIVATE_KEY_FILE")
    monkeypatch.setenv("APPLE_PRIVATE_KEY", pem_of(new_key()))  # a key Apple never saw
    get_settings.cache_clear()

    result = invoke("sync", "apple")

    assert result.exit_code == 1, result.output
    assert "invalid_client" in said(result)
    assert "Traceback" not in result.output
    assert stored(db) == ({}, [])
    assert apple.refusals == ["bad signature"]
