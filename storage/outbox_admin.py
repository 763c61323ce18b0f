"""What staff see of the outbox and how they push a failed message again (`devicecare outbox`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from storage import models as m
from storage.notices import NOTICE_KIND
from storage.session_of import Db, session_of
from workflows.errors import InvalidTransition, NotFound
from workflows.i18n import _


@dataclass(frozen=True)
class FailedMessage:
    id: int
    kind: str
    recipient: str  # redacted: enough to recognise, not to copy
    attempts: int
    last_error: str
    failed_at: datetime  # the end of the last attempt's lease: when it was given up
    created_at: datetime


def redact_address(address: str) -> str:
    """jane.doe@example.org -> j…@example.org"""
    local, at, domain = address.strip().rpartition("@")
    if not at or not local:
        return "…"
    return f"{local[0]}…@{domain}"


def _recipient(row: m.OutboxMessage, addresses: dict[int, str]) -> str:
    payload: dict[str, Any] = row.payload or {}
    if row.kind == NOTICE_KIND:
        address = addresses.get(int(payload.get("notice_id") or 0))
        return redact_address(address) if address else _("(notice gone)")
    prefix = row.kind.split(".", 1)[0]
    if prefix == "slack":
        channel = payload.get("channel")
        return f"Slack {channel}" if isinstance(channel, str) and channel else "Slack"
    if prefix == "stripe":
        return "Stripe"
    return "—"


async def failed_messages(db: Db, limit: int = 100) -> list[FailedMessage]:
    """Failed outbox rows, the most recently given up first."""
    session = session_of(db)
    o = m.OutboxMessage
    rows = list(
        (
            await session.execute(
                select(o)
                .where(o.status == "failed")
                .order_by(o.next_attempt_at.desc(), o.id.desc())
                .limit(limit)
            )
        ).scalars()
    )
    notice_ids = [int(row.payload.get("notice_id") or 0) for row in rows if row.kind == NOTICE_KIND]
    addresses: dict[int, str] = {}
    if notice_ids:
        found = await session.execute(
            select(m.Notice.id, m.Notice.to_address).where(m.Notice.id.in_(notice_ids))
        )
        addresses = {notice_id: address for notice_id, address in found}
    return [
        FailedMessage(
            row.id,
            row.kind,
            _recipient(row, addresses),
            row.attempts,
            row.last_error or "",
            row.next_attempt_at,
            row.created_at,
        )
        for row in rows
    ]


@dataclass(frozen=True)
class Retried:
    id: int
    kind: str
    attempts: int
    last_error: str | None


async def retry_failed(db: Db, message_id: int, now: datetime) -> Retried:
    """Make a failed row due again with a fresh set of attempts (the caller commits).

    A failed notice goes back to "queued" too, so the invoice shows it waiting again.
    """
    session = session_of(db)
    row = await session.get(m.OutboxMessage, message_id, with_for_update=True)
    if row is None:
        raise NotFound(_("There is no outbox message #{id}.", id=message_id), field="id")
    if row.status != "failed":
        raise InvalidTransition(
            _(
                "Outbox message #{id} is {status}, not failed; only a failed message can be "
                "retried.",
                id=message_id,
                status=row.status,
            )
        )
    before = Retried(row.id, row.kind, row.attempts, row.last_error)
    row.status = "pending"
    row.attempts = 0
    row.next_attempt_at = now
    row.last_error = None
    if row.kind == NOTICE_KIND:
        notice = await session.get(m.Notice, int(row.payload.get("notice_id") or 0))
        if notice is not None and notice.status == "failed":
            notice.status = "queued"
            notice.last_error = None
    return before
