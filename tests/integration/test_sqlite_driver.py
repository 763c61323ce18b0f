"""SQLite's connections run each statement in one trip to the driver's thread and answer as
aiosqlite's own cursors would: rows, row counts, RETURNING, errors, streams, many rows at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError

from storage import sqlite_driver
from storage.db import create_engine


class CountingConnection(sqlite_driver.PrefetchingConnection):
    """Counts the calls handed to the connection's thread."""

    trips = 0

    async def _execute(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        CountingConnection.trips += 1
        return await super()._execute(fn, *args, **kwargs)


def counting_connect(database: str, **kwargs: Any) -> CountingConnection:
    import sqlite3

    connection = CountingConnection(lambda: sqlite3.connect(database, **kwargs), 64)
    connection._thread.daemon = True
    return connection


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'driver.db'}"


async def test_rows_counts_returning_and_errors(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE)"))
            inserted = await conn.execute(
                text("INSERT INTO t (name) VALUES (:n)"), [{"n": f"r{i}"} for i in range(5)]
            )
            assert inserted.rowcount == 5
            one = await conn.execute(text("INSERT INTO t (name) VALUES ('x')"))
            assert one.lastrowid == 6
            returned = await conn.execute(text("INSERT INTO t (name) VALUES ('y') RETURNING id"))
            assert returned.scalar_one() == 7
            updated = await conn.execute(text("UPDATE t SET name = name || '!' WHERE id < 4"))
            assert updated.rowcount == 3
            rows = (await conn.execute(text("SELECT id, name FROM t ORDER BY id"))).all()
            assert [tuple(r) for r in rows][:4] == [(1, "r0!"), (2, "r1!"), (3, "r2!"), (4, "r3")]
            result = await conn.execute(text("SELECT id FROM t ORDER BY id"))
            assert result.keys() == ["id"]
            assert result.fetchone() == (1,)
            assert len(result.fetchmany(2)) == 2
            assert [r[0] for r in result.fetchall()] == [4, 5, 6, 7]
            streamed = await conn.stream(text("SELECT id FROM t ORDER BY id"))
            assert [r[0] async for r in streamed] == [1, 2, 3, 4, 5, 6, 7]
        with pytest.raises(IntegrityError):
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO t (name) VALUES ('x')"))
        with pytest.raises(OperationalError):
            async with engine.begin() as conn:
                await conn.execute(text("SELECT nope FROM t"))
        async with engine.connect() as conn:  # the failures rolled back and left it usable
            assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar_one() == 7
    finally:
        await engine.dispose()


async def test_a_statement_is_one_trip_to_the_thread(url: str) -> None:
    engine = create_engine(url, connect_args={"async_creator_fn": counting_connect})
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))  # the transaction begun
            before = CountingConnection.trips
            for _ in range(10):
                await conn.execute(text("SELECT id FROM t"))
            assert CountingConnection.trips - before == 10  # aiosqlite's own cursors: 40
    finally:
        await engine.dispose()
