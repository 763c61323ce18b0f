"""What /metrics and /readyz read from the database at request time, in one transaction.

Every fact here is true across processes: the outbox and notices are the delivery record, the
billing runs are the run record, and `service_facts` holds what each process said last.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import models as m
from storage.notices import NOTICE_KIND
from storage.service_facts import Fact, read_facts
from storage.session_of import Db, session_of

# The outbox kind of the billing channel's "the run failed" message (bot.jobs.scheduler writes it).
BILLING_RUN_FAILED_KIND = "slack.billing_run_failed"
# Mail counts as failing when this many notices are failing within MAIL_WINDOW ...
MAIL_WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class OutboxKind:
    kind: str
    counts: dict[str, int]  # status -> rows
    oldest_pending: datetime | None  # created_at of the oldest pending row
    oldest_due: datetime | None  # next_attempt_at of the pending row due longest


@dataclass(frozen=True)
class MailWindow:
    """Notices in the last MAIL_WINDOW: failing (retrying after an error, or given up) and sent."""

    failing: int
    sent: int


@dataclass(frozen=True)
class BillingRuns:
    last_completed_at: datetime | None  # finished_at of the newest completed run
    last_failed_at: datetime | None  # when the newest failure was reported
    running_since: datetime | None  # a run started and not finished (in progress, or died)

    @property
    def last_at(self) -> datetime | None:
        times = [t for t in (self.last_completed_at, self.last_failed_at) if t is not None]
        return max(times) if times else None

    @property
    def last_ok(self) -> bool | None:
        """Whether the newest run ended well; None before any run."""
        if self.last_at is None:
            return None
        return self.last_failed_at is None or (
            self.last_completed_at is not None and self.last_completed_at >= self.last_failed_at
        )


@dataclass(frozen=True)
class Snapshot:
    now: datetime
    outbox: dict[str, OutboxKind]
    notices: dict[str, int]  # notice status -> rows
    mail: MailWindow
    billing: BillingRuns
    facts: dict[str, Fact]


async def take_snapshot(db: Db, now: datetime) -> Snapshot:
    session = session_of(db)
    return Snapshot(
        now,
        await outbox_by_kind(session),
        await _notices(session),
        await _mail_window(session, now),
        await _billing(session),
        await read_facts(session),
    )


async def outbox_by_kind(db: Db) -> dict[str, OutboxKind]:
    session = session_of(db)
    o = m.OutboxMessage
    counts: dict[str, dict[str, int]] = {}
    for kind, status, n in await session.execute(
        select(o.kind, o.status, func.count()).group_by(o.kind, o.status)
    ):
        counts.setdefault(kind, {})[status] = int(n)
    oldest: dict[str, tuple[datetime | None, datetime | None]] = {}
    for kind, created, due in await session.execute(
        select(o.kind, func.min(o.created_at), func.min(o.next_attempt_at))
        .where(o.status == "pending")
        .group_by(o.kind)
    ):
        oldest[kind] = (_aware(created), _aware(due))
    return {
        kind: OutboxKind(kind, by_status, *oldest.get(kind, (None, None)))
        for kind, by_status in sorted(counts.items())
    }


async def _notices(session: AsyncSession) -> dict[str, int]:
    n = m.Notice
    rows = await session.execute(select(n.status, func.count()).group_by(n.status))
    return {status: int(count) for status, count in rows}


async def _mail_window(session: AsyncSession, now: datetime) -> MailWindow:
    o = m.OutboxMessage
    since = now - MAIL_WINDOW
    failing = or_(
        and_(o.status == "pending", o.last_error.is_not(None)),
        # A row given up on keeps the end of its last lease as next_attempt_at.
        and_(o.status == "failed", o.next_attempt_at >= since),
    )
    sent = and_(o.status == "sent", o.sent_at >= since)
    row = (
        await session.execute(
            select(
                func.count().filter(failing),
                func.count().filter(sent),
            ).where(o.kind == NOTICE_KIND)
        )
    ).one()
    return MailWindow(int(row[0]), int(row[1]))


async def _billing(session: AsyncSession) -> BillingRuns:
    r, o = m.BillingRun, m.OutboxMessage
    completed = await session.scalar(select(func.max(r.finished_at)).where(r.status == "completed"))
    running = await session.scalar(select(func.max(r.started_at)).where(r.status == "running"))
    failed = await session.scalar(
        select(func.max(o.created_at)).where(o.kind == BILLING_RUN_FAILED_KIND)
    )
    return BillingRuns(_aware(completed), _aware(failed), _aware(running))


def _aware(value: datetime | None) -> datetime | None:
    """Aggregates skip the column type: SQLite hands back naive UTC (or text) for them."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return m.UtcDateTime().process_result_value(value, None)
