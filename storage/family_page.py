"""What the family invoice page shows: one guardian's students and their bills, read at once.

Every query is scoped by the guardian id from the verified link, through the guardianships
table: nothing here can return another family's invoice or photo. The page costs two indexed
queries whatever the size of the family (none per invoice) and reads plain rows rather than
ORM objects, since nothing on the page is ever written back.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    Date,
    Integer,
    String,
    and_,
    cast,
    exists,
    false,
    func,
    literal_column,
    null,
    select,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from storage import models as m
from storage.session_of import Db, session_of
from workflows.district_facts import COLUMNS as FACT_COLUMNS
from workflows.district_facts import DistrictFacts

# Open invoices and paid ones; cancelled invoices are not the family's to pay.
SHOWN_STATUSES = ("unpaid", "first", "second", "final", "collections", "paid")


@dataclass(frozen=True, slots=True)
class Person:
    id: int
    first_name: str
    last_name: str

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


@dataclass(frozen=True, slots=True)
class GuardianRow(Person):
    preferred_language: str | None


@dataclass(frozen=True, slots=True)
class StudentRow(Person):
    sis_id: str


@dataclass(frozen=True, slots=True)
class LineRow:
    description: str
    quantity: int
    amount_cents: int


@dataclass(frozen=True, slots=True)
class PaymentRow:
    received_on: date
    method: str
    reference: str | None
    amount_cents: int


@dataclass(frozen=True, slots=True)
class InstallmentRow:
    due_on: date
    amount_cents: int
    missed_on: date | None


@dataclass(frozen=True, slots=True)
class PhotoRow:
    id: int
    width: int | None
    height: int | None


@dataclass(slots=True)
class InvoiceBill:
    """One invoice as the family sees it. Attribute names follow `m.Invoice`, so the email
    renderer's helpers (the insurance audit facts) read it the same way."""

    id: int
    number: str
    student_id: int
    incident_id: int | None
    status: str
    subtotal_cents: int
    insurance_cents: int
    total_cents: int
    paid_cents: int
    waived_cents: int
    refunded_cents: int
    due_date: date | None
    created_at: datetime
    paid_at: datetime | None
    override_applied: bool
    cap_reached: bool
    insurance_snapshot: dict[str, Any] | None
    device_model: str | None
    device_asset_tag: str | None
    lines: list[LineRow] = field(default_factory=list)
    payments: list[PaymentRow] = field(default_factory=list)  # oldest first
    installments: list[InstallmentRow] = field(default_factory=list)  # in plan order
    photos: list[PhotoRow] = field(default_factory=list)  # only when the district allows

    @property
    def balance_cents(self) -> int:
        return self.total_cents - self.paid_cents - self.waived_cents


@dataclass(frozen=True, slots=True)
class StudentBills:
    student: StudentRow
    invoices: list[InvoiceBill]  # open first, then paid; newest first within each


@dataclass(frozen=True, slots=True)
class FamilyPage:
    guardian: GuardianRow
    district_name: str
    photos_allowed: bool
    students: list[StudentBills]
    notice_unviewed: bool  # the link's email is this guardian's and not yet marked viewed
    district: DistrictFacts = DistrictFacts()  # what families are told about the district

    @property
    def invoices(self) -> list[InvoiceBill]:
        return [bill for student in self.students for bill in student.invoices]


_INVOICE_COLUMNS = (
    m.Invoice.id,
    m.Invoice.number,
    m.Invoice.student_id,
    m.Invoice.incident_id,
    m.Invoice.status,
    m.Invoice.subtotal_cents,
    m.Invoice.insurance_cents,
    m.Invoice.total_cents,
    m.Invoice.paid_cents,
    m.Invoice.waived_cents,
    m.Invoice.refunded_cents,
    m.Invoice.due_date,
    m.Invoice.created_at,
    m.Invoice.paid_at,
    m.Invoice.override_applied,
    m.Invoice.cap_reached,
    m.Invoice.insurance_snapshot,
    m.Device.model,
    m.Device.asset_tag,
)


def _unviewed(guardian_id: int, notice_id: int | None) -> Any:
    if notice_id is None:
        return false()
    return exists().where(
        m.Notice.id == notice_id,
        m.Notice.guardian_id == guardian_id,
        m.Notice.viewed_at.is_(None),
    )


