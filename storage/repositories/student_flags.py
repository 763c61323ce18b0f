"""Repeat-offender badges: the flagged incidents they count, and the badges given."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select

from storage import models as m
from storage.repositories.base import SqlRepository, columns
from workflows.ports import NewStudentFlag


class SqlStudentFlagRepository(SqlRepository):
    async def incident_dates(
        self, student_id: int, flag: str, since: date, until: date
    ) -> list[date]:
        stmt = (
            select(m.Incident.occurred_on)
            .join(m.IncidentFlag, m.IncidentFlag.incident_id == m.Incident.id)
            .where(
                m.Incident.student_id == student_id,
                m.IncidentFlag.flag == flag,
                m.Incident.occurred_on >= since,
                m.Incident.occurred_on <= until,
            )
        )
        return await self._list(stmt)

    async def has(self, student_id: int, flag: str, window_start: date) -> bool:
        stmt = select(m.StudentFlag.id).where(
            m.StudentFlag.student_id == student_id,
            m.StudentFlag.flag == flag,
            m.StudentFlag.window_start == window_start,
        )
        return (await self.session.execute(stmt)).first() is not None

    async def add(self, flag: NewStudentFlag) -> None:
        await self._added(m.StudentFlag(**columns(flag, flagged_at=self._now())))

    async def for_student(self, student_id: int) -> list[m.StudentFlag]:
        """The student's repeat-offender badges, newest counting window first."""
        stmt = (
            select(m.StudentFlag)
            .where(m.StudentFlag.student_id == student_id)
            .order_by(m.StudentFlag.window_start.desc(), m.StudentFlag.flag)
        )
        return await self._list(stmt)
