"""The weekly digest's figures, each one aggregated in SQL.

For one ISO week (Monday to Sunday, district days): incidents opened and closed, money recovered
(payments received less refunds issued), the students newly flagged as repeat offenders; and,
as of the day the digest is made, the open invoices past their due date (count and balance).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import models as m
from storage.session_of import Db, session_of
from workflows.invoices import OPEN_STATUSES

MAX_NAMED_OFFENDERS = 15  # the digest names this many; the count covers them all
DIGEST_KIND = "slack.weekly_digest"  # its outbox rows, one per week


def digest_key(week_start: date) -> str:
    """The outbox dedupe key: one digest per week, however often the job runs."""
    return f"weekly-digest:{week_start.isoformat()}"


def week_of(day: date) -> date:
    """The Monday starting the ISO week that holds `day`."""
    return day - timedelta(days=day.weekday())


def previous_week(today: date) -> date:
    """The Monday of the last complete ISO week before `today`'s week."""
    return week_of(today) - timedelta(days=7)


@dataclass(frozen=True)
class NewOffender:
    student: str
    flags: tuple[str, ...]


@dataclass(frozen=True)
class WeeklyDigest:
    week_start: date  # a Monday
    as_of: date  # the day overdue figures are counted on
    incidents_opened: int
    incidents_closed: int
    payments_cents: int
    refunds_cents: int
    overdue_count: int
    overdue_cents: int
    offender_count: int
    offenders: tuple[NewOffender, ...] = field(default_factory=tuple)

    @property
    def week_end(self) -> date:
        return self.week_start + timedelta(days=6)

    @property
    def recovered_cents(self) -> int:
        return self.payments_cents - self.refunds_cents

    def to_payload(self) -> dict[str, Any]:
        return {
            "week_start": self.week_start.isoformat(),
            "as_of": self.as_of.isoformat(),
            "incidents_opened": self.incidents_opened,
            "incidents_closed": self.incidents_closed,
            "payments_cents": self.payments_cents,
            "refunds_cents": self.refunds_cents,
            "overdue_count": self.overdue_count,
            "overdue_cents": self.overdue_cents,
            "offender_count": self.offender_count,
            "offenders": [{"student": o.student, "flags": list(o.flags)} for o in self.offenders],
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> WeeklyDigest:
        return cls(
            week_start=date.fromisoformat(payload["week_start"]),
            as_of=date.fromisoformat(payload["as_of"]),
            incidents_opened=int(payload["incidents_opened"]),
            incidents_closed=int(payload["incidents_closed"]),
            payments_cents=int(payload["payments_cents"]),
            refunds_cents=int(payload["refunds_cents"]),
            overdue_count=int(payload["overdue_count"]),
            overdue_cents=int(payload["overdue_cents"]),
            offender_count=int(payload["offender_count"]),
            offenders=tuple(
                NewOffender(str(o["student"]), tuple(str(f) for f in o["flags"]))
                for o in payload.get("offenders") or []
            ),
        )


def _instant(day: date, tz: tzinfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=tz).astimezone(UTC)


async def _scalar(session: AsyncSession, stmt: Any) -> int:
    return int((await session.execute(stmt)).scalar_one() or 0)


async def weekly_digest(db: Db, week_start: date, *, tz: tzinfo, as_of: date) -> WeeklyDigest:
    """The figures for the week starting `week_start` (moved back to its Monday)."""
    session = session_of(db)
    monday = week_of(week_start)
    sunday = monday + timedelta(days=6)
    start, end = _instant(monday, tz), _instant(sunday + timedelta(days=1), tz)
    inc = m.Incident
    opened = await _scalar(
        session, select(func.count(inc.id)).where(inc.opened_at >= start, inc.opened_at < end)
    )
    closed = await _scalar(
        session,
        select(func.count(inc.id)).where(
            inc.closed_at.is_not(None), inc.closed_at >= start, inc.closed_at < end
        ),
    )
    pay = m.Payment
    payments = await _scalar(
        session,
        select(func.coalesce(func.sum(pay.amount_cents), 0)).where(
            pay.received_on >= monday, pay.received_on <= sunday
        ),
    )
    adj = m.InvoiceAdjustment
    issued_at = func.coalesce(adj.decided_at, adj.requested_at)
    refunds = await _scalar(
        session,
        select(func.coalesce(func.sum(adj.amount_cents), 0)).where(
            adj.kind == "refund", adj.status == "applied", issued_at >= start, issued_at < end
        ),
    )
    inv = m.Invoice
    balance = m.invoice_balance()
    overdue_count, overdue_cents = (
        await session.execute(
            select(func.count(inv.id), func.coalesce(func.sum(balance), 0)).where(
                inv.status.in_([str(s) for s in OPEN_STATUSES]),
                inv.due_date < as_of,
                balance > 0,
            )
        )
    ).one()
    sf = m.StudentFlag
    flagged = [sf.flagged_at >= start, sf.flagged_at < end]
    offender_count = await _scalar(
        session, select(func.count(func.distinct(sf.student_id))).where(*flagged)
    )
    offenders = await _named_offenders(session, flagged) if offender_count else ()
    return WeeklyDigest(
        week_start=monday,
        as_of=as_of,
        incidents_opened=opened,
        incidents_closed=closed,
        payments_cents=payments,
        refunds_cents=refunds,
        overdue_count=int(overdue_count or 0),
        overdue_cents=int(overdue_cents or 0),
        offender_count=offender_count,
        offenders=offenders,
    )


async def _named_offenders(session: AsyncSession, flagged: list[Any]) -> tuple[NewOffender, ...]:
    """The first MAX_NAMED_OFFENDERS students flagged in the week, with their flags."""
    sf, st = m.StudentFlag, m.Student
    first = (
        select(sf.student_id, func.min(sf.flagged_at).label("first_at"))
        .where(*flagged)
        .group_by(sf.student_id)
        .order_by(func.min(sf.flagged_at), sf.student_id)
        .limit(MAX_NAMED_OFFENDERS)
        .subquery()
    )
    rows = (
        await session.execute(
            select(st.first_name, st.last_name, sf.flag, first.c.student_id)
            .select_from(first)
            .join(st, st.id == first.c.student_id)
            .join(sf, sf.student_id == first.c.student_id)
            .where(*flagged)
            .group_by(first.c.student_id, first.c.first_at, st.first_name, st.last_name, sf.flag)
            .order_by(first.c.first_at, first.c.student_id, sf.flag)
        )
    ).all()
    names: dict[int, str] = {}
    flags: dict[int, list[str]] = {}
    for first_name, last_name, flag, student_id in rows:
        names[student_id] = f"{first_name} {last_name}".strip()
        flags.setdefault(student_id, []).append(str(flag))
    return tuple(NewOffender(names[s], tuple(flags[s])) for s in names)
