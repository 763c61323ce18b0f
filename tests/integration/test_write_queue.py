"""In a burst, writes wait their turn at the writers' pool first come, first served; none fails
because the pool's own timeout ran out while it queued (storage.write_queue)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.runtime import Runtime, build_runtime, prepare_database
from bot.settings import Settings
from storage import models as m
from storage.write_queue import QueuedWritersPool, WriteQueueTimeout
from tests.builders import add_staff
from workflows.permissions import Actor

ENTITY = "write_queue_test"


@asynccontextmanager
async def started(database_url: str, **settings: Any) -> AsyncIterator[Runtime]:
    runtime = build_runtime(Settings(_env_file=None, database_url=database_url, **settings))
    try:
        await prepare_database(runtime)
        yield runtime
    finally:
        await runtime.close()


@pytest.fixture
async def runtime(database_url: str) -> AsyncIterator[Runtime]:
    async with started(database_url) as runtime:
        yield runtime


def writers_pool(runtime: Runtime) -> QueuedWritersPool:
    pool = runtime.engine.sync_engine.pool
    assert isinstance(pool, QueuedWritersPool)
    return pool


async def someone(runtime: Runtime) -> Actor:
    return await add_staff(runtime.stores, "Technician", f"{uuid.uuid4().hex[:8]}@district.org")


async def write(runtime: Runtime, actor: Actor, n: int, hold: float) -> None:
    async with runtime.stores() as store:
        await store.activity.log(actor, ENTITY, n, "written")
        await store.flush()
        await asyncio.sleep(hold)  # the connection stays checked out, as in a slower change
        await store.commit()


async def written(runtime: Runtime, actor: Actor) -> int:
    async with runtime.reads() as store:
        stmt = select(func.count()).where(
            m.ActivityEntry.entity_type == ENTITY, m.ActivityEntry.actor_staff_id == actor.staff_id
        )
        return int((await store.session.execute(stmt)).scalar_one())


async def test_a_queue_of_writes_longer_than_the_pool_timeout_is_all_written(
    runtime: Runtime,
) -> None:
    actor = await someone(runtime)
    pool = writers_pool(runtime)
    pool._timeout = 0.05  # a queue of these writes lasts several times as long
    count = 10 * pool.writers
    results = await asyncio.gather(
        *(write(runtime, actor, n, hold=0.02) for n in range(count)), return_exceptions=True
    )
    assert [r for r in results if r is not None] == []
    assert await written(runtime, actor) == count


async def test_writers_get_their_turns_in_the_order_they_came(runtime: Runtime) -> None:
    pool = writers_pool(runtime)
    if pool.writers > 1:
        pytest.skip(
            "with several connections, turns taken in order may reach the database out of it"
        )
    actor = await someone(runtime)
    order: list[int] = []

    async def take_turn(n: int) -> None:
        async with runtime.stores() as store:
            await store.activity.log(actor, ENTITY, n, "written")
            await store.flush()
            order.append(n)
            await asyncio.sleep(0.01)
            await store.commit()

    tasks = []
    for n in range(4 * pool.writers):
        tasks.append(asyncio.create_task(take_turn(n)))
        await asyncio.sleep(0)  # each starts waiting before the next comes
    await asyncio.gather(*tasks)
    queued = order[pool.writers :]
    assert queued == sorted(queued)


async def test_a_write_waiting_past_the_deadline_fails_saying_it_was_not_made(
    database_url: str,
) -> None:
    async with started(database_url, database_write_wait_seconds=1) as runtime:
        await _write_past_the_deadline(runtime)


async def _write_past_the_deadline(runtime: Runtime) -> None:
    actor = await someone(runtime)
    pool = writers_pool(runtime)
    release = asyncio.Event()

    async def hold_until_released(n: int) -> None:
        async with runtime.stores() as store:
            await store.activity.log(actor, ENTITY, n, "written")
            await store.flush()
            await release.wait()
            await store.commit()

    holders = [asyncio.create_task(hold_until_released(n)) for n in range(pool.writers)]
    await asyncio.sleep(0.3)
    with pytest.raises(WriteQueueTimeout, match="waited 1 s for its turn.*was not made"):
        await write(runtime, actor, -1, hold=0)
    release.set()
    await asyncio.gather(*holders)
    await write(runtime, actor, -2, hold=0)  # the turn given up was not lost
    assert await written(runtime, actor) == pool.writers + 1


async def test_a_write_opened_inside_another_does_not_wait_behind_the_queue(
    runtime: Runtime,
) -> None:
    pool = writers_pool(runtime)
    if not pool.reserved:
        pytest.skip("SQLite has one writer: a write inside another would wait for its own lock")
    actor = await someone(runtime)
    outers_done = asyncio.Event()
    nesting = pool.reserved

    async def hold_until_outers_are_done(n: int) -> None:
        async with runtime.stores() as store:
            await store.activity.log(actor, ENTITY, n, "written")
            await store.flush()
            await outers_done.wait()
            await store.commit()

    async def outer(n: int) -> None:
        async with runtime.stores() as store:
            await store.activity.log(actor, ENTITY, n, "outer")
            await store.flush()
            await asyncio.sleep(0.2)  # the queue forms behind the full pool
            await write(runtime, actor, n + 1000, hold=0)
            await store.commit()

    outers = [asyncio.create_task(outer(n)) for n in range(nesting)]
    holders = [
        asyncio.create_task(hold_until_outers_are_done(n))
        for n in range(nesting, pool.writers + 20)  # 20 more queue for a turn
    ]
    await asyncio.wait_for(asyncio.gather(*outers), timeout=10)
    outers_done.set()
    await asyncio.gather(*holders)
    assert await written(runtime, actor) == 2 * nesting + pool.writers + 20 - nesting
