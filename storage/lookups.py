"""Rows the service layers look up by id, outside any use case of the store."""

from __future__ import annotations

from storage import models as m
from storage.session_of import Db, session_of


async def get_guardian(db: Db, guardian_id: int) -> m.Guardian | None:
    return await session_of(db).get(m.Guardian, guardian_id)


async def get_notice(db: Db, notice_id: int) -> m.Notice | None:
    return await session_of(db).get(m.Notice, notice_id)


async def get_photo(db: Db, photo_id: int) -> m.Photo | None:
    return await session_of(db).get(m.Photo, photo_id)
