"""Republish App Homes when something in their lists changes, in the same transaction.

A `before_flush` hook on the write sessions looks at what is about to be written: an incident
(its reporter's list); a claim-cap override request, a waiver, a reported payment, an overdue
invoice or the day's billing run finishing (the lists of everyone whose role acts on them).
For each affected staff member in Slack it queues one `slack.home` outbox row, unless one is
already waiting unclaimed: a burst of changes gives one publish per person.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import date
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from storage import models as m
from storage.card_refresh import CardRefreshingSession
from storage.outbox import new_message
from workflows.clock import Clock
from workflows.home_lists import HomeList, sees

HOME_KIND = "slack.home"
_PREFIX = f"{HOME_KIND}:"
_CLOCK = "devicecare.clock"
WAIVER = "waiver"
COMPLETED = "completed"


class HomeWatchingSession(CardRefreshingSession):
    """The write sessions of a runtime that serves Slack (they refresh incident cards too)."""


def watch_home_changes(sessions: async_sessionmaker[AsyncSession], clock: Clock) -> None:
    info = {**(sessions.kw.get("info") or {}), _CLOCK: clock}  # keeps what the cards need
    sessions.configure(sync_session_class=HomeWatchingSession, info=info)


def _touched(session: Session) -> Iterable[Any]:
    yield from session.new
    yield from session.deleted
    for obj in session.dirty:
        if session.is_modified(obj):
            yield obj


def changed_lists(session: Session, today: date) -> tuple[set[HomeList], set[int]]:
    """Which shared lists changed, and whose own incident lists."""
    lists: set[HomeList] = set()
    owners: set[int] = set()
    for obj in _touched(session):
        if isinstance(obj, m.Incident):
            if obj.reported_by_id is not None:
                owners.add(obj.reported_by_id)
        elif isinstance(obj, m.CapOverrideRequest):
            lists.add(HomeList.OVERRIDES)
        elif isinstance(obj, m.InvoiceAdjustment):
            lists.add(HomeList.WAIVERS if obj.kind == WAIVER else HomeList.OVERDUE)
        elif isinstance(obj, m.PendingPayment):
            lists.add(HomeList.PAYMENTS)
        elif isinstance(obj, m.Invoice) and obj.due_date is not None and obj.due_date <= today:
            lists.add(HomeList.OVERDUE)
        elif isinstance(obj, m.BillingRun) and obj.status == COMPLETED:
            # Invoices become overdue as days pass; the day's billing run is where that lands.
            lists.add(HomeList.OVERDUE)
    return lists, owners


@event.listens_for(HomeWatchingSession, "before_flush")
def _queue_home_refreshes(session: Session, _flush: Any, _instances: Any) -> None:
    clock: Clock | None = session.info.get(_CLOCK)
    if clock is None:
        return
    now = clock.now()
    lists, owners = changed_lists(session, now.date())
    if not lists and not owners:
        return
    with session.no_autoflush:
        staff = session.execute(
            select(m.Staff.id, m.Staff.slack_user_id, m.Role.permissions, m.Role.is_superadmin)
            .join(m.Role, m.Role.id == m.Staff.role_id)
            .where(m.Staff.active.is_(True), m.Staff.slack_user_id.is_not(None))
        ).all()
        users = {
            str(slack_id)
            for staff_id, slack_id, permissions, superadmin in staff
            if staff_id in owners
            or any(sees(home_list, permissions or [], superadmin) for home_list in lists)
        }
        if not users:
            return
        # Rows not yet claimed by a worker (this transaction's earlier flushes included) will
        # read the lists afresh when delivered.
        waiting = session.execute(
            select(m.OutboxMessage.dedupe_key).where(
                m.OutboxMessage.kind == HOME_KIND,
                m.OutboxMessage.status == "pending",
                m.OutboxMessage.attempts == 0,
            )
        ).scalars()
        users -= {key[len(_PREFIX) :].rsplit(":", 1)[0] for key in waiting}
    for user in sorted(users):
        key = f"{_PREFIX}{user}:{uuid.uuid4().hex}"
        session.add(new_message(HOME_KIND, key, {"user": user}, now))
