"""Read-only queries behind each staff member's App Home: one page of each list and its size."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Generic, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import models as m
from storage.session_of import Db, session_of

OPEN_INVOICE_STATUSES = ("unpaid", "first", "second", "final", "collections")
WAIVER = "waiver"
PENDING = "pending"

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list: its lines, which page (from 0) and how many lines there are in all."""

    lines: list[T]
    page: int
    size: int
    total: int

    @property
    def has_previous(self) -> bool:
        return self.page > 0

    @property
    def has_next(self) -> bool:
        return (self.page + 1) * self.size < self.total


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
class WaiverLine:
    adjustment_id: int
    invoice_number: str
    student: str
    amount_cents: int
    reason: str
    requested_by: str | None


@dataclass(frozen=True)
class PaymentLine:
    pending_payment_id: int
    invoice_number: str
    student: str
    amount_cents: int
    amount_given: bool
    method: str


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
    page: Page[OverdueLine]


def _name(first: str | None, last: str | None) -> str | None:
    return f"{first} {last}" if first else None


async def _total(session: AsyncSession, stmt: Select[int]) -> int:
    return int((await session.execute(stmt)).scalar_one())


def _clamp(page: int, size: int, total: int) -> int:
    """A page past the end (the list shrank since the button was drawn) shows the last one."""
    last = max((total - 1) // size, 0)
    return min(max(page, 0), last)


async def my_open_incidents(
    db: Db, staff_id: int, page: int = 0, size: int = 5
) -> Page[IncidentLine]:
    session = session_of(db)
    where = (m.Incident.reported_by_id == staff_id, m.Incident.status != "closed")
    total = await _total(session, select(func.count(m.Incident.id)).where(*where))
    page = _clamp(page, size, total)
    stmt = (
        select(m.Incident, m.Device.serial, m.Student.first_name, m.Student.last_name)
        .join(m.Device, m.Device.id == m.Incident.device_id)
        .outerjoin(m.Student, m.Student.id == m.Incident.student_id)
        .where(*where)
        .order_by(m.Incident.opened_at.desc(), m.Incident.id.desc())
        .offset(page * size)
        .limit(size)
    )
    lines = [
        IncidentLine(
            id=incident.id,
            status=incident.status,
            occurred_on=incident.occurred_on,
            serial=serial,
            student=_name(first, last),
            flags=tuple(incident.flag_names),
        )
        for incident, serial, first, last in (await session.execute(stmt)).all()
    ]
    return Page(lines, page, size, total)


async def pending_approvals(db: Db, page: int = 0, size: int = 5) -> Page[ApprovalLine]:
    session = session_of(db)
    where = m.CapOverrideRequest.status == PENDING
    total = await _total(session, select(func.count(m.CapOverrideRequest.id)).where(where))
    page = _clamp(page, size, total)
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
        .where(where)
        .order_by(m.CapOverrideRequest.requested_at, m.CapOverrideRequest.id)
        .offset(page * size)
        .limit(size)
    )
    lines = [
        ApprovalLine(rid, iid, _name(first, last), requester)
        for rid, iid, first, last, requester in (await session.execute(stmt)).all()
    ]
    return Page(lines, page, size, total)


async def pending_waivers(db: Db, page: int = 0, size: int = 5) -> Page[WaiverLine]:
    session = session_of(db)
    adj = m.InvoiceAdjustment
    where = (adj.kind == WAIVER, adj.status == PENDING)
    total = await _total(session, select(func.count(adj.id)).where(*where))
    page = _clamp(page, size, total)
    stmt = (
        select(adj, m.Invoice.number, m.Student.first_name, m.Student.last_name, m.Staff.name)
        .join(m.Invoice, m.Invoice.id == adj.invoice_id)
        .join(m.Student, m.Student.id == m.Invoice.student_id)
        .outerjoin(m.Staff, m.Staff.id == adj.requested_by_id)
        .where(*where)
        .order_by(adj.requested_at, adj.id)
        .offset(page * size)
        .limit(size)
    )
    lines = [
        WaiverLine(a.id, number, _name(first, last) or "", a.amount_cents, a.reason, requester)
        for a, number, first, last, requester in (await session.execute(stmt)).all()
    ]
    return Page(lines, page, size, total)


async def reported_payments(db: Db, page: int = 0, size: int = 5) -> Page[PaymentLine]:
    session = session_of(db)
    pp = m.PendingPayment
    where = pp.status == PENDING
    total = await _total(session, select(func.count(pp.id)).where(where))
    page = _clamp(page, size, total)
    stmt = (
        select(pp, m.Invoice.number, m.Student.first_name, m.Student.last_name)
        .join(m.Invoice, m.Invoice.id == pp.invoice_id)
        .join(m.Student, m.Student.id == m.Invoice.student_id)
        .where(where)
        .order_by(pp.created_at, pp.id)
        .offset(page * size)
        .limit(size)
    )
    lines = [
        PaymentLine(
            p.id, number, _name(first, last) or "", p.amount_cents, p.amount_given, p.method
        )
        for p, number, first, last in (await session.execute(stmt)).all()
    ]
    return Page(lines, page, size, total)


async def overdue_invoices(db: Db, today: date, page: int = 0, size: int = 5) -> OverdueSummary:
    session = session_of(db)
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
    total = int(count)
    page = _clamp(page, size, total)
    stmt = (
        select(m.Invoice, m.Student.first_name, m.Student.last_name)
        .join(m.Student, m.Student.id == m.Invoice.student_id)
        .where(*overdue)
        .order_by(m.Invoice.due_date, m.Invoice.id)
        .offset(page * size)
        .limit(size)
    )
    lines = [
        OverdueLine(
            inv.id,
            inv.number,
            _name(first, last) or "",
            inv.due_date or today,
            inv.balance_cents,
            inv.status,
        )
        for inv, first, last in (await session.execute(stmt)).all()
    ]
    return OverdueSummary(total, int(balance), Page(lines, page, size, total))
