"""Where a device's facts came from: each source's record of it, when that source last
synced, and the source's most recent user as a holder suggestion (never an assignment)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from storage import models as m
from storage.session_of import Db, session_of
from storage.sync_runs import synced_at
from workflows.sync import SOURCE_LABELS


@dataclass(frozen=True)
class Provenance:
    source: str
    facts: dict[str, Any]
    changed_at: datetime
    synced_at: datetime | None  # the end of the source's last applied or unchanged run

    @property
    def label(self) -> str:
        return SOURCE_LABELS.get(self.source, self.source)


@dataclass(frozen=True)
class HolderSuggestion:
    """A source's most recent user of a device, and the student with that email if any."""

    source: str
    email: str
    student_id: int | None
    student_name: str | None

    @property
    def label(self) -> str:
        return SOURCE_LABELS.get(self.source, self.source)


async def device_provenance(db: Db, device_id: int) -> list[Provenance]:
    session = session_of(db)
    r = m.SourceRecord
    stmt = (
        select(r.source, r.facts, r.changed_at)
        .where(r.entity == "device", r.entity_id == device_id)
        .order_by(r.source)
    )
    rows = (await session.execute(stmt)).all()
    when = await synced_at(session, sorted({row.source for row in rows}))
    return [Provenance(row.source, row.facts, row.changed_at, when.get(row.source)) for row in rows]


async def holder_suggestion(
    db: Db, provenance: list[Provenance], holder_id: int | None
) -> HolderSuggestion | None:
    """The first source's most recent user that isn't the current holder; matched to a student
    by email, without case."""
    session = session_of(db)
    for record in provenance:
        email = record.facts.get("last_user_email")
        if not email:
            continue
        stmt = (
            select(m.Student.id, m.Student.first_name, m.Student.last_name)
            .where(func.lower(m.Student.email) == str(email).lower())
            .order_by(m.Student.active.desc(), m.Student.id)
            .limit(1)
        )
        student = (await session.execute(stmt)).first()
        if student is not None and student.id == holder_id:
            continue
        name = None if student is None else f"{student.first_name} {student.last_name}".strip()
        return HolderSuggestion(
            record.source, str(email), None if student is None else student.id, name
        )
    return None
