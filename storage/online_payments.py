"""Online checkouts and payment-provider events in the store, and the Slack posts they cause.

Every function works inside the caller's session (one `SqlUnitOfWork` transaction), so an event's
row, the payment it records and the posts it queues commit together or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from storage import models as m
from storage.session_of import Db, session_of
from storage.uow import SqlUnitOfWork

# Outbox kinds (delivered by bot/slack/stripe_payments.py).
PAYMENT_POST_KIND = "slack.online_payment"  # "Paid online: …" in the invoice's thread
PAYMENT_ALERT_KIND = "slack.online_payment_alert"  # money staff must act on, billing channel

# A verified Stripe event waiting to be applied (delivered by bot/web/stripe_webhooks.py).
STRIPE_EVENT_KIND = "stripe.event"

PAYMENT_EVENTS = m.Base.metadata.tables[m.PaymentEvent.__tablename__]
OUTBOX = m.Base.metadata.tables[m.OutboxMessage.__tablename__]


@dataclass(frozen=True)
class FamilyInvoice:
    """What the Pay button needs about one of a guardian's invoices."""

    invoice_id: int
    number: str
    status: str
    balance_cents: int
    guardian_email: str | None


async def family_invoice(db: Db, *, guardian_id: int, invoice_id: int) -> FamilyInvoice | None:
    """The invoice when it bills a student this guardian is guardian of; else None."""
    session = session_of(db)
    stmt = (
        select(m.Invoice, m.Guardian.email)
        .join(m.Guardianship, m.Guardianship.student_id == m.Invoice.student_id)
        .join(m.Guardian, m.Guardian.id == m.Guardianship.guardian_id)
        .where(
            m.Invoice.id == invoice_id,
            m.Guardianship.guardian_id == guardian_id,
            m.Guardian.erased_at.is_(None),  # an erased family's links open nothing
        )
    )
    row = (await session.execute(stmt)).first()
    if row is None:
        return None
    invoice, email = row
    return FamilyInvoice(invoice.id, invoice.number, invoice.status, invoice.balance_cents, email)


async def lock_invoice(store: SqlUnitOfWork, invoice_id: int) -> m.Invoice | None:
    """The invoice, locked and read fresh (`SqlUnitOfWork.invoices.lock`), without its lines."""
    return await store.invoices.lock(invoice_id, lines=False)


