"""The scheduler's billing jobs, driven directly with a fixed clock (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, date, datetime, time
from pathlib import Path

import pytest
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.jobs.scheduler import (
    BILLING_JOB,
    BILLING_MISFIRE_SECONDS,
    CATCH_UP_JOB,
    MAINTENANCE_JOB,
    MAX_ATTEMPTS_PER_DAY,
    RUN_FAILED_KIND,
    build_scheduler,
    catch_up_billing,
    error_summary,
    maintain_database,
    run_billing_day,
)
from bot.runtime import Runtime, build_runtime
from bot.settings import Settings
from services.billing_run import LOCK_NAME, SLACK_RUN_KIND
from storage import models as m
from storage.run_lock import exclusive
from tests.integration.billing_helpers import TZ, add_family, add_invoice
from workflows.administration import change_billing_settings
from workflows.billing_settings import billing_settings_from
from workflows.clock import FixedClock
from workflows.permissions import Actor
from workflows.ports import Context

DAY = date(2026, 3, 18)  # the 14-day reminder of an invoice due on April 1


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=TZ).astimezone(UTC)


@pytest.fixture
async def runtime(
    engine: AsyncEngine, database_url: str, clock: FixedClock, tmp_path: Path
) -> AsyncIterator[Runtime]:
    settings = Settings(
        _env_file=None,
        database_url=database_url,
        blob_dir=tmp_path / "blobs",
        district_timezone="America/Chicago",
    )
    rt = build_runtime(settings, clock)
    yield rt
    await rt.close()


async def _set_run_time(runtime: Runtime, value: str) -> None:
    async with runtime.stores() as store:
        current = billing_settings_from(await store.settings.get())
        await change_billing_settings(
            Context(store, runtime.clock, runtime.settings.tz),
            Actor.system(),
            replace(current, daily_run_time=value),
        )
        await store.commit()


async def _runs(runtime: Runtime) -> list[tuple[date, str, date]]:
    async with runtime.stores() as store:
        rows = await store.session.execute(select(m.BillingRun).order_by(m.BillingRun.day))
        await store.commit()
        return [(r.day, r.status, r.covered_since) for r in rows.scalars()]


async def _outbox(runtime: Runtime, kind: str) -> list[m.OutboxMessage]:
    async with runtime.stores() as store:
        stmt = select(m.OutboxMessage).where(m.OutboxMessage.kind == kind)
        result = list((await store.session.execute(stmt.order_by(m.OutboxMessage.id))).scalars())
        await store.commit()
        return result


async def _an_invoice_due_april_first(runtime: Runtime) -> int:
    (student,), _ = await add_family(runtime.stores, "Nguyen")
    return await add_invoice(
        runtime.stores, student, created=date(2026, 1, 1), due=date(2026, 4, 1)
    )


# --- the jobs and their triggers ------------------------------------------------------------


async def test_jobs_fire_at_the_district_run_time(runtime: Runtime, clock: FixedClock) -> None:
    await _set_run_time(runtime, "05:30")
    scheduler = await build_scheduler(runtime)
    billing = scheduler.get_job(BILLING_JOB)
    assert isinstance(billing.trigger, CronTrigger)
    assert (billing.coalesce, billing.max_instances) == (True, 1)
    assert billing.misfire_grace_time == BILLING_MISFIRE_SECONDS
    # 09:00 in Chicago on 2 March: next run is 05:30 local on the 3rd (CST, UTC-6).
    clock.set(local(date(2026, 3, 2), 9))
    fire = billing.trigger.get_next_fire_time(None, clock.now().astimezone(TZ))
    assert fire.tzinfo is not None and fire.utcoffset().total_seconds() == -6 * 3600
    assert (fire.date(), fire.hour, fire.minute) == (date(2026, 3, 3), 5, 30)
    # Across the change to daylight time (8 March 2026) it stays 05:30 local, now UTC-5.
    fire = billing.trigger.get_next_fire_time(None, local(date(2026, 3, 7), 9).astimezone(TZ))
    assert (fire.date(), fire.hour, fire.minute) == (date(2026, 3, 8), 5, 30)
    assert fire.astimezone(UTC).hour == 10

    catch_up = scheduler.get_job(CATCH_UP_JOB)
    assert isinstance(catch_up.trigger, IntervalTrigger)
    assert catch_up.trigger.interval.total_seconds() == 15 * 60
    assert (catch_up.coalesce, catch_up.max_instances) == (True, 1)
    assert catch_up.next_run_time == clock.now()  # at start too, not only after 15 minutes
    assert scheduler.get_job(MAINTENANCE_JOB) is not None


async def test_started_scheduler_shows_the_next_run_in_the_district_zone(
    runtime: Runtime,
) -> None:
    await _set_run_time(runtime, "06:45")
    scheduler = await build_scheduler(runtime)
    scheduler.start(paused=True)  # no job runs; next run times are worked out
    try:
        job = scheduler.get_job(BILLING_JOB)
        assert job.next_run_time.tzinfo is not None
        assert str(job.next_run_time.tzinfo) == "America/Chicago"
        assert (job.next_run_time.hour, job.next_run_time.minute) == (6, 45)
    finally:
        scheduler.shutdown(wait=False)


async def test_catch_up_follows_a_changed_run_time(runtime: Runtime, clock: FixedClock) -> None:
    scheduler = await build_scheduler(runtime)
    clock.set(local(DAY, 4))  # before any run time: nothing runs
    await _set_run_time(runtime, "07:15")
    assert await catch_up_billing(runtime, scheduler) is None
    trigger = scheduler.get_job(BILLING_JOB).trigger
    fire = trigger.get_next_fire_time(None, clock.now().astimezone(TZ))
    assert (fire.date(), fire.hour, fire.minute) == (DAY, 7, 15)
    assert await _runs(runtime) == []


# --- catching up ----------------------------------------------------------------------------


async def test_catch_up_runs_today_once_when_the_run_time_passed(
    runtime: Runtime, clock: FixedClock
) -> None:
    await _an_invoice_due_april_first(runtime)
    clock.set(local(DAY, 5, 59))
    assert await catch_up_billing(runtime) is None  # not yet time
    clock.set(local(DAY, 9, 30))  # the process was down at 06:00
    result = await catch_up_billing(runtime)
    assert result is not None and result.ran and result.totals is not None
    assert result.totals.reminders_by_step == (("pre_due_14", 1),)
    assert await _runs(runtime) == [(DAY, "completed", date(2026, 3, 17))]
    clock.set(local(DAY, 9, 45))
    assert await catch_up_billing(runtime) is None  # done for today
    assert len(await _outbox(runtime, SLACK_RUN_KIND)) == 1


async def test_after_downtime_the_run_covers_every_missed_day(
    runtime: Runtime, clock: FixedClock
) -> None:
    await _an_invoice_due_april_first(runtime)
    clock.set(local(date(2026, 3, 14), 6))
    await run_billing_day(runtime)
    clock.set(local(DAY, 11))  # down from the 15th to the 18th
    result = await catch_up_billing(runtime)
    assert result is not None and result.totals is not None
    assert result.totals.covered_since == date(2026, 3, 14)
    (digest,) = [
        o for o in await _outbox(runtime, SLACK_RUN_KIND) if o.payload["day"] == "2026-03-18"
    ]
    assert digest.payload["covered_since"] == "2026-03-14"


async def test_a_run_already_in_progress_is_not_a_failure(
    runtime: Runtime, engine: AsyncEngine, clock: FixedClock
) -> None:
    clock.set(local(DAY, 6))
    async with exclusive(runtime.engine, LOCK_NAME) as held:
        assert held
        result = await run_billing_day(runtime)
    assert result is not None and not result.ran
    assert result.message == "Another billing run is in progress."
    assert await _outbox(runtime, RUN_FAILED_KIND) == []


# --- failures -------------------------------------------------------------------------------


async def _break_settings(runtime: Runtime) -> None:
    """Overdue days stored short of three (a hand edit past validation): the run fails."""
    async with runtime.stores() as store:
        (await store.settings.get()).overdue_days = [7]
        await store.commit()


async def test_a_failed_run_is_reported_per_attempt_and_retried_a_few_times(
    runtime: Runtime, clock: FixedClock
) -> None:
    await _an_invoice_due_april_first(runtime)
    clock.set(local(date(2026, 3, 17), 6))
    assert await run_billing_day(runtime) is not None  # the last good day
    await _break_settings(runtime)
    clock.set(local(DAY, 6))
    assert await run_billing_day(runtime) is None
    (first,) = await _outbox(runtime, RUN_FAILED_KIND)
    assert first.dedupe_key == "billing-run-failed:2026-03-18:1"
    assert first.payload["day"] == "2026-03-18" and first.payload["attempt"] == 1
    assert first.payload["error"].startswith("IndexError")
    assert first.payload["retrying"] is True
    assert (await _runs(runtime))[-1] == (DAY, "running", date(2026, 3, 17))

    for _ in range(MAX_ATTEMPTS_PER_DAY + 1):  # every 15 minutes, past the last try
        clock.advance(minutes=15)
        await catch_up_billing(runtime)
    failures = await _outbox(runtime, RUN_FAILED_KIND)
    assert [f.payload["attempt"] for f in failures] == list(range(1, MAX_ATTEMPTS_PER_DAY + 1))
    assert [f.payload["retrying"] for f in failures][-1] is False
    assert len({f.dedupe_key for f in failures}) == MAX_ATTEMPTS_PER_DAY

    # Fixed by the next day: its run completes and covers the failed day too.
    async with runtime.stores() as store:
        (await store.settings.get()).overdue_days = [7, 14, 30]
        await store.commit()
    clock.set(local(date(2026, 3, 19), 6))
    result = await run_billing_day(runtime)
    assert result is not None and result.ran and result.totals is not None
    assert result.totals.covered_since == date(2026, 3, 17)
    assert result.totals.reminders_by_step == (("pre_due_14", 1),)


def test_error_summary_keeps_the_first_line_only() -> None:
    exc = RuntimeError("(sqlite3.OperationalError) database is locked\n[SQL: UPDATE …]")
    assert error_summary(exc) == "RuntimeError: (sqlite3.OperationalError) database is locked"
    assert error_summary(KeyError()) == "KeyError"
    assert len(error_summary(ValueError("x" * 1000))) == 300


async def test_overnight_maintenance_empties_the_sqlite_log(runtime: Runtime) -> None:
    await _an_invoice_due_april_first(runtime)
    await maintain_database(runtime)  # on PostgreSQL it has nothing to do
    database = runtime.engine.url.database
    if runtime.engine.dialect.name == "sqlite" and database:
        assert Path(f"{database}-wal").stat().st_size == 0
