"""The outbox: side effects queued with the change that causes them, and notices to families
(including the ones held back until a change is settled)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import models as m
from storage import notices as notice_rows
from storage.notices import queue_notice
from storage.outbox import new_message
from storage.repositories.base import SqlRepository
from workflows.clock import Clock


class SqlOutboxRepository(SqlRepository):
    def __init__(self, session: AsyncSession, clock: Clock, *, mail_domain: str) -> None:
        super().__init__(session, clock)
        self.mail_domain = mail_domain  # Message-IDs of the notices queued

    async def enqueue(
        self, kind: str, dedupe_key: str, payload: dict[str, Any], *, fresh_key: bool = False
    ) -> bool:
        """Queue a side effect with the current change; False when the key was queued before.

        `fresh_key`: the key was just made unique (a random part), so the lookup is skipped.
        """
        if fresh_key:
            self.session.add(new_message(kind, dedupe_key, payload, self._now()))
            return True
        exists = (
            await self.session.execute(
                select(m.OutboxMessage.id).where(m.OutboxMessage.dedupe_key == dedupe_key)
            )
        ).first()
        if exists is not None:
            return False
        self.session.add(new_message(kind, dedupe_key, payload, self._now()))
        await self.session.flush()
        return True

    async def queue_notice(
        self,
        template: str,
        invoice_id: int,
        dedupe_key: str,
        context: dict[str, Any] | None = None,
        *,
        held: bool = False,
    ) -> int:
        """Email the invoice's guardians (one notice each); returns how many were queued.

        `held`: written but not sent until `release_held`."""
        notices = await queue_notice(
            self.session,
            self._now(),
            template=template,
            invoice_id=invoice_id,
            dedupe_key=dedupe_key,
            context=context or {},
            mail_domain=self.mail_domain,
            held=held,
        )
        return len(notices)

    async def family_told(self, invoice_id: int) -> bool:
        return await notice_rows.family_told(self.session, invoice_id)

    async def hold_unsent(self, invoice_id: int, template: str) -> int:
        return await notice_rows.hold_unsent(self.session, invoice_id, template)

    async def release_held(self, invoice_id: int) -> int:
        return await notice_rows.release_held(self.session, self._now(), invoice_id)

    async def withdraw_held(self, invoice_id: int, reason: str) -> int:
        return await notice_rows.withdraw_held(self.session, invoice_id, reason)

    async def count(self, kind: str, dedupe_prefix: str) -> int:
        """Outbox rows of `kind` whose dedupe key starts with `dedupe_prefix`, in any state."""
        stmt = select(func.count(m.OutboxMessage.id)).where(
            m.OutboxMessage.kind == kind,
            m.OutboxMessage.dedupe_key.startswith(dedupe_prefix, autoescape=True),
        )
        return await self._int(stmt)
