"""Billing pauses: windows of days on which billing sends nothing."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select

from storage import models as m
from storage.repositories.base import SqlRepository, columns
from workflows.ports import NewPause


class SqlPauseRepository(SqlRepository):
    async def windows(self, *, ending_on_or_after: date | None = None) -> list[m.BillingPause]:
        """The pause windows, earliest first; past ones left out when `ending_on_or_after`."""
        stmt = select(m.BillingPause).order_by(m.BillingPause.starts_on, m.BillingPause.id)
        if ending_on_or_after is not None:
            stmt = stmt.where(m.BillingPause.ends_on >= ending_on_or_after)
        return await self._list(stmt)

    async def overlapping(
        self, starts_on: date, ends_on: date, *, lock: bool = False
    ) -> list[m.BillingPause]:
        """Windows sharing a day with [starts_on, ends_on].

        With `lock`, pause changes are serialised first (the settings row is locked on
        PostgreSQL; SQLite's BEGIN IMMEDIATE already does it), so two overlapping windows added
        at the same moment can't both pass this check.
        """
        if lock:
            await self._get(m.DistrictSettings, 1, lock=True)
        stmt = (
            select(m.BillingPause)
            .where(m.BillingPause.starts_on <= ends_on, m.BillingPause.ends_on >= starts_on)
            .order_by(m.BillingPause.starts_on, m.BillingPause.id)
        )
        return await self._list(stmt)

    async def add(self, pause: NewPause) -> m.BillingPause:
        return await self._added(m.BillingPause(**columns(pause, created_at=self._now())))

    async def get(self, pause_id: int, *, lock: bool = False) -> m.BillingPause | None:
        pause: m.BillingPause | None = await self._get(m.BillingPause, pause_id, lock)
        return pause

    async def remove(self, pause_id: int) -> None:
        pause = await self.session.get(m.BillingPause, pause_id)
        if pause is not None:
            await self.session.delete(pause)
            await self.session.flush()
