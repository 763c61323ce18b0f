"""Store methods for insurance enrollment: policies, enrollments, their premium invoices.

`SqlStore` takes these in as a mixin; they run in its session (its unit of work).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import models as m


class EnrollmentStore:
    """Mixed into `SqlStore`, which provides the session, the clock and the lock style."""

    # Provided by SqlStore.
    session: AsyncSession
    _for_update: bool
    _now: Callable[[], datetime]
    _get: Callable[[type[Any], int, bool], Awaitable[Any]]

    async def get_policy(self, policy_id: int, *, lock: bool = False) -> m.InsurancePolicy | None:
        policy: m.InsurancePolicy | None = await self._get(m.InsurancePolicy, policy_id, lock)
        return policy

    async def lock_student(self, student_id: int) -> m.Student | None:
        """The student, locked: enrollments for one student are made one at a time.

        SQLite holds the database write lock from BEGIN IMMEDIATE, so only PostgreSQL needs it.
        """
        stmt = select(m.Student).where(m.Student.id == student_id)
        if self._for_update:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def live_enrollment(
        self, student_id: int, policy_id: int, term_end: date
    ) -> m.InsuranceEnrollment | None:
        """The student's enrollment in this policy's term that isn't cancelled.

        Matched by the term's end: an enrollment's start moves to the day coverage began.
        """
        stmt = (
            select(m.InsuranceEnrollment)
            .where(
                m.InsuranceEnrollment.student_id == student_id,
                m.InsuranceEnrollment.policy_id == policy_id,
                m.InsuranceEnrollment.term_end == term_end,
                m.InsuranceEnrollment.status != "cancelled",
            )
            .order_by(m.InsuranceEnrollment.id)
            .limit(1)
        )
        return (await self.session.execute(stmt)).unique().scalar_one_or_none()

    async def get_enrollment(
        self, enrollment_id: int, *, lock: bool = False
    ) -> m.InsuranceEnrollment | None:
        stmt = select(m.InsuranceEnrollment).where(m.InsuranceEnrollment.id == enrollment_id)
        if lock and self._for_update:
            stmt = stmt.with_for_update(of=m.InsuranceEnrollment)
        return (await self.session.execute(stmt)).unique().scalar_one_or_none()

    async def add_enrollment(
        self,
        *,
        student_id: int,
        policy_id: int,
        term_label: str,
        term_start: date,
        term_end: date,
        status: str,
        enrolled_by_id: int | None,
        source: str,
        premium_waiver_reason: str | None,
    ) -> m.InsuranceEnrollment:
        enrollment = m.InsuranceEnrollment(
            student_id=student_id,
            policy_id=policy_id,
            term_label=term_label,
            term_start=term_start,
            term_end=term_end,
            status=status,
            created_at=self._now(),
            enrolled_by_id=enrolled_by_id,
            source=source,
            premium_waiver_reason=premium_waiver_reason,
            premium_waived_by_id=enrolled_by_id if premium_waiver_reason else None,
        )
        self.session.add(enrollment)
        await self.session.flush()
        return enrollment

    async def premium_invoice_for(self, enrollment_id: int) -> m.Invoice | None:
        """The enrollment's premium invoice (the newest one that isn't cancelled)."""
        stmt = (
            select(m.Invoice)
            .where(
                m.Invoice.premium_enrollment_id == enrollment_id,
                m.Invoice.status != "cancelled",
            )
            .order_by(m.Invoice.id.desc())
            .limit(1)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def find_policy_by_name(
        self, name: str, *, lock: bool = False
    ) -> m.InsurancePolicy | None:
        stmt = (
            select(m.InsurancePolicy)
            .where(func.lower(m.InsurancePolicy.name) == name.strip().lower())
            .order_by(m.InsurancePolicy.id)
            .limit(1)
        )
        if lock and self._for_update:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def add_policy(self, name: str) -> m.InsurancePolicy:
        """A new policy with no dials and no term; the caller sets what it needs."""
        policy = m.InsurancePolicy(
            name=name,
            allow_override=False,
            active=True,
            created_at=self._now(),
            premium_cents=0,
            coverage_starts="on_payment",
        )
        self.session.add(policy)
        await self.session.flush()
        return policy

    async def expiring_enrollments(self, day: date) -> list[m.InsuranceEnrollment]:
        """Active enrollments not yet reminded whose term ends within their policy's reminder
        days of `day` (and hasn't ended)."""
        policies = (
            await self.session.execute(
                select(m.InsurancePolicy.id, m.InsurancePolicy.expiry_reminder_days).where(
                    m.InsurancePolicy.expiry_reminder_days.is_not(None),
                    m.InsurancePolicy.expiry_reminder_days >= 0,
                )
            )
        ).all()
        found: list[m.InsuranceEnrollment] = []
        for policy_id, days in policies:
            stmt = (
                select(m.InsuranceEnrollment)
                .where(
                    m.InsuranceEnrollment.policy_id == policy_id,
                    m.InsuranceEnrollment.status == "active",
                    m.InsuranceEnrollment.expiry_reminded_on.is_(None),
                    m.InsuranceEnrollment.term_end >= day,
                    m.InsuranceEnrollment.term_end <= day + timedelta(days=int(days or 0)),
                )
                .order_by(m.InsuranceEnrollment.id)
            )
            found.extend((await self.session.execute(stmt)).unique().scalars())
        return found


async def students_by_sis_id(session: AsyncSession, sis_ids: set[str]) -> dict[str, m.Student]:
    """SIS id -> the student, for those of `sis_ids` on file."""
    stmt = select(m.Student).where(m.Student.sis_id.in_(sis_ids))
    return {s.sis_id: s for s in (await session.execute(stmt)).scalars()}


async def policy_by_name_or_id(session: AsyncSession, text: str) -> m.InsurancePolicy | None:
    """A policy named exactly (case-insensitive), or by its number ("3" or "#3")."""
    value = text.strip()
    digits = value.removeprefix("#")
    if digits.isascii() and digits.isdigit() and len(digits) <= 12:
        found = await session.get(m.InsurancePolicy, int(digits))
        if found is not None:
            return found
    stmt = (
        select(m.InsurancePolicy)
        .where(func.lower(m.InsurancePolicy.name) == value.lower())
        .order_by(m.InsurancePolicy.active.desc(), m.InsurancePolicy.id.desc())
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def enrollable_policies(session: AsyncSession) -> list[m.InsurancePolicy]:
    """Active policies with a term: the ones families can be enrolled in."""
    stmt = (
        select(m.InsurancePolicy)
        .where(
            m.InsurancePolicy.active.is_(True),
            m.InsurancePolicy.term_start.is_not(None),
            m.InsurancePolicy.term_end.is_not(None),
        )
        .order_by(m.InsurancePolicy.name, m.InsurancePolicy.id)
    )
    return list((await session.execute(stmt)).scalars())


async def all_policies(session: AsyncSession) -> list[m.InsurancePolicy]:
    stmt = select(m.InsurancePolicy).order_by(
        m.InsurancePolicy.active.desc(), m.InsurancePolicy.name, m.InsurancePolicy.id
    )
    return list((await session.execute(stmt)).scalars())


async def search_students(session: AsyncSession, text: str, *, limit: int = 50) -> list[m.Student]:
    """Type-ahead for students: an SIS id that starts with `text`, or first and last names that
    start with each of its words (active students only)."""
    query = " ".join(text.split())[:100]
    if len(query) < 2:
        return []
    words = query.lower().split()[:3]
    by_name = [
        func.lower(m.Student.first_name).startswith(word, autoescape=True)
        | func.lower(m.Student.last_name).startswith(word, autoescape=True)
        for word in words
    ]
    stmt = (
        select(m.Student)
        .where(
            m.Student.active.is_(True),
            m.Student.sis_id.startswith(query, autoescape=True) | and_(*by_name),
        )
        .order_by(m.Student.last_name, m.Student.first_name, m.Student.id)
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars())


async def current_enrollments(
    session: AsyncSession, student_id: int, on: date, *, limit: int = 3
) -> list[m.InsuranceEnrollment]:
    """The student's enrollments that aren't cancelled and whose term hasn't ended by `on`
    (today's and upcoming ones), soonest-ending first."""
    stmt = (
        select(m.InsuranceEnrollment)
        .where(
            m.InsuranceEnrollment.student_id == student_id,
            m.InsuranceEnrollment.status != "cancelled",
            m.InsuranceEnrollment.term_end >= on,
        )
        .order_by(m.InsuranceEnrollment.term_end, m.InsuranceEnrollment.id)
        .limit(limit)
    )
    return list((await session.execute(stmt)).unique().scalars())
