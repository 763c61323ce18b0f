"""Payment events: each payment a source reported (a portal's row, a Stripe event), kept once
under the table's unique (source, event_id)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import models as m


async def payment_event(session: AsyncSession, source: str, event_id: str) -> m.PaymentEvent | None:
    stmt = select(m.PaymentEvent).where(
        m.PaymentEvent.source == source, m.PaymentEvent.event_id == event_id
    )
    return (await session.execute(stmt)).scalar_one_or_none()


def add_payment_event(
    session: AsyncSession,
    *,
    source: str,
    event_id: str,
    kind: str,
    outcome: str,
    invoice_id: int | None,
    payment_id: int | None,
    amount_cents: int,
    detail: str,
    received_at: datetime,
) -> None:
    """The event, written with the caller's transaction (a second one with the same source and
    id breaks the unique key when it is flushed)."""
    session.add(
        m.PaymentEvent(
            source=source,
            event_id=event_id,
            kind=kind,
            outcome=outcome,
            invoice_id=invoice_id,
            payment_id=payment_id,
            amount_cents=amount_cents,
            detail=detail,
            received_at=received_at,
        )
    )
