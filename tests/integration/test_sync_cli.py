"""`devicecare sync …` against a real SQLite database, with a stand-in source registered."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from bot.cli import app
from bot.settings import get_settings
from bot.sync.registry import SOURCES, SourceEntry
from storage.device_sync import DeviceSyncJob
from tests.sync.listed_source import ListedSource, chromebook

SOURCE = ListedSource("google")


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    db = tmp_path / "cli.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{db}")
    monkeypatch.setenv("SYNC_MAX_CHANGE_SHARE", "0.2")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")  # `sync status` prints a table
    SOURCE.devices, SOURCE.down, SOURCE.reads = [chromebook(n) for n in range(5)], None, []
    entry = SourceEntry(
        settings=("TEST_GOOGLE_SOURCE",),
        configured=lambda settings: True,
        build=lambda runtime: DeviceSyncJob(SOURCE),
    )
    monkeypatch.setitem(SOURCES, "google", entry)
    get_settings.cache_clear()
    assert invoke("db", "upgrade").exit_code == 0
    yield db
    get_settings.cache_clear()


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def said(result: Result) -> str:
    return " ".join(result.output.split())


def test_a_dry_run_then_a_sync_then_nothing_to_do(cli_env: Path) -> None:
    dry = invoke("sync", "google", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "Dry run of Google Admin: 5 changes; nothing was changed." in said(dry)
    assert "Counts: new 5" in said(dry) and "new 5CD0000000 HP Chromebook 11 G9" in said(dry)
    done = invoke("sync", "google")
    assert done.exit_code == 0 and "Synced Google Admin: 5 changes applied." in said(done)
    again = invoke("sync", "google")
    assert again.exit_code == 0
    assert "Google Admin is in sync: nothing changed. Counts: unchanged 5" in said(again)
    status = invoke("sync", "status")
    assert status.exit_code == 0
    assert "Google Admin" in said(status) and "no changes" in said(status)
    assert "unchanged 5" in said(status) and "not configured" in said(status)


def test_a_held_run_exits_3_and_allow_removals_applies_it(cli_env: Path) -> None:
    assert invoke("sync", "google").exit_code == 0
    SOURCE.devices = SOURCE.devices[:3]
    held = invoke("sync", "google")
    assert held.exit_code == 3
    assert "would retire or unassign 2 of 5 records (40%)" in said(held)
    assert "devicecare sync google --allow-removals" in said(held)
    applied = invoke("sync", "google", "--allow-removals")
    assert applied.exit_code == 0 and "Counts: unchanged 3, retired 2" in said(applied)


def test_a_source_that_is_down_exits_1(cli_env: Path) -> None:
    SOURCE.down = "Google Admin answered 503: backend error"
    result = invoke("sync", "google")
    assert result.exit_code == 1
    assert "The sync from Google Admin failed; nothing was changed." in said(result)
    assert "failed" in said(invoke("sync", "status"))


def test_an_unconfigured_source_names_what_to_set(cli_env: Path) -> None:
    result = invoke("sync", "apple")
    assert result.exit_code == 2
    assert said(result) in (
        "Syncing from Apple School Manager isn't available in this version of DeviceCare.",
    ) or said(result).startswith("Apple School Manager isn't configured: set ")
