"""The incident card follows its money: a change to an invoice, a payment, an adjustment or a
notice's delivery state queues a refresh of the incident's Slack card, in the same commit.

Done once here, at the session, rather than at every place that records a payment or sends
an email (Slack, the CLI, Stripe's webhooks, the mail worker, billing runs): whatever writes
the change, the card is refreshed through the usual outbox row (`slack.incident_card`, the
kind bot.slack.cards queues). Only incidents whose card is in Slack are refreshed, and only
once per commit, however many rows changed.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from storage import models as m
from storage.outbox import new_message

CARD_KIND = "slack.incident_card"  # bot.slack.cards.INCIDENT_CARD
CARD_POST_KIND = "incident_card"  # bot.slack.ids.SlackPostKind.INCIDENT_CARD
CLOCK = "clock"  # session.info key: the clock new rows are dated by
_INCIDENTS = "card_refresh.incidents"
_INVOICES = "card_refresh.invoices"
_QUEUED = "card_refresh.queued"


class CardRefreshingSession(Session):
    """The sessions DeviceCare writes with (storage.db.session_factory)."""


def _state(session: Session, key: str) -> set[int]:
    found: set[int] = session.info.setdefault(key, set())
    return found


@event.listens_for(CardRefreshingSession, "before_flush")
def _note_changes(session: Session, _context: Any, _instances: Any) -> None:
    incidents, invoices = _state(session, _INCIDENTS), _state(session, _INVOICES)
    queued = _state(session, _QUEUED)
    for obj in (*session.new, *session.dirty):
        if isinstance(obj, m.Invoice):
            if obj.incident_id is not None and (obj in session.new or session.is_modified(obj)):
                incidents.add(obj.incident_id)
        elif isinstance(obj, m.Payment | m.InvoiceAdjustment | m.Notice):
            if obj.invoice_id is not None and (obj in session.new or session.is_modified(obj)):
                invoices.add(obj.invoice_id)
        elif isinstance(obj, m.OutboxMessage) and obj in session.new and obj.kind == CARD_KIND:
            queued.add(int(obj.payload.get("incident_id", 0)))


@event.listens_for(CardRefreshingSession, "before_commit")
def _queue_refreshes(session: Session) -> None:
    if session.new or session.dirty:
        session.flush()  # so the last changes are noted too
    incidents = session.info.pop(_INCIDENTS, set())
    invoices = session.info.pop(_INVOICES, set())
    queued = session.info.pop(_QUEUED, set())
    clock = session.info.get(CLOCK)
    if not (incidents or invoices) or clock is None:
        return
    with session.no_autoflush:
        if invoices:
            stmt = select(m.Invoice.incident_id).where(
                m.Invoice.id.in_(invoices), m.Invoice.incident_id.is_not(None)
            )
            incidents.update(session.execute(stmt).scalars())
        incidents -= queued
        if not incidents:
            return
        posted = select(m.SlackPost.entity_id).where(
            m.SlackPost.kind == CARD_POST_KIND, m.SlackPost.entity_id.in_(incidents)
        )
        now = clock.now()
        for incident_id in sorted(session.execute(posted).scalars()):
            key = f"incident-card:{incident_id}:{uuid.uuid4().hex}"
            session.add(new_message(CARD_KIND, key, {"incident_id": incident_id}, now))


@event.listens_for(CardRefreshingSession, "after_rollback")
def _forget(session: Session) -> None:
    for key in (_INCIDENTS, _INVOICES, _QUEUED):
        session.info.pop(key, None)


async def note_notices_changed(session: AsyncSession, notice_ids: Collection[int]) -> None:
    """Notices whose state was set by a bulk UPDATE (the mail worker), which the ORM doesn't
    see: their invoices' cards are refreshed at commit like any other change."""
    if not notice_ids:
        return
    stmt = select(m.Notice.invoice_id).where(
        m.Notice.id.in_(list(notice_ids)), m.Notice.invoice_id.is_not(None)
    )
    found = {i for i in (await session.execute(stmt)).scalars() if i is not None}
    _state(session.sync_session, _INVOICES).update(found)
