"""Heartbeats and facts each long-running process keeps in the database (service_facts).

The web process answers /readyz and /metrics for every process, so what only the worker, the
mail reader or the scheduler knows is written here: when it was last seen, its last success
and error, and running totals that survive restarts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage import models as m
from storage.session_of import Db, session_of

ERROR_LIMIT = 500  # a last error is kept short: type and first line are enough to act on


@dataclass(frozen=True)
class Beat:
    """What one process reports in one heartbeat; counters are added, not replaced."""

    process: str
    instance: str
    now: datetime
    success_at: datetime | None = None
    error: str | None = None
    error_at: datetime | None = None
    counters: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Fact:
    process: str
    instance: str
    last_seen: datetime
    last_success: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    counters: Mapping[str, int]


async def record_beat(db: Db, beat: Beat) -> None:
    """Write one heartbeat and commit. Two processes of one name (two workers) share a row:
    the row is locked while its totals are added to, and a first insert racing another is
    retried as an update."""
    session = session_of(db)
    for attempt in range(2):
        row = await session.get(m.ServiceFact, beat.process, with_for_update=True)
        if row is None:
            row = m.ServiceFact(process=beat.process, counters={})
            session.add(row)
        _apply(row, beat)
        try:
            await session.commit()
            return
        except IntegrityError:
            await session.rollback()
            if attempt:
                raise


def _apply(row: m.ServiceFact, beat: Beat) -> None:
    row.instance = beat.instance[:200]
    row.last_seen = beat.now
    if beat.success_at is not None and (
        row.last_success is None or beat.success_at > row.last_success
    ):
        row.last_success = beat.success_at
    if beat.error is not None:
        row.last_error = beat.error[:ERROR_LIMIT]
        row.last_error_at = beat.error_at or beat.now
    if beat.counters:
        totals = dict(row.counters or {})
        for key, delta in beat.counters.items():
            totals[key] = int(totals.get(key, 0)) + int(delta)
        row.counters = totals  # a new dict: JSON columns see only replacement as a change


async def read_facts(session: AsyncSession) -> dict[str, Fact]:
    rows = (await session.execute(select(m.ServiceFact))).scalars()
    return {
        row.process: Fact(
            row.process,
            row.instance,
            row.last_seen,
            row.last_success,
            row.last_error,
            row.last_error_at,
            {str(k): int(v) for k, v in (row.counters or {}).items()},
        )
        for row in rows
    }
