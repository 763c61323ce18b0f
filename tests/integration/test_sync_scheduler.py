"""The nightly syncs in the scheduler, driven with a fixed clock (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.jobs.scheduler import SYNC_JOB, build_scheduler
from bot.runtime import Runtime, build_runtime
from bot.settings import Settings
from bot.sync.nightly import run_nightly_syncs
from bot.sync.registry import SOURCES, SourceEntry
from bot.sync.runner import SYNC_ALERT_KIND, SYNC_SUMMARY_KIND
from storage import models as m
from storage.device_sync import DeviceSyncJob
from tests.sync.listed_source import ListedSource, chromebook
from workflows.clock import FixedClock

NIGHT = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)  # 02:00 in Chicago


@pytest.fixture
async def runtime(engine: AsyncEngine, database_url: str, tmp_path: Path) -> AsyncIterator[Runtime]:
    settings = Settings(
        _env_file=None,
        database_url=database_url,
        blob_dir=tmp_path / "blobs",
        district_timezone="America/Chicago",
        sync_time="02:30",  # type: ignore[arg-type]
    )
    rt = build_runtime(settings, FixedClock(NIGHT))
    yield rt
    await rt.close()


@pytest.fixture
def google(monkeypatch: pytest.MonkeyPatch) -> ListedSource:
    source = ListedSource("google", [chromebook(n) for n in range(3)])
    entry = SourceEntry(("TEST",), lambda settings: True, lambda runtime: DeviceSyncJob(source))
    monkeypatch.setitem(SOURCES, "google", entry)
    return source


async def _outbox(runtime: Runtime) -> list[str]:
    async with runtime.reads() as store:
        rows = await store.session.execute(
            select(m.OutboxMessage.kind).order_by(m.OutboxMessage.id)
        )
        return list(rows.scalars())


async def test_no_nightly_sync_without_a_configured_source(runtime: Runtime) -> None:
    scheduler = await build_scheduler(runtime)
    assert scheduler.get_job(SYNC_JOB) is None


async def test_the_nightly_sync_runs_at_sync_time(runtime: Runtime, google: ListedSource) -> None:
    scheduler = await build_scheduler(runtime)
    job = scheduler.get_job(SYNC_JOB)
    assert job is not None and isinstance(job.trigger, CronTrigger)
    assert str(job.trigger) == str(CronTrigger(hour=2, minute=30, timezone=runtime.settings.tz))


async def test_once_a_night_and_a_failed_night_retries_the_next(
    runtime: Runtime, google: ListedSource
) -> None:
    google.down = "Google Admin answered 503"
    (failed,) = await run_nightly_syncs(runtime)
    assert failed.status == "failed"
    assert await run_nightly_syncs(runtime) == []  # a second scheduler, the same night
    assert google.reads == [None]
    google.down = None
    assert isinstance(runtime.clock, FixedClock)
    runtime.clock.advance(days=1)
    (done,) = await run_nightly_syncs(runtime)
    assert done.status == "applied"
    assert await _outbox(runtime) == [SYNC_ALERT_KIND, SYNC_SUMMARY_KIND]
