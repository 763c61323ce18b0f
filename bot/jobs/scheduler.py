"""Scheduled jobs (APScheduler, in the district's time zone).

- The daily billing run, at the district's configured run time.
- A catch-up every 15 minutes (and once at start): it follows a changed run time, and runs
  today's billing when the run time has passed without a completed run, e.g. because the process
  was down at that time or the run failed. The run itself covers every day missed since the last
  completed one.
- Coverage-expiring reminders, daily after the billing run's usual hour (each enrollment once).
- The weekly digest (when WEEKLY_DIGEST_CHANNEL is set): last week's figures queued for Slack
  once per week, on the configured day and time.
- The nightly syncs from the district's systems (bot/sync/nightly.py) at SYNC_TIME, when a
  source is configured.
- SQLite maintenance overnight.

A failed run is logged and reported in the billing channel through the outbox.
"""

from __future__ import annotations

import logging
from datetime import date, time
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.heartbeat import note_error, note_success
from bot.runtime import Runtime
from bot.sync.nightly import configured_sources, run_nightly_syncs
from services.billing_run import BillingRunner, RunResult
from storage.db import maintain_sqlite
from storage.db_errors import DuplicateRow
from storage.weekly_digest import DIGEST_KIND, digest_key, previous_week, weekly_digest
from workflows.billing_settings import billing_settings_from
from workflows.clock import local_date
from workflows.enrollment import ReminderTotals, send_expiry_reminders
from workflows.permissions import Actor
from workflows.ports import Context

log = logging.getLogger("devicecare.scheduler")

BILLING_JOB = "billing_run"
CATCH_UP_JOB = "billing_catch_up"
MAINTENANCE_JOB = "maintain_database"
COVERAGE_REMINDER_JOB = "coverage_expiring_reminders"
# Local time of the daily coverage-expiring job (notices go out with the worker's next batch).
COVERAGE_REMINDER_TIME = time(7, 0)
WEEKLY_DIGEST_JOB = "weekly_digest"
SYNC_JOB = "nightly_sync"
CATCH_UP_MINUTES = 15
# A run time missed by less than this (a busy or suspended process) still runs late.
BILLING_MISFIRE_SECONDS = 3600
# After this many failures in a day the catch-up stops retrying; the next day's run covers it.
MAX_ATTEMPTS_PER_DAY = 4
RUN_FAILED_KIND = "slack.billing_run_failed"
ERROR_SUMMARY_LIMIT = 300


def billing_runner(runtime: Runtime) -> BillingRunner:
    return BillingRunner(
        runtime.engine,
        runtime.sessions,
        runtime.clock,
        runtime.settings.tz,
        mail_domain=runtime.settings.mail_domain,
    )


def billing_trigger(run_time: time, tz: ZoneInfo) -> CronTrigger:
    return CronTrigger(hour=run_time.hour, minute=run_time.minute, timezone=tz)


def failure_key_prefix(day: date) -> str:
    return f"billing-run-failed:{day.isoformat()}:"


