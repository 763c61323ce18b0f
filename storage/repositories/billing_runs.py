"""The daily billing runs on record."""

from __future__ import annotations

from datetime import date

from storage import models as m
from storage.repositories.base import SqlRepository


class SqlBillingRunRepository(SqlRepository):
    async def on(self, day: date) -> m.BillingRun | None:
        """The billing run recorded for `day` (running or completed), if any."""
        return await self.session.get(m.BillingRun, day)
