"""Fee items: the priced parts and charges invoice lines are made of."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select

from storage import models as m
from storage.repositories.base import SqlRepository


class SqlFeeItemRepository(SqlRepository):
    async def by_ids(self, ids: Sequence[int]) -> list[m.FeeItem]:
        if not ids:
            return []
        stmt = select(m.FeeItem).where(m.FeeItem.id.in_(set(ids)))
        return await self._list(stmt)

    async def active(self) -> list[m.FeeItem]:
        stmt = select(m.FeeItem).where(m.FeeItem.active.is_(True)).order_by(m.FeeItem.name)
        return await self._list(stmt)
