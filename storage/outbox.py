"""Claiming and settling outbox rows. Several workers may run at once on PostgreSQL.

The worker's statements are SQLAlchemy Core: a batch is claimed with one SELECT and one UPDATE,
and its settled rows are written with one executemany UPDATE per commit, whatever their number.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select, tuple_, update

from storage import models as m
from storage.session_of import Db, session_of

# A claimed row is kept from other workers this long, and the worker holding it renews the lease
# every HEARTBEAT while it works; a worker that dies stops renewing, so its rows come back to
# another worker within one lease.
LEASE = timedelta(seconds=30)
HEARTBEAT = LEASE / 3
MAX_ATTEMPTS = 8
OUTBOX = m.Base.metadata.tables[m.OutboxMessage.__tablename__]


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


@dataclass(slots=True)
class Claimed:
    """An outbox row leased to this worker, with its state as the worker changes it
    (`write_settled` stores it)."""

    id: int
    kind: str
    payload: dict[str, Any]
    attempts: int
    next_attempt_at: datetime  # the end of the lease, until the row is settled
    # `attempts` as claimed: a later claim by another worker raises it, so the lease is ours
    # only while the stored value still equals this (renewals and settling check it).
    token: int = 0
    status: str = "pending"
    last_error: str | None = None
    sent_at: datetime | None = None


async def claim_batch(
    db: Db, now: datetime, *, kinds: frozenset[str], limit: int = 50
) -> list[Claimed]:
    """Lease due rows of the given kinds to this worker and commit the lease.

    The lease (next_attempt_at pushed forward) keeps other workers off a row while it is
    delivered; if this worker dies, the row comes back when the lease runs out.
    """
    session = session_of(db)
    stmt = (
        select(OUTBOX.c.id, OUTBOX.c.kind, OUTBOX.c.payload, OUTBOX.c.attempts)
        .where(
            OUTBOX.c.status == "pending",
            OUTBOX.c.next_attempt_at <= now,
            OUTBOX.c.kind.in_(kinds),
        )
        .order_by(OUTBOX.c.next_attempt_at, OUTBOX.c.id)
        .limit(limit)
    )
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    rows = (await session.execute(stmt)).all()
    lease = now + LEASE
    if rows:
        await session.execute(
            update(OUTBOX)
            .where(OUTBOX.c.id.in_([row.id for row in rows]))
            .values(attempts=OUTBOX.c.attempts + 1, next_attempt_at=lease)
        )
    await session.commit()
    return [
        Claimed(row.id, row.kind, row.payload, row.attempts + 1, lease, token=row.attempts + 1)
        for row in rows
    ]


async def renew_lease(db: Db, rows: list[Claimed], now: datetime) -> set[int]:
    """Push the lease of rows this worker still holds to `now + LEASE` and commit.

    Returns the ids still held; a row missing from it was claimed by another worker after our
    lease ran out, so this worker must not deliver it.
    """
    if not rows:
        return set()
    lease = now + LEASE
    session = session_of(db)
    result = await session.execute(
        update(OUTBOX)
        .where(
            tuple_(OUTBOX.c.id, OUTBOX.c.attempts).in_([(row.id, row.token) for row in rows]),
            OUTBOX.c.status == "pending",
        )
        .values(next_attempt_at=lease)
        .returning(OUTBOX.c.id)
    )
    held = set(result.scalars())
    await session.commit()
    for row in rows:
        if row.id in held:
            row.next_attempt_at = lease
    return held


def settle_sent(row: Claimed, now: datetime) -> None:
    row.status = "sent"
    row.sent_at = now
    row.last_error = None


def settle_failed(row: Claimed, now: datetime, error: str) -> None:
    """Schedule a retry, or give up after MAX_ATTEMPTS and leave the row visible as failed."""
    row.last_error = error[:2000]
    if row.attempts >= MAX_ATTEMPTS:
        row.status = "failed"
    else:
        row.next_attempt_at = now + backoff(row.attempts)


# One statement for every settled row (executemany): its whole state, as the worker left it.
# A row another worker has claimed since (its lease ran out) is left to that worker.
_WRITE_SETTLED = (
    update(OUTBOX)
    .where(OUTBOX.c.id == bindparam("row_id"), OUTBOX.c.attempts == bindparam("row_token"))
    .values(
        status=bindparam("new_status"),
        attempts=bindparam("new_attempts"),
        next_attempt_at=bindparam("new_next_attempt_at"),
        last_error=bindparam("new_last_error"),
        sent_at=bindparam("new_sent_at"),
    )
)


async def write_settled(db: Db, rows: list[Claimed]) -> None:
    """Store the rows' new state in the session's transaction (the caller commits)."""
    if not rows:
        return
    params = [
        {
            "row_id": row.id,
            "row_token": row.token,
            "new_status": row.status,
            "new_attempts": row.attempts,
            "new_next_attempt_at": row.next_attempt_at,
            "new_last_error": row.last_error,
            "new_sent_at": row.sent_at,
        }
        for row in rows
    ]
    await session_of(db).execute(_WRITE_SETTLED, params)
