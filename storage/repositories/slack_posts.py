"""Where each record's Slack message is (channel and ts), so it can be updated in place."""

from __future__ import annotations

from sqlalchemy import select, update

from storage import models as m
from storage.repositories.base import SqlRepository


class SqlSlackPostRepository(SqlRepository):
    async def get(self, kind: str, entity_id: int) -> m.SlackPost | None:
        return await self._find(
            m.SlackPost, m.SlackPost.kind == kind, m.SlackPost.entity_id == entity_id
        )

    async def move(self, kind: str, entity_id: int, channel: str, ts: str) -> None:
        """The record's message is somewhere else now (posted again after a deletion)."""
        await self.session.execute(
            update(m.SlackPost)
            .where(m.SlackPost.kind == kind, m.SlackPost.entity_id == entity_id)
            .values(channel=channel, ts=ts)
        )

    async def save(self, kind: str, entity_id: int, channel: str, ts: str) -> None:
        self.session.add(
            m.SlackPost(
                kind=kind, entity_id=entity_id, channel=channel, ts=ts, created_at=self._now()
            )
        )
        await self.session.flush()

    async def at(self, channel: str, ts: str) -> m.SlackPost | None:
        """The record whose message is at (channel, ts), e.g. the incident a thread belongs to."""
        stmt = select(m.SlackPost).where(m.SlackPost.channel == channel, m.SlackPost.ts == ts)
        return (await self.session.execute(stmt.limit(1))).scalar_one_or_none()
