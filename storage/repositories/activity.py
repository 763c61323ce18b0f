"""The activity log: who did what to which record, and refusals kept for audit."""

from __future__ import annotations

from typing import Unpack

from sqlalchemy import select

from storage import models as m
from storage.activity import activity_entry
from storage.repositories.base import SqlRepository
from workflows.permissions import Actor
from workflows.ports import ActivityChange


class SqlActivityRepository(SqlRepository):
    async def log(
        self,
        actor: Actor,
        entity_type: str,
        entity_id: int | None,
        action: str,
        **change: Unpack[ActivityChange],
    ) -> None:
        self.session.add(
            activity_entry(actor, self._now(), entity_type, entity_id, action, **change)
        )

    async def log_refusal(self, actor: Actor, what: str, reason: str) -> None:
        """A refused action, kept for audit under the actor's own security record."""
        await self.log(actor, "security", actor.staff_id, "refused", comment=f"{what}: {reason}")

    async def for_entity(self, entity_type: str, entity_id: int) -> list[m.ActivityEntry]:
        stmt = (
            select(m.ActivityEntry)
            .where(
                m.ActivityEntry.entity_type == entity_type, m.ActivityEntry.entity_id == entity_id
            )
            .order_by(m.ActivityEntry.id)
        )
        return await self._list(stmt)