async def load_family_page(
    db: Db, guardian_id: int, notice_id: int | None = None
) -> FamilyPage | None:
    """The guardian's page in two queries; None when the guardian no longer exists.
    `notice_id` is the email the link came in, checked in the same read."""
    session = session_of(db)
    settings = m.DistrictSettings
    # The guardian, each student with each shown invoice (a student with none still gets a
    # row), and the two district settings and the notice check, which are the same on every row.
    rows = (
        await session.execute(
            select(
                m.Guardian.first_name,
                m.Guardian.last_name,
                m.Guardian.preferred_language,
                select(settings.family_page_photos).where(settings.id == 1).scalar_subquery(),
                _unviewed(guardian_id, notice_id),
                *(
                    select(getattr(settings, column)).where(settings.id == 1).scalar_subquery()
                    for column in FACT_COLUMNS.values()
                ),
                m.Student.id,
                m.Student.first_name,
                m.Student.last_name,
                m.Student.sis_id,
                *_INVOICE_COLUMNS,
            )
            .select_from(m.Guardian)
            .outerjoin(m.Guardianship, m.Guardianship.guardian_id == m.Guardian.id)
            .outerjoin(m.Student, m.Student.id == m.Guardianship.student_id)
            .outerjoin(
                m.Invoice,
                and_(
                    m.Invoice.student_id == m.Student.id,
                    m.Invoice.status.in_(SHOWN_STATUSES),
                    # Held for a pending decision: the family sees it once it stands.
                    m.Invoice.notice_hold.is_(None),
                ),
            )
            .outerjoin(m.Device, m.Device.id == m.Invoice.device_id)
            # An erased guardian (devicecare privacy erase) has no page: old links lead nowhere.
            .where(m.Guardian.id == guardian_id, m.Guardian.erased_at.is_(None))
            .order_by(
                m.Student.first_name,
                m.Student.last_name,
                m.Student.id,
                # Open invoices first, each group newest first.
                m.Invoice.status == "paid",
                m.Invoice.created_at.desc(),
                m.Invoice.id.desc(),
            )
        )
    ).all()
    if not rows:
        return None
    first, last, language, photos_allowed, unviewed = rows[0][:5]
    facts_end = 5 + len(FACT_COLUMNS)
    facts = DistrictFacts(*(str(value or "") for value in rows[0][5:facts_end]))
    students: list[StudentBills] = []
    bills: dict[int, InvoiceBill] = {}
    for row in rows:
        student_id, s_first, s_last, sis_id, *invoice = row[facts_end:]
        if student_id is None:
            continue  # a guardian of no student
        if not students or students[-1].student.id != student_id:
            students.append(StudentBills(StudentRow(student_id, s_first, s_last, sis_id), []))
        if invoice[0] is None:
            continue
        bill = InvoiceBill(*invoice)
        bill.override_applied = bool(bill.override_applied)
        bill.cap_reached = bool(bill.cap_reached)
        bills[bill.id] = bill
        students[-1].invoices.append(bill)
    if bills:
        await _add_details(session, bills, photos=bool(photos_allowed))
    return FamilyPage(
        guardian=GuardianRow(guardian_id, first, last, language),
        district_name=facts.name,
        photos_allowed=bool(photos_allowed),
        students=students,
        notice_unviewed=bool(unviewed),
        district=facts,
    )


def _nothing(kind: Any) -> Any:
    return cast(null(), kind)