async def reusable_checkout(
    db: Db,
    *,
    invoice_id: int,
    guardian_id: int,
    amount_cents: int,
    since: datetime,
) -> m.OnlineCheckout | None:
    """An open checkout for the same payment started since `since` (a second click on Pay)."""
    session = session_of(db)
    stmt = (
        select(m.OnlineCheckout)
        .where(
            m.OnlineCheckout.invoice_id == invoice_id,
            m.OnlineCheckout.guardian_id == guardian_id,
            m.OnlineCheckout.amount_cents == amount_cents,
            m.OnlineCheckout.status == "open",
            m.OnlineCheckout.created_at >= since,
            m.OnlineCheckout.url.is_not(None),
        )
        .order_by(m.OnlineCheckout.created_at.desc())
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def checkout_by_session(
    session: AsyncSession, session_id: str, *, fresh: bool = False
) -> m.OnlineCheckout | None:
    """`fresh`: read the row again even if this session holds it (after taking a lock)."""
    stmt = select(m.OnlineCheckout).where(m.OnlineCheckout.session_id == session_id)
    if fresh:
        stmt = stmt.execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one_or_none()


async def guardian_by_id(session: AsyncSession, guardian_id: int) -> m.Guardian | None:
    return await session.get(m.Guardian, guardian_id)


def new_checkout(
    *,
    session_id: str,
    invoice_id: int,
    guardian_id: int | None,
    amount_cents: int,
    url: str | None,
    now: datetime,
    status: str = "open",
) -> m.OnlineCheckout:
    return m.OnlineCheckout(
        provider="stripe",
        session_id=session_id,
        invoice_id=invoice_id,
        guardian_id=guardian_id,
        amount_cents=amount_cents,
        status=status,
        url=url,
        created_at=now,
    )


async def claim_event(
    session: AsyncSession,
    *,
    source: str,
    event_id: str,
    kind: str,
    amount_cents: int | None,
    now: datetime,
) -> int | None:
    """Take the event: its row's id, or None when it was taken before (a replay).

    The (source, event_id) unique key decides: INSERT … ON CONFLICT DO NOTHING waits for a
    concurrent taker's commit, and only one of them gets the row. The outcome is filled in by
    the caller before its transaction commits.
    """
    values: dict[str, Any] = {
        "source": source,
        "event_id": event_id,
        "kind": kind,
        "outcome": "ignored",
        "amount_cents": amount_cents,
        "received_at": now,
    }
    return await _insert_new(session, PAYMENT_EVENTS, values)


async def _insert_new(
    session: AsyncSession | AsyncConnection, table: Any, values: dict[str, Any]
) -> int | None:
    """INSERT … ON CONFLICT DO NOTHING RETURNING id: the new row's id, or None if it existed."""
    if isinstance(session, AsyncConnection):
        dialect = session.dialect.name
    else:
        dialect = session.bind.dialect.name if session.bind is not None else ""
    if dialect == "postgresql":
        stmt: Any = pg_insert(table).values(values).on_conflict_do_nothing()
    elif dialect == "sqlite":
        stmt = sqlite_insert(table).values(values).on_conflict_do_nothing()
    else:
        stmt = insert(table).values(values)
    result = await session.execute(stmt.returning(table.c.id))
    return result.scalar_one_or_none()


async def receive_event(
    conn: AsyncConnection, *, event_id: str, event: dict[str, Any], now: datetime
) -> bool:
    """Keep a verified event for the worker to apply: False when it was received before.

    One statement, keyed on the event id, so the webhook answers Stripe at once and a
    redelivery (or a copy racing it) is recognised without touching anything else.
    """
    values = {
        "kind": STRIPE_EVENT_KIND,
        "dedupe_key": f"stripe-event:{event_id}",
        "payload": event,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }
    return await _insert_new(conn, OUTBOX, values) is not None


async def record_event_outcome(
    session: AsyncSession,
    row_id: int,
    *,
    outcome: str,
    detail: str,
    invoice_id: int | None,
    payment_id: int | None,
) -> None:
    await session.execute(
        update(PAYMENT_EVENTS)
        .where(PAYMENT_EVENTS.c.id == row_id)
        .values(outcome=outcome, detail=detail[:2000], invoice_id=invoice_id, payment_id=payment_id)
    )


async def queue_payment_post(
    store: SqlUnitOfWork, *, invoice_id: int, payment_id: int, text: str
) -> None:
    # A new payment's id: the key can't have been queued before.
    await store.outbox.enqueue(
        PAYMENT_POST_KIND,
        f"online-payment-post:{payment_id}",
        {"invoice_id": invoice_id, "payment_id": payment_id, "text": text},
        fresh_key=True,
    )


async def queue_payment_alert(
    store: SqlUnitOfWork, *, key: str, text: str, invoice_id: int | None = None
) -> bool:
    """One alert per `key` (e.g. per checkout session), however many events mention it."""
    return await store.outbox.enqueue(
        PAYMENT_ALERT_KIND,
        f"online-payment-alert:{key}",
        {"invoice_id": invoice_id, "text": text},
    )


async def record_checkout(db: Db, checkout: m.OnlineCheckout) -> None:
    """The checkout Stripe opened (a `new_checkout`), written at once: a parallel request that
    recorded the same Stripe session first makes this raise IntegrityError
    (storage.db_errors.DuplicateRow)."""
    session = session_of(db)
    session.add(checkout)
    await session.flush()
