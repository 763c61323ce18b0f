"""Queueing email notices: one row per guardian, written with the change that causes it."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from storage import models as m
from storage.outbox import new_message
from storage.session_of import Db, session_of

NOTICE_KIND = "email.notice"


# A notice whose context holds this key answers a family's email: the sender writes
# In-Reply-To and References from it and "Re: <their subject>", so it threads with their reply.
THREAD_KEY = "reply_thread"
MAX_REFERENCES = 20  # the newest kept; RFC 5322 lets a long References drop the middle
_MESSAGE_ID = re.compile(r"^<[^<>\s\\\"()\[\],;:]+@[^<>\s\\\"()\[\],;:]+>$")


def new_message_id(domain: str) -> str:
    return f"<{uuid.uuid4().hex}@{domain}>"


def is_message_id(value: object) -> bool:
    """A Message-ID we can write into a header as it is (`<local@domain>`, no spaces)."""
    return isinstance(value, str) and len(value) <= 300 and bool(_MESSAGE_ID.match(value))


def reply_thread(message_id: str, references: Sequence[str], subject: str) -> dict[str, Any]:
    """What a notice needs to answer a family's email (stored under THREAD_KEY): its
    Message-ID, the References it carried, its subject."""
    refs = [r for r in references if is_message_id(r) and r != message_id][-MAX_REFERENCES:]
    return {"message_id": message_id, "references": refs, "subject": subject[:300]}


def thread_headers(context: dict[str, Any] | None) -> tuple[str, str, str] | None:
    """(In-Reply-To, References, subject) for a notice that answers a family's email; None
    for any other notice, or when what is stored isn't safe to put in a header."""
    thread = (context or {}).get(THREAD_KEY)
    if not isinstance(thread, dict) or not is_message_id(thread.get("message_id")):
        return None
    parent = str(thread["message_id"])
    raw = thread.get("references")
    refs = [r for r in raw if is_message_id(r)] if isinstance(raw, list) else []
    chain = [*[r for r in refs if r != parent][-MAX_REFERENCES:], parent]
    subject = " ".join(str(thread.get("subject") or "").split())
    if not subject:
        return parent, " ".join(chain), ""
    if not re.match(r"^(re|aw|sv|rv|r)\s*:", subject, re.IGNORECASE):
        subject = f"Re: {subject}"
    return parent, " ".join(chain), subject


def reachable(guardian: Any) -> Any:
    """Guardians who can be emailed: an address, and not known to bounce.

    `guardian` is `m.Guardian` or its table's columns (`table.c`) for Core statements.
    """
    return and_(
        guardian.email.is_not(None),
        guardian.email != "",
        guardian.email_bouncing_since.is_(None),
    )


async def recipients(session: AsyncSession, student_id: int) -> list[m.Guardian]:
    """The student's guardians who can be emailed (an address, and not known to bounce)."""
    stmt = (
        select(m.Guardian)
        .join(m.Guardianship, m.Guardianship.guardian_id == m.Guardian.id)
        .where(m.Guardianship.student_id == student_id, reachable(m.Guardian))
        .order_by(m.Guardian.id)
    )
    return list((await session.execute(stmt)).scalars())


async def queue_notice(
    session: AsyncSession,
    now: datetime,
    *,
    template: str,
    invoice_id: int,
    dedupe_key: str,
    context: dict[str, Any],
    mail_domain: str,
    held: bool = False,
) -> list[m.Notice]:
    """Notices (and their outbox rows) for every reachable guardian; repeats are ignored.

    `held`: the notices are written with status "held" and no outbox row; `release_held`
    sends them later (an invoice waiting for a decision that changes its amount)."""
    invoice = await session.get(m.Invoice, invoice_id)
    if invoice is None:
        return []
    existing = set(
        (
            await session.execute(
                select(m.Notice.guardian_id).where(m.Notice.dedupe_key == dedupe_key)
            )
        ).scalars()
    )
    draft = _Draft(template, dedupe_key, context, mail_domain, invoice_id)
    queued: list[m.Notice] = []
    for guardian in await recipients(session, invoice.student_id):
        if guardian.id in existing or guardian.email is None:
            continue
        queued.append(await _add_notice(session, now, guardian, guardian.email, draft, held=held))
    await session.flush()
    return queued


