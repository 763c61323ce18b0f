"""Claiming and settling outbox rows. Several workers may run at once on PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import models as m

LEASE = timedelta(minutes=5)
MAX_ATTEMPTS = 8


def new_message(
    kind: str, dedupe_key: str, payload: dict[str, Any], now: datetime
) -> m.OutboxMessage:
    """A side effect waiting to be delivered, due at once; the caller's transaction writes it."""
    return m.OutboxMessage(
        kind=kind,
        dedupe_key=dedupe_key,
        payload=payload,
        status="pending",
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )


def backoff(attempts: int) -> timedelta:
    """30 s, 1 min, 2 min … capped at 1 h between tries."""
    return timedelta(seconds=min(30 * 2 ** max(attempts - 1, 0), 3600))


async def claim_batch(
    session: AsyncSession, now: datetime, *, kinds: frozenset[str], limit: int = 50
) -> list[m.OutboxMessage]:
    """Lease due rows of the given kinds to this worker and commit the lease.

    The lease (next_attempt_at pushed forward) keeps other workers off a row while it is
    delivered; if this worker dies, the row comes back when the lease runs out.
    """
    stmt = (
        select(m.OutboxMessage)
        .where(
            m.OutboxMessage.status == "pending",
            m.OutboxMessage.next_attempt_at <= now,
            m.OutboxMessage.kind.in_(kinds),
        )
        .order_by(m.OutboxMessage.next_attempt_at, m.OutboxMessage.id)
        .limit(limit)
    )
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    rows = list((await session.execute(stmt)).scalars())
    for row in rows:
        row.attempts += 1
        row.next_attempt_at = now + LEASE
    await session.commit()
    return rows


def settle_sent(row: m.OutboxMessage, now: datetime) -> None:
    row.status = "sent"
    row.sent_at = now
    row.last_error = None


def settle_failed(row: m.OutboxMessage, now: datetime, error: str) -> None:
    """Schedule a retry, or give up after MAX_ATTEMPTS and leave the row visible as failed."""
    row.last_error = error[:2000]
    if row.attempts >= MAX_ATTEMPTS:
        row.status = "failed"
    else:
        row.next_attempt_at = now + backoff(row.attempts)
