"""Queueing email notices: one row per guardian, written with the change that causes it."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import models as m
from storage.outbox import new_message

NOTICE_KIND = "email.notice"


def new_message_id(domain: str) -> str:
    return f"<{uuid.uuid4().hex}@{domain}>"


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
) -> list[m.Notice]:
    """Notices (and their outbox rows) for every reachable guardian; repeats are ignored."""
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
    queued: list[m.Notice] = []
    for guardian in await recipients(session, invoice.student_id):
        if guardian.id in existing or guardian.email is None:
            continue
        queued.append(
            await _add_notice(
                session,
                now,
                guardian=guardian,
                address=guardian.email,
                invoice_id=invoice_id,
                template=template,
                dedupe_key=dedupe_key,
                context=context,
                mail_domain=mail_domain,
            )
        )
    await session.flush()
    return queued


async def queue_guardian_notice(
    session: AsyncSession,
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
    notice = await _add_notice(
        session,
        now,
        guardian=guardian,
        address=guardian.email,
        invoice_id=invoice_id,
        template=template,
        dedupe_key=dedupe_key,
        context=context,
        mail_domain=mail_domain,
    )
    await session.flush()
    return notice


async def _add_notice(
    session: AsyncSession,
    now: datetime,
    *,
    guardian: m.Guardian,
    address: str,
    invoice_id: int | None,
    template: str,
    dedupe_key: str,
    context: dict[str, Any],
    mail_domain: str,
) -> m.Notice:
    """A queued notice to `address` and the outbox row that will send it."""
    notice = m.Notice(
        invoice_id=invoice_id,
        guardian_id=guardian.id,
        template=template,
        dedupe_key=dedupe_key,
        to_address=address,
        message_id=new_message_id(mail_domain),
        context=context,
        status="queued",
        created_at=now,
    )
    session.add(notice)
    await session.flush()
    session.add(new_message(NOTICE_KIND, f"notice:{notice.id}", {"notice_id": notice.id}, now))
    return notice
