"""Insurance enrollment queries over a session: policies by name or number, the enrollable
ones, student type-ahead, a student's current enrollments.

The enrollment repository itself is storage.repositories.enrollments.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import models as m
from storage.session_of import Db, session_of


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


async def enrollable_policies(db: Db) -> list[m.InsurancePolicy]:
    """Active policies with a term: the ones families can be enrolled in."""
    session = session_of(db)
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


async def all_policies(db: Db) -> list[m.InsurancePolicy]:
    session = session_of(db)
    stmt = select(m.InsurancePolicy).order_by(
        m.InsurancePolicy.active.desc(), m.InsurancePolicy.name, m.InsurancePolicy.id
    )
    return list((await session.execute(stmt)).scalars())


async def search_students(db: Db, text: str, *, limit: int = 50) -> list[m.Student]:
    """Type-ahead for students: an SIS id that starts with `text`, or first and last names that
    start with each of its words (active students only)."""
    session = session_of(db)
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
    db: Db, student_id: int, on: date, *, limit: int = 3
) -> list[m.InsuranceEnrollment]:
    """The student's enrollments that aren't cancelled and whose term hasn't ended by `on`
    (today's and upcoming ones), soonest-ending first."""
    session = session_of(db)
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
