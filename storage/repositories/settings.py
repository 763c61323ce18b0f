"""The district's settings row."""

from __future__ import annotations

from storage import models as m
from storage.repositories.base import SqlRepository
from workflows.errors import NotFound


class SqlSettingsRepository(SqlRepository):
    async def get(self) -> m.DistrictSettings:
        row = await self.session.get(m.DistrictSettings, 1)
        if row is None:
            raise NotFound("District settings are missing; run `devicecare db upgrade`.")
        return row
