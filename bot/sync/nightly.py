"""The nightly syncs: every configured source, one after the other, once a night.

Each run holds its source's lock, so a second scheduler starting the same night finds it
running, or finds tonight's run recorded and leaves it. A run that fails is reported in Slack
by the runner; the next night's run tries again.
"""

from __future__ import annotations

import logging
from datetime import datetime, time

from bot.heartbeat import note_error, note_success
from bot.runtime import Runtime
from bot.settings import Settings
from bot.sync.job import SyncJob
from bot.sync.registry import SOURCES, close_jobs, sync_jobs
from bot.sync.runner import SyncRunResult, run_sync
from storage.sync_runs import nightly_run_since
from workflows.clock import local_date

log = logging.getLogger("devicecare.sync")


def configured_sources(settings: Settings) -> list[str]:
    return [name for name, entry in SOURCES.items() if entry.configured(settings)]


def night_start(runtime: Runtime) -> datetime:
    """The start of the district's day now: a night's runs count from local midnight."""
    tz = runtime.settings.tz
    return datetime.combine(local_date(runtime.clock.now(), tz), time(0), tzinfo=tz)


async def run_nightly_syncs(runtime: Runtime) -> list[SyncRunResult]:
    """Sync each configured source that hasn't had tonight's run; never raises."""
    results: list[SyncRunResult] = []
    try:
        jobs = sync_jobs(runtime)
    except Exception as exc:  # noqa: BLE001 - a source that can't be set up is logged
        log.exception("nightly sync: the sources couldn't be set up")
        note_error("scheduler", f"nightly sync: {type(exc).__name__}", runtime.clock.now())
        return results
    try:
        await _run_each(runtime, jobs, results)
    finally:
        await close_jobs(jobs.values())
    return results


async def _run_each(
    runtime: Runtime, jobs: dict[str, SyncJob], results: list[SyncRunResult]
) -> None:
    since = night_start(runtime)
    for name, job in jobs.items():
        try:
            async with runtime.reads() as store:
                if await nightly_run_since(store, name, since):
                    log.info("nightly sync of %s already ran tonight", name)
                    continue
            result = await run_sync(runtime, job, trigger="nightly")
        except Exception as exc:  # noqa: BLE001 - one source's failure doesn't stop the others
            log.exception("nightly sync of %s failed", name)
            note_error(
                "scheduler", f"nightly sync of {name}: {type(exc).__name__}", runtime.clock.now()
            )
            continue
        results.append(result)
        if result.status != "failed":
            note_success("scheduler", runtime.clock.now())
