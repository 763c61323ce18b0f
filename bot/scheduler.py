"""Scheduled jobs (APScheduler, in the district's time zone)."""

from __future__ import annotations

import logging

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import text

from bot.runtime import Runtime

log = logging.getLogger("devicecare.scheduler")


async def maintain_database(runtime: Runtime) -> None:
    """Keep SQLite's query planner statistics and WAL file in shape overnight."""
    if runtime.engine.dialect.name != "sqlite":
        return
    async with runtime.engine.connect() as conn:
        await conn.execute(text("PRAGMA optimize"))
        await conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    log.info("database maintenance done")


def build_scheduler(runtime: Runtime) -> AsyncIOScheduler:
    scheduler = AsyncIOScheduler(
        timezone=runtime.settings.tz,
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600},
    )
    scheduler.add_job(
        maintain_database,
        CronTrigger(hour=3, minute=15, timezone=runtime.settings.tz),
        args=[runtime],
        id="maintain_database",
        replace_existing=True,
    )
    return scheduler
