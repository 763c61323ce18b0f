"""The sync_runs table: each run of a source's sync, from 'running' to how it ended."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage import models as m
from storage.session_of import Db, session_of
from workflows.sync import SyncPlan

# A run that wrote what it read: its cursor is where the next incremental read starts, and
# its end is when the source's facts were last synced.
SYNCED = ("applied", "no_changes")
INTERRUPTED = "the run stopped before it finished (the process ended); nothing of it was applied"


async def start_run(db: Db, source: str, trigger: str, dry_run: bool, now: datetime) -> int:
    session = session_of(db)
    run = m.SyncRun(
        source=source,
        trigger=trigger,
        dry_run=dry_run,
        status="running",
        started_at=now,
        counts={},
        sample=[],
        removals=0,
        base=0,
    )
    session.add(run)
    await session.flush()
    return run.id


async def close_interrupted(db: Db, source: str, now: datetime) -> int:
    """Runs left 'running' by a process that died: called holding the source's lock, so no
    run of it is in progress. Returns how many were closed."""
    result = await session_of(db).execute(
        update(m.SyncRun)
        .where(m.SyncRun.source == source, m.SyncRun.status == "running")
        .values(status="failed", finished_at=now, error=INTERRUPTED)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def finish_run(
    db: Db,
    run_id: int,
    status: str,
    now: datetime,
    *,
    plan: SyncPlan | None = None,
    cursor: str | None = None,
    error: str | None = None,
) -> None:
    values: dict[str, object] = {"status": status, "finished_at": now, "error": error}
    if plan is not None:
        values |= {
            "counts": dict(plan.counts),
            "sample": list(plan.sample),
            "removals": plan.removals,
            "base": plan.base,
        }
    if cursor is not None:
        values["cursor"] = cursor
    await session_of(db).execute(update(m.SyncRun).where(m.SyncRun.id == run_id).values(**values))


async def last_synced_run(db: Db, source: str) -> m.SyncRun | None:
    """The source's last run that applied what it read (or found nothing to change)."""
    stmt = (
        select(m.SyncRun)
        .where(m.SyncRun.source == source, m.SyncRun.status.in_(SYNCED))
        .order_by(m.SyncRun.started_at.desc(), m.SyncRun.id.desc())
        .limit(1)
    )
    return (await session_of(db).execute(stmt)).scalar_one_or_none()


async def last_cursor(db: Db, source: str) -> str | None:
    run = await last_synced_run(db, source)
    return None if run is None else run.cursor


async def last_runs(db: Db) -> dict[str, m.SyncRun]:
    """Each source's latest run, by source."""
    session = session_of(db)
    latest = (
        select(m.SyncRun.source, func.max(m.SyncRun.id).label("id"))
        .group_by(m.SyncRun.source)
        .subquery()
    )
    stmt = select(m.SyncRun).join(latest, m.SyncRun.id == latest.c.id).order_by(m.SyncRun.source)
    return {run.source: run for run in (await session.execute(stmt)).scalars()}


async def synced_at(session: AsyncSession, sources: list[str]) -> dict[str, datetime]:
    """When each of `sources` last synced (the end of its last applied or unchanged run)."""
    if not sources:
        return {}
    stmt = (
        select(m.SyncRun.source, func.max(m.SyncRun.finished_at))
        .where(m.SyncRun.source.in_(sources), m.SyncRun.status.in_(SYNCED))
        .group_by(m.SyncRun.source)
    )
    return {source: at for source, at in await session.execute(stmt) if at is not None}


async def nightly_run_since(db: Db, source: str, since: datetime) -> bool:
    """Whether a nightly run of `source` started at or after `since` (one a night, whichever
    scheduler started it; a failed one waits for the next night)."""
    session = session_of(db)
    stmt = select(m.SyncRun.id).where(
        m.SyncRun.source == source, m.SyncRun.trigger == "nightly", m.SyncRun.started_at >= since
    )
    return (await session.execute(stmt.limit(1))).first() is not None
