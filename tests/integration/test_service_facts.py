"""Heartbeats from several processes of one name at once: every count is kept, none twice."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from storage.db import session_factory
from storage.service_facts import Beat, read_facts, record_beat
from workflows.clock import FixedClock


async def test_concurrent_beats_add_up(engine: AsyncEngine, clock: FixedClock) -> None:
    sessions = session_factory(engine)
    now = clock.now()

    async def beat(i: int) -> None:
        async with sessions() as session:
            await record_beat(
                session,
                Beat(
                    "worker",
                    f"host-{i}:1",
                    now + timedelta(seconds=i),
                    success_at=now + timedelta(seconds=i) if i % 2 else None,
                    counters={"slack_api_errors|chat.postMessage|ratelimited": 1},
                ),
            )

    await asyncio.gather(*(beat(i) for i in range(8)))
    async with sessions() as session:
        facts = await read_facts(session)
    worker = facts["worker"]
    assert worker.counters == {"slack_api_errors|chat.postMessage|ratelimited": 8}
    assert worker.last_success == now + timedelta(seconds=7)  # the newest, whatever the order
    assert worker.last_error is None
