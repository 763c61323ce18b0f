"""Outbox rows, notices and billing runs written straight to the database for monitoring tests."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from storage import models as m
from storage.notices import NOTICE_KIND


def outbox_row(
    kind: str,
    status: str,
    now: datetime,
    *,
    age: timedelta = timedelta(minutes=1),
    due: timedelta = timedelta(0),
    payload: dict[str, Any] | None = None,
    attempts: int = 0,
    last_error: str | None = None,
) -> m.OutboxMessage:
    """A row created `age` ago whose next attempt is (or was) at now - `due`."""
    return m.OutboxMessage(
        kind=kind,
        dedupe_key=f"test:{uuid.uuid4().hex}",
        payload=payload or {},
        status=status,
        attempts=attempts,
        next_attempt_at=now - due,
        last_error=last_error,
        created_at=now - age,
        sent_at=now - due if status == "sent" else None,
    )


def notice(status: str, now: datetime, address: str = "jane.doe@example.org") -> m.Notice:
    key = uuid.uuid4().hex
    return m.Notice(
        template="invoice_new",
        dedupe_key=f"test:{key}",
        to_address=address,
        message_id=f"<{key}@devicecare.test>",
        context={},
        status=status,
        created_at=now - timedelta(hours=1),
    )


async def failed_notice(
    session: AsyncSession, now: datetime, address: str = "jane.doe@example.org"
) -> m.OutboxMessage:
    """A notice given up on five minutes ago, with its outbox row; flushed, not committed."""
    row = notice("failed", now, address)
    session.add(row)
    await session.flush()
    message = outbox_row(
        NOTICE_KIND,
        "failed",
        now,
        age=timedelta(hours=2),
        due=timedelta(minutes=5),
        payload={"notice_id": row.id},
        attempts=8,
        last_error="SMTPConnectError: connection refused",
    )
    session.add(message)
    await session.flush()
    return message