def error_summary(exc: BaseException) -> str:
    """The exception's type and first line: enough to act on, without SQL and parameters."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    summary = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    if len(summary) > ERROR_SUMMARY_LIMIT:
        summary = summary[: ERROR_SUMMARY_LIMIT - 1] + "…"
    return summary


# --- the billing run ----------------------------------------------------------------------


async def run_billing_day(runtime: Runtime, day: date | None = None) -> RunResult | None:
    """Run the billing for `day` (today in the district's zone); None when it failed."""
    runner = billing_runner(runtime)
    day = day or runner.today()
    try:
        result = await runner.run(day)
    except Exception as exc:  # noqa: BLE001 - a failed run is reported, never kills the scheduler
        log.exception("billing run for %s failed", day)
        note_error("scheduler", error_summary(exc), runtime.clock.now())
        await report_failure(runtime, day, exc)
        return None
    log.info("billing run for %s: %s", day, result.message)
    note_success("scheduler", runtime.clock.now())
    return result


async def report_failure(runtime: Runtime, day: date, exc: BaseException) -> int | None:
    """Queue the billing channel's failure message; returns the attempt number it names.

    Written in its own transaction: the run's own work was rolled back with the failure.
    """
    prefix = failure_key_prefix(day)
    try:
        async with runtime.stores() as store:
            attempt = await store.outbox.count(RUN_FAILED_KIND, prefix) + 1
            payload: dict[str, Any] = {
                "day": day.isoformat(),
                "attempt": attempt,
                "error": error_summary(exc),
                "retrying": attempt < MAX_ATTEMPTS_PER_DAY,
                "retry_minutes": CATCH_UP_MINUTES,
            }
            await store.outbox.enqueue(RUN_FAILED_KIND, f"{prefix}{attempt}", payload)
            await store.commit()
    except Exception:  # noqa: BLE001 - the database may be what failed; the log still has it
        log.exception("couldn't queue the failure report for the billing run of %s", day)
        return None
    return attempt


async def catch_up_billing(
    runtime: Runtime, scheduler: AsyncIOScheduler | None = None
) -> RunResult | None:
    """Follow a changed run time; run today's billing if its time has passed without a run."""
    tz = runtime.settings.tz
    async with runtime.reads() as store:
        run_time = billing_settings_from(await store.settings.get()).run_time
    if scheduler is not None:
        follow_run_time(scheduler, runtime, run_time)
    now = runtime.clock.now().astimezone(tz)
    today = local_date(now, tz)
    if now.time() < run_time:
        return None
    async with runtime.reads() as store:
        run = await store.billing_runs.on(today)
        failures = await store.outbox.count(RUN_FAILED_KIND, failure_key_prefix(today))
    if run is not None and run.status == "completed":
        return None
    if failures >= MAX_ATTEMPTS_PER_DAY:
        log.warning("billing run for %s failed %s times; no more tries today", today, failures)
        return None
    log.info("billing run for %s is not done after %s; running it now", today, run_time)
    return await run_billing_day(runtime, today)


def follow_run_time(scheduler: AsyncIOScheduler, runtime: Runtime, run_time: time) -> bool:
    """Move the daily billing job to `run_time`; True if it moved."""
    tz = runtime.settings.tz
    trigger = billing_trigger(run_time, tz)
    job = scheduler.get_job(BILLING_JOB)
    if job is not None and str(job.trigger) == str(trigger):
        return False
    if job is None:
        _add_billing_job(scheduler, runtime, trigger)
    else:
        scheduler.reschedule_job(BILLING_JOB, trigger=trigger)
    log.info("daily billing run now at %s %s", run_time.strftime("%H:%M"), tz.key)
    return True


def _add_billing_job(scheduler: AsyncIOScheduler, runtime: Runtime, trigger: CronTrigger) -> None:
    scheduler.add_job(
        run_billing_day,
        trigger,
        args=[runtime],
        id=BILLING_JOB,
        name="daily billing run",
        replace_existing=True,
        coalesce=True,
        max_instances=1,
        misfire_grace_time=BILLING_MISFIRE_SECONDS,
    )


# --- coverage-expiring reminders ----------------------------------------------------------


async def send_coverage_reminders(runtime: Runtime, day: date | None = None) -> ReminderTotals:
    """Queue the reminders due on `day` (today in the district's zone), in one transaction.

    Rerunning a day, or running a missed one later, reminds nobody twice: each enrollment
    records the day it was reminded.
    """
    tz = runtime.settings.tz
    day = day or local_date(runtime.clock.now(), tz)
    async with runtime.stores() as store:
        totals = await send_expiry_reminders(Context(store, runtime.clock, tz), Actor.system(), day)
        await store.commit()
    log.info(
        "coverage reminders for %s: %s queued, %s without a premium invoice",
        day,
        totals.queued,
        totals.no_invoice,
    )
    return totals


async def _coverage_reminders_job(runtime: Runtime) -> None:
    try:
        await send_coverage_reminders(runtime)
    except Exception:  # noqa: BLE001 - logged; tomorrow's run picks up what was missed
        log.exception("coverage-expiring reminders failed")


# --- the weekly digest --------------------------------------------------------------------


async def queue_weekly_digest(runtime: Runtime, today: date | None = None) -> bool:
    """Queue last week's digest for Slack; False when it is off or already queued.

    The outbox row's dedupe key names the week, so a rerun, a late run or a second scheduler
    adds nothing: one digest per week. Its figures are computed when it is queued.
    """
    if not runtime.settings.weekly_digest_channel:
        return False
    tz = runtime.settings.tz
    today = today or local_date(runtime.clock.now(), tz)
    week = previous_week(today)
    key = digest_key(week)
    try:
        async with runtime.stores() as store:
            if await store.outbox.count(DIGEST_KIND, key):
                await store.commit()
                return False
            digest = await weekly_digest(store, week, tz=tz, as_of=today)
            queued = await store.outbox.enqueue(DIGEST_KIND, key, digest.to_payload())
            await store.commit()
    except DuplicateRow:
        # Another scheduler queued the same week between our check and our insert.
        log.info("weekly digest for %s was queued by another process", week)
        return False
    if queued:
        log.info("weekly digest for the week of %s queued", week)
    return queued


async def _weekly_digest_job(runtime: Runtime) -> None:
    try:
        await queue_weekly_digest(runtime)
    except Exception:  # noqa: BLE001 - logged; the next run (or a restart) doesn't resend it
        log.exception("weekly digest failed")


def weekly_digest_trigger(runtime: Runtime) -> CronTrigger:
    settings = runtime.settings
    at = settings.weekly_digest_time
    return CronTrigger(
        day_of_week=settings.weekly_digest_day[:3],
        hour=at.hour,
        minute=at.minute,
        timezone=settings.tz,
    )


# --- maintenance --------------------------------------------------------------------------


async def maintain_database(runtime: Runtime) -> None:
    """Keep SQLite's query planner statistics and WAL file in shape overnight."""
    if runtime.engine.dialect.name != "sqlite":
        return
    await maintain_sqlite(runtime.engine)
    log.info("database maintenance done")


# --- the scheduler ------------------------------------------------------------------------


async def build_scheduler(runtime: Runtime) -> AsyncIOScheduler:
    """The scheduler with its jobs, not started; the billing job at the stored run time."""
    tz = runtime.settings.tz
    async with runtime.reads() as store:
        run_time = billing_settings_from(await store.settings.get()).run_time
    scheduler = AsyncIOScheduler(
        timezone=tz,
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600},
    )
    scheduler.add_job(
        maintain_database,
        CronTrigger(hour=3, minute=15, timezone=tz),
        args=[runtime],
        id=MAINTENANCE_JOB,
        replace_existing=True,
    )
    _add_billing_job(scheduler, runtime, billing_trigger(run_time, tz))
    scheduler.add_job(
        _coverage_reminders_job,
        CronTrigger(
            hour=COVERAGE_REMINDER_TIME.hour, minute=COVERAGE_REMINDER_TIME.minute, timezone=tz
        ),
        args=[runtime],
        id=COVERAGE_REMINDER_JOB,
        name="coverage-expiring reminders",
        replace_existing=True,
    )
    if runtime.settings.weekly_digest_channel:
        scheduler.add_job(
            _weekly_digest_job,
            weekly_digest_trigger(runtime),
            args=[runtime],
            id=WEEKLY_DIGEST_JOB,
            name="weekly digest",
            replace_existing=True,
        )
    if configured_sources(runtime.settings):
        at = runtime.settings.sync_time
        scheduler.add_job(
            run_nightly_syncs,
            CronTrigger(hour=at.hour, minute=at.minute, timezone=tz),
            args=[runtime],
            id=SYNC_JOB,
            name="nightly syncs",
            replace_existing=True,
        )
    scheduler.add_job(
        catch_up_billing,
        IntervalTrigger(minutes=CATCH_UP_MINUTES, timezone=tz),
        args=[runtime, scheduler],
        id=CATCH_UP_JOB,
        name="billing catch-up",
        replace_existing=True,
        coalesce=True,
        max_instances=1,
        misfire_grace_time=CATCH_UP_MINUTES * 60,
        # At start too: a process that was down at the run time catches up straight away.
        next_run_time=runtime.clock.now(),
    )
    return scheduler
