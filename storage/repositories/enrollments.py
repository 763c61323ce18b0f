"""Insurance enrollment: policies, the students enrolled in them, their premium invoices."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import func, select

from storage import models as m
from storage.repositories.base import SqlRepository, columns
from workflows.ports import NewEnrollment


class SqlEnrollmentRepository(SqlRepository):
    async def policy(self, policy_id: int, *, lock: bool = False) -> m.InsurancePolicy | None:
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

    async def live(
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

    async def get(self, enrollment_id: int, *, lock: bool = False) -> m.InsuranceEnrollment | None:
        stmt = select(m.InsuranceEnrollment).where(m.InsuranceEnrollment.id == enrollment_id)
        if lock and self._for_update:
            stmt = stmt.with_for_update(of=m.InsuranceEnrollment)
        return (await self.session.execute(stmt)).unique().scalar_one_or_none()

    async def add(self, enrollment: NewEnrollment) -> m.InsuranceEnrollment:
        waived_by = enrollment.enrolled_by_id if enrollment.premium_waiver_reason else None
        row = m.InsuranceEnrollment(
            **columns(enrollment, created_at=self._now(), premium_waived_by_id=waived_by)
        )
        return await self._added(row)

    async def premium_invoice(self, enrollment_id: int) -> m.Invoice | None:
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

    async def policy_by_name(self, name: str, *, lock: bool = False) -> m.InsurancePolicy | None:
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
        return await self._added(policy)

    async def expiring(self, day: date) -> list[m.InsuranceEnrollment]:
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
