"""The outbox worker: delivery, retries with backoff, visible failures, no double sends."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select

from bot.jobs.worker import OutboxWorker
from storage import models as m
from storage.db import session_factory
from storage.outbox import MAX_ATTEMPTS
from storage.uow import UnitOfWorkFactory


async def _queue(stores, n: int, kind: str = "test.note") -> None:  # type: ignore[no-untyped-def]
    async with stores() as store:
        for i in range(n):
            assert await store.outbox.enqueue(kind, f"{kind}:{i}", {"n": i})
        assert not await store.outbox.enqueue(kind, f"{kind}:0", {"n": 0})  # deduplicated
        await store.commit()


async def _rows(engine) -> list[m.OutboxMessage]:  # type: ignore[no-untyped-def]
    async with session_factory(engine)() as session:
        stmt = select(m.OutboxMessage).order_by(m.OutboxMessage.id)
        return list((await session.execute(stmt)).scalars())


async def test_delivers_and_marks_sent(engine, stores, clock) -> None:
    await _queue(stores, 3)
    seen: list[int] = []

    async def handler(payload: dict) -> None:  # type: ignore[type-arg]
        seen.append(payload["n"])

    worker = OutboxWorker(
        UnitOfWorkFactory(session_factory(engine), clock), clock, {"test.note": handler}
    )
    assert await worker.run_once() == 3
    assert await worker.run_once() == 0
    assert seen == [0, 1, 2]
    rows = await _rows(engine)
    assert {r.status for r in rows} == {"sent"} and all(r.sent_at == clock.now() for r in rows)


async def test_failures_retry_with_backoff_then_stay_visible(engine, stores, clock) -> None:
    await _queue(stores, 1)
    calls = 0

    async def broken(payload: dict) -> None:  # type: ignore[type-arg]
        nonlocal calls
        calls += 1
        raise ConnectionError("smtp down")

    worker = OutboxWorker(
        UnitOfWorkFactory(session_factory(engine), clock), clock, {"test.note": broken}
    )
    assert await worker.run_once() == 1
    row = (await _rows(engine))[0]
    assert (row.status, row.attempts, row.last_error) == (
        "pending",
        1,
        "ConnectionError: smtp down",
    )
    assert row.next_attempt_at == clock.now() + timedelta(seconds=30)
    assert await worker.run_once() == 0  # not due yet
    for _ in range(MAX_ATTEMPTS):
        clock.advance(hours=2)
        await worker.run_once()
    row = (await _rows(engine))[0]
    assert (row.status, row.attempts, calls) == ("failed", MAX_ATTEMPTS, MAX_ATTEMPTS)


async def test_kinds_without_a_handler_wait(engine, stores, clock) -> None:
    await _queue(stores, 2, kind="email.invoice_issued")
    worker = OutboxWorker(
        UnitOfWorkFactory(session_factory(engine), clock), clock, {"test.note": lambda p: None}
    )
    assert await worker.run_once() == 0
    assert {r.status for r in await _rows(engine)} == {"pending"}


async def test_two_workers_never_send_a_row_twice(engine, stores, clock) -> None:
    await _queue(stores, 40)
    sent: list[int] = []

    async def slow(payload: dict) -> None:  # type: ignore[type-arg]
        await asyncio.sleep(0.01)
        sent.append(payload["n"])

    workers = [
        OutboxWorker(
            UnitOfWorkFactory(session_factory(engine), clock),
            clock,
            {"test.note": slow},
            batch_size=3,
        )
        for _ in range(2)
    ]

    async def drain(worker: OutboxWorker) -> None:
        while await worker.run_once():
            pass

    await asyncio.gather(*(drain(w) for w in workers))
    assert sorted(sent) == list(range(40))
    assert all(r.attempts == 1 for r in await _rows(engine))


async def test_a_batch_mixing_transactional_and_plain_handlers_never_locks(
    engine, stores, clock
) -> None:
    """Email (inside the worker's transaction) and Slack (its own transaction) in one batch."""
    await _queue(stores, 2, kind="test.inside")
    await _queue(stores, 2, kind="test.outside")
    written: list[str] = []

    class Inside:
        async def deliver(self, uow, payload: dict) -> None:  # type: ignore[no-untyped-def, type-arg]
            uow.session.add(m.Counter(name=f"inside-{payload['n']}", value=1))
            await uow.flush()  # the worker's transaction now holds SQLite's write lock
            written.append("inside")

    async def outside(payload: dict) -> None:  # type: ignore[type-arg]
        async with stores() as store:  # its own transaction, as Slack handlers do
            store.session.add(m.Counter(name=f"outside-{payload['n']}", value=1))
            await store.commit()
        written.append("outside")

    worker = OutboxWorker(
        UnitOfWorkFactory(session_factory(engine), clock),
        clock,
        {"test.inside": Inside(), "test.outside": outside},
    )
    assert await asyncio.wait_for(worker.run_once(), timeout=10) == 4
    assert sorted(written) == ["inside", "inside", "outside", "outside"]
    assert {r.status for r in await _rows(engine)} == {"sent"}