async def _add_details(
    session: AsyncSession, bills: dict[int, InvoiceBill], *, photos: bool
) -> None:
    """Lines, payments, installments and (when shown) photos of all the invoices, in one
    query: each part's rows share one shape of columns (kind, owner, order, then values)."""
    ids = list(bills)
    parts = [
        select(
            literal_column("'line'"),
            m.InvoiceLine.invoice_id,
            m.InvoiceLine.position,
            m.InvoiceLine.description,
            _nothing(String),
            m.InvoiceLine.quantity,
            m.InvoiceLine.amount_cents,
            _nothing(Date),
            _nothing(Date),
        ).where(m.InvoiceLine.invoice_id.in_(ids)),
        select(
            literal_column("'payment'"),
            m.Payment.invoice_id,
            m.Payment.id,
            m.Payment.method,
            m.Payment.reference,
            _nothing(Integer),
            m.Payment.amount_cents,
            m.Payment.received_on,
            _nothing(Date),
        ).where(m.Payment.invoice_id.in_(ids)),
        select(
            literal_column("'installment'"),
            m.Installment.invoice_id,
            m.Installment.position,
            _nothing(String),
            _nothing(String),
            _nothing(Integer),
            m.Installment.amount_cents,
            m.Installment.due_on,
            m.Installment.missed_on,
        ).where(m.Installment.invoice_id.in_(ids)),
    ]
    by_incident: dict[int, list[InvoiceBill]] = defaultdict(list)
    if photos:
        for bill in bills.values():
            if bill.incident_id is not None:
                by_incident[bill.incident_id].append(bill)
    if by_incident:
        parts.append(
            select(
                literal_column("'photo'"),
                m.Photo.incident_id,
                m.Photo.id,
                _nothing(String),
                _nothing(String),
                m.Photo.width,
                m.Photo.height,
                _nothing(Date),
                _nothing(Date),
            ).where(m.Photo.incident_id.in_(list(by_incident)))
        )
    rows = await session.execute(union_all(*parts))
    lines: list[tuple[int, int, LineRow]] = []
    payments: list[tuple[date, int, int, PaymentRow]] = []
    installments: list[tuple[int, int, InstallmentRow]] = []
    shots: list[tuple[int, int, PhotoRow]] = []
    for kind, owner, order, text1, text2, int1, int2, day1, day2 in rows:
        if kind == "line":
            lines.append((owner, order, LineRow(text1, int1, int2)))
        elif kind == "payment":
            payments.append((day1, order, owner, PaymentRow(day1, text1, text2, int2)))
        elif kind == "installment":
            installments.append((owner, order, InstallmentRow(day1, int2, day2)))
        else:
            shots.append((owner, order, PhotoRow(order, int1, int2)))
    for invoice_id, _, line in sorted(lines, key=lambda item: item[:2]):
        bills[invoice_id].lines.append(line)
    for _, _, invoice_id, payment in sorted(payments, key=lambda item: item[:2]):
        bills[invoice_id].payments.append(payment)
    for invoice_id, _, installment in sorted(installments, key=lambda item: item[:2]):
        bills[invoice_id].installments.append(installment)
    for incident_id, _, photo in sorted(shots, key=lambda item: item[:2]):
        for bill in by_incident[incident_id]:
            bill.photos.append(photo)


async def family_photo(db: Db, guardian_id: int, photo_id: int) -> m.Photo | None:
    """A photo of damage billed on one of this guardian's shown invoices, when the district
    shows photos to families; None otherwise (whether or not the photo exists)."""
    session = session_of(db)
    settings = await session.get(m.DistrictSettings, 1)
    if settings is None or not settings.family_page_photos:
        return None
    stmt = (
        select(m.Photo)
        .join(m.Invoice, m.Invoice.incident_id == m.Photo.incident_id)
        .join(m.Guardianship, m.Guardianship.student_id == m.Invoice.student_id)
        .join(m.Guardian, m.Guardian.id == m.Guardianship.guardian_id)
        .where(
            m.Photo.id == photo_id,
            m.Guardianship.guardian_id == guardian_id,
            m.Guardian.erased_at.is_(None),
            m.Invoice.status.in_(SHOWN_STATUSES),
        )
        .limit(1)
    )
    return (await session.execute(stmt)).scalars().first()


async def record_notice_viewed(db: Db, guardian_id: int, notice_id: int, at: datetime) -> bool:
    """Mark the guardian's own notice viewed, the first time only; True when this did it."""
    session = session_of(db)
    result = await session.execute(
        update(m.Notice)
        .where(
            m.Notice.id == notice_id,
            m.Notice.guardian_id == guardian_id,
            m.Notice.viewed_at.is_(None),
        )
        .values(viewed_at=at)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


async def guardians_billed_at(db: Db, email: str) -> list[m.Guardian]:
    """Guardians with this address (any case) who have a student with a shown invoice."""
    session = session_of(db)
    address = email.strip().lower()
    billed = (
        select(m.Guardianship.guardian_id)
        .join(m.Invoice, m.Invoice.student_id == m.Guardianship.student_id)
        .where(m.Invoice.status.in_(SHOWN_STATUSES))
    )
    stmt = (
        select(m.Guardian)
        .where(func.lower(m.Guardian.email) == address, m.Guardian.id.in_(billed))
        .order_by(m.Guardian.id)
    )
    return list((await session.execute(stmt)).scalars())
