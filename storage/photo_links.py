"""The photos staff can open from Slack (`/device`, the incident card), and the duplicate check."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from storage import models as m
from storage.session_of import Db, session_of


@dataclass(frozen=True)
class PhotoRef:
    id: int
    source_url: str | None  # the Slack file's permalink, when the photo came from Slack


async def incident_has_photo(db: Db, incident_id: int, sha256: str) -> bool:
    """Whether the incident already has a photo with exactly this (re-encoded) content."""
    session = session_of(db)
    stmt = select(m.Photo.id).where(m.Photo.incident_id == incident_id, m.Photo.sha256 == sha256)
    return (await session.execute(stmt.limit(1))).first() is not None


async def photo_refs(
    db: Db,
    *,
    limit: int,
    incident_id: int | None = None,
    device_id: int | None = None,
) -> list[PhotoRef]:
    """The newest photos of an incident or of a device (its whole life), newest first."""
    session = session_of(db)
    stmt = select(m.Photo.id, m.Photo.source_url)
    if incident_id is not None:
        stmt = stmt.where(m.Photo.incident_id == incident_id)
    if device_id is not None:
        stmt = stmt.where(m.Photo.device_id == device_id)
    stmt = stmt.order_by(m.Photo.created_at.desc(), m.Photo.id.desc()).limit(limit)
    return [PhotoRef(row.id, row.source_url) for row in await session.execute(stmt)]
