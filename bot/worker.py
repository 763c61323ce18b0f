"""The outbox worker: delivers queued side effects (email, Slack posts) with retries."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage import models as m
from storage.outbox import claim_batch, settle_failed, settle_sent
from workflows.clock import Clock

log = logging.getLogger("devicecare.worker")

Handler = Callable[[dict[str, Any]], Awaitable[None]]


class OutboxWorker:
    """Runs the handlers registered for each kind; kinds without a handler wait in the queue."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        handlers: Mapping[str, Handler],
        *,
        idle_seconds: float = 2.0,
        batch_size: int = 50,
    ) -> None:
        self.sessions = sessions
        self.clock = clock
        self.handlers = dict(handlers)
        self.idle_seconds = idle_seconds
        self.batch_size = batch_size

    async def run_once(self) -> int:
        """Deliver one batch; returns how many rows were handled."""
        if not self.handlers:
            return 0
        async with self.sessions() as session:
            rows = await claim_batch(
                session, self.clock.now(), kinds=frozenset(self.handlers), limit=self.batch_size
            )
            for row in rows:
                await self._deliver(session, row)
                await session.commit()
            return len(rows)

    async def _deliver(self, session: AsyncSession, row: m.OutboxMessage) -> None:
        try:
            await self.handlers[row.kind](dict(row.payload))
        except Exception as exc:  # noqa: BLE001 - every failure is recorded on the row
            log.warning(
                "outbox %s #%s failed (attempt %s): %s", row.kind, row.id, row.attempts, exc
            )
            settle_failed(row, self.clock.now(), f"{type(exc).__name__}: {exc}")
        else:
            settle_sent(row, self.clock.now())

    async def run_forever(self) -> None:
        if not self.handlers:
            log.info("outbox worker: no delivery channel is configured; idle")
        while True:
            try:
                handled = await self.run_once()
            except Exception:  # noqa: BLE001 - a database blip must not kill the worker
                log.exception("outbox worker: batch failed; retrying")
                handled = 0
            if not handled:
                await asyncio.sleep(self.idle_seconds)
