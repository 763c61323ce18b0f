"""Incidents, with the notes and photos kept on a device or one of its incidents."""

from __future__ import annotations

from dataclasses import asdict

from sqlalchemy import func, select

from storage import models as m
from storage.repositories.base import SqlRepository, columns
from workflows.permissions import Actor
from workflows.ports import NewIncident, StoredPhoto


class SqlIncidentRepository(SqlRepository):
    async def get(self, incident_id: int, *, lock: bool = False) -> m.Incident | None:
        return await self._get(m.Incident, incident_id, lock)

    async def by_key(self, key: str) -> m.Incident | None:
        return await self._find(m.Incident, m.Incident.idempotency_key == key)

    async def add(self, incident: NewIncident) -> m.Incident:
        flags = [m.IncidentFlag(flag=f) for f in incident.flags]
        row = m.Incident(**columns(incident, status="open", opened_at=self._now(), flags=flags))
        return await self._added(row)

    async def add_note(
        self, *, device_id: int, incident_id: int | None, actor: Actor, body: str
    ) -> int:
        note = m.Note(
            device_id=device_id,
            incident_id=incident_id,
            author_staff_id=actor.staff_id,
            author_label=actor.name,
            body=body,
            created_at=self._now(),
        )
        return (await self._added(note)).id

    async def add_photo(
        self, *, device_id: int, incident_id: int | None, actor: Actor, photo: StoredPhoto
    ) -> int:
        row = m.Photo(
            device_id=device_id,
            incident_id=incident_id,
            uploaded_by_id=actor.staff_id,
            created_at=self._now(),
            **asdict(photo),
        )
        return (await self._added(row)).id

    async def photo_by_source_ref(self, incident_id: int, source_ref: str) -> m.Photo | None:
        """A photo already attached to the incident from that source (e.g. a Slack file id)."""
        stmt = select(m.Photo).where(
            m.Photo.incident_id == incident_id, m.Photo.source_ref == source_ref
        )
        return (await self.session.execute(stmt.limit(1))).scalar_one_or_none()

    async def photo_count(self, incident_id: int) -> int:
        stmt = select(func.count(m.Photo.id)).where(m.Photo.incident_id == incident_id)
        return await self._int(stmt)

    async def note_count(self, incident_id: int) -> int:
        stmt = select(func.count(m.Note.id)).where(m.Note.incident_id == incident_id)
        return await self._int(stmt)
