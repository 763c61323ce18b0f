"""Read-only queries behind each staff member's App Home."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import models as m

OPEN_INVOICE_STATUSES = ("unpaid", "first", "second", "final", "collections")


@dataclass(frozen=True)
class IncidentLine:
    id: int
    status: str
    occurred_on: date
    serial: str
    student: str | None
    flags: tuple[str, ...]


@dataclass(frozen=True)
class ApprovalLine:
    request_id: int
    incident_id: int
    student: str | None
    requested_by: str | None


@dataclass(frozen=True)
class OverdueLine:
    invoice_id: int
    number: str
    student: str
    due_date: date
    balance_cents: int
    status: str


@dataclass(frozen=True)
class OverdueSummary:
    count: int
    balance_cents: int
    oldest: list[OverdueLine]


async def my_open_incidents(
    session: AsyncSession, staff_id: int, limit: int = 10
) -> list[IncidentLine]:
    stmt = (
        select(m.Incident, m.Device.serial, m.Student.first_name, m.Student.last_name)
        .join(m.Device, m.Device.id == m.Incident.device_id)
        .outerjoin(m.Student, m.Student.id == m.Incident.student_id)
        .where(m.Incident.reported_by_id == staff_id, m.Incident.status != "closed")
        .order_by(m.Incident.opened_at.desc())
        .limit(limit)
    )
    rows = (await session.execute(stmt)).all()
    return [
        IncidentLine(
            id=incident.id,
            status=incident.status,
            occurred_on=incident.occurred_on,
            serial=serial,
            student=f"{first} {last}" if first else None,
            flags=tuple(incident.flag_names),
        )
        for incident, serial, first, last in rows
    ]


async def pending_approvals(session: AsyncSession, limit: int = 10) -> list[ApprovalLine]:
    stmt = (
        select(
            m.CapOverrideRequest.id,
            m.CapOverrideRequest.incident_id,
            m.Student.first_name,
            m.Student.last_name,
            m.Staff.display_name,
        )
        .join(m.Incident, m.Incident.id == m.CapOverrideRequest.incident_id)
        .outerjoin(m.Student, m.Student.id == m.Incident.student_id)
        .outerjoin(m.Staff, m.Staff.id == m.CapOverrideRequest.requested_by_id)
        .where(m.CapOverrideRequest.status == "pending")
        .order_by(m.CapOverrideRequest.requested_at)
        .limit(limit)
    )
    return [
        ApprovalLine(rid, iid, f"{first} {last}" if first else None, requester)
        for rid, iid, first, last, requester in (await session.execute(stmt)).all()
    ]


async def overdue_invoices(session: AsyncSession, today: date, limit: int = 10) -> OverdueSummary:
    overdue = (
        m.Invoice.status.in_(OPEN_INVOICE_STATUSES),
        m.Invoice.due_date.is_not(None),
        m.Invoice.due_date < today,
    )
    count, balance = (
        await session.execute(
            select(
                func.count(m.Invoice.id),
                func.coalesce(func.sum(m.invoice_balance()), 0),
            ).where(*overdue)
        )
    ).one()
    stmt = (
        select(m.Invoice, m.Student.first_name, m.Student.last_name)
        .join(m.Student, m.Student.id == m.Invoice.student_id)
        .where(*overdue)
        .order_by(m.Invoice.due_date, m.Invoice.id)
        .limit(limit)
    )
    oldest = [
        OverdueLine(
            inv.id,
            inv.number,
            f"{first} {last}",
            inv.due_date or today,
            inv.balance_cents,
            inv.status,
        )
        for inv, first, last in (await session.execute(stmt)).all()
    ]
    return OverdueSummary(int(count), int(balance), oldest)