async def queue_guardian_notice(
    db: Db,
    now: datetime,
    *,
    guardian: m.Guardian,
    template: str,
    dedupe_key: str,
    context: dict[str, Any],
    mail_domain: str,
    invoice_id: int | None = None,
) -> m.Notice | None:
    """One notice (and its outbox row) to one guardian; None when the key was used before or
    the guardian can't be emailed."""
    session = session_of(db)
    if not guardian.email or guardian.email_bouncing_since is not None:
        return None
    taken = (
        await session.execute(
            select(m.Notice.id).where(
                m.Notice.dedupe_key == dedupe_key, m.Notice.guardian_id == guardian.id
            )
        )
    ).first()
    if taken is not None:
        return None
    draft = _Draft(template, dedupe_key, context, mail_domain, invoice_id)
    notice = await _add_notice(session, now, guardian, guardian.email, draft)
    await session.flush()
    return notice


@dataclass(frozen=True)
class _Draft:
    """What the notices of one queueing share, whoever they go to."""

    template: str
    dedupe_key: str
    context: dict[str, Any]
    mail_domain: str
    invoice_id: int | None


async def _add_notice(
    session: AsyncSession,
    now: datetime,
    guardian: m.Guardian,
    address: str,
    draft: _Draft,
    *,
    held: bool = False,
) -> m.Notice:
    """A queued notice to `address` and the outbox row that will send it (a held one has no
    outbox row until it is released)."""
    notice = m.Notice(
        invoice_id=draft.invoice_id,
        guardian_id=guardian.id,
        template=draft.template,
        dedupe_key=draft.dedupe_key,
        to_address=address,
        message_id=new_message_id(draft.mail_domain),
        context=draft.context,
        status=HELD if held else "queued",
        created_at=now,
    )
    session.add(notice)
    await session.flush()
    if not held:
        session.add(new_message(NOTICE_KIND, f"notice:{notice.id}", {"notice_id": notice.id}, now))
    return notice


# --- held notices ---------------------------------------------------------------------------

# Written, not sent: the invoice waits for a decision that changes its amount.
HELD = "held"
# Statuses meaning the family received the email (a digest's members show the digest's).
_RECEIVED = ("sent", "bounced")


async def family_told(session: AsyncSession, invoice_id: int) -> bool:
    """Whether any email about the invoice went out: on its own, or inside a sent digest."""
    digest = aliased(m.Notice)
    alone = select(m.Notice.id).where(
        m.Notice.invoice_id == invoice_id, m.Notice.status.in_(_RECEIVED)
    )
    digested = (
        select(m.Notice.id)
        .join(digest, digest.id == m.Notice.digest_id)
        .where(m.Notice.invoice_id == invoice_id, digest.status.in_(_RECEIVED))
    )
    for stmt in (alone, digested):
        if (await session.execute(stmt.limit(1))).first() is not None:
            return True
    return False


async def hold_unsent(session: AsyncSession, invoice_id: int, template: str) -> int:
    """Hold the invoice's `template` notices that haven't gone out yet; how many were held.

    Their outbox rows stay: the sender skips a held notice, and `release_held` queues a fresh
    row for it."""
    result = await session.execute(
        update(m.Notice)
        .where(
            m.Notice.invoice_id == invoice_id,
            m.Notice.template == template,
            m.Notice.status == "queued",
        )
        .values(status=HELD)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def release_held(session: AsyncSession, now: datetime, invoice_id: int) -> int:
    """Queue the invoice's held notices for sending, in the caller's transaction."""
    held = list(
        (
            await session.execute(
                select(m.Notice.id).where(
                    m.Notice.invoice_id == invoice_id, m.Notice.status == HELD
                )
            )
        ).scalars()
    )
    if not held:
        return 0
    await session.execute(
        update(m.Notice)
        .where(m.Notice.id.in_(held))
        .values(status="queued")
        .execution_options(synchronize_session=False)
    )
    keys = {f"notice:{i}": i for i in held} | {f"notice:{i}:released": i for i in held}
    taken = set(
        (
            await session.execute(
                select(m.OutboxMessage.dedupe_key).where(m.OutboxMessage.dedupe_key.in_(keys))
            )
        ).scalars()
    )
    for notice_id in held:
        # A notice held after it was queued already has its row (used by then, or soon).
        key = f"notice:{notice_id}" if f"notice:{notice_id}" not in taken else None
        key = key or f"notice:{notice_id}:released"
        if key not in taken:
            session.add(new_message(NOTICE_KIND, key, {"notice_id": notice_id}, now))
    await session.flush()
    return len(held)


async def withdraw_held(session: AsyncSession, invoice_id: int, reason: str) -> int:
    """The held notices won't go out (the invoice was cancelled or settled meanwhile)."""
    result = await session.execute(
        update(m.Notice)
        .where(m.Notice.invoice_id == invoice_id, m.Notice.status == HELD)
        .values(status="withdrawn", last_error=reason[:2000])
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)
