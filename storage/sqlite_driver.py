"""aiosqlite connections whose cursors run a statement in one trip to the driver's thread.

aiosqlite runs every call on a thread of its own, and SQLAlchemy's adapter makes four calls
for each statement (open a cursor, execute, fetch the rows, close), each a hand-off to that
thread and back through the event loop. A status change (nine statements, with BEGIN, COMMIT
and the pool's reset) took about 70 hand-offs, most of its 12 ms of CPU (docs/performance.md,
"Bursts"). Here the cursor does all four in one call on the thread: it executes, keeps what
the statement returned (rows, description, row count, last row id) and closes the sqlite3
cursor there; fetching and closing are then local. SQLAlchemy's adapter fetches every row of
a statement at once anyway, so nothing is read that it would not have read.
"""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Generator, Iterable
from typing import Any

import aiosqlite

Result = tuple[Any, list[Any], int, int | None]


class PrefetchingCursor:
    """A cursor (the part of aiosqlite's Cursor that SQLAlchemy uses) whose `execute` does
    the statement's whole work in one call on the connection's thread."""

    arraysize = 1

    def __init__(self, connection: PrefetchingConnection) -> None:
        self._connection = connection
        self._rows: deque[Any] = deque()
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None

    def __await__(self) -> Generator[Any, None, PrefetchingCursor]:
        return self._ready().__await__()

    async def _ready(self) -> PrefetchingCursor:
        return self

    async def __aenter__(self) -> PrefetchingCursor:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    def _keep(self, result: Result) -> PrefetchingCursor:
        self.description, rows, self.rowcount, self.lastrowid = result
        self._rows = deque(rows)
        return self

    async def execute(self, sql: str, parameters: Any = None) -> PrefetchingCursor:
        connection = self._connection
        return self._keep(await connection.run(_execute, connection, sql, parameters))

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> PrefetchingCursor:
        connection = self._connection
        return self._keep(await connection.run(_execute, connection, sql, parameters, True))

    async def fetchone(self) -> Any:
        return self._rows.popleft() if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        count = self.arraysize if size is None else size
        return [self._rows.popleft() for _ in range(min(count, len(self._rows)))]

    async def fetchall(self) -> list[Any]:
        rows = list(self._rows)
        self._rows.clear()
        return rows

    async def close(self) -> None:
        self._rows.clear()


class PrefetchingConnection(aiosqlite.Connection):
    """aiosqlite's connection, with cursors that take one trip per statement."""

    def cursor(self) -> PrefetchingCursor:  # type: ignore[override]
        return PrefetchingCursor(self)

    async def run(self, fn: Any, *args: Any) -> Result:
        result: Result = await self._execute(fn, *args)
        return result


def _execute(
    connection: PrefetchingConnection, sql: str, parameters: Any, many: bool = False
) -> Result:
    """One statement (or, with `many`, one statement per parameter set) on a cursor of its own:
    what it returned, then the cursor closed."""
    cursor = connection._conn.cursor()
    try:
        if many:
            cursor.executemany(sql, parameters)
        elif parameters is None:
            cursor.execute(sql)
        else:
            cursor.execute(sql, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else []
        return description, rows, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


def connect(database: str, **kwargs: Any) -> PrefetchingConnection:
    """What `aiosqlite.connect` does, with the prefetching connection; SQLAlchemy's aiosqlite
    dialect calls it in place of aiosqlite's (`connect_args={"async_creator_fn": connect}`)."""

    def connector() -> sqlite3.Connection:
        return sqlite3.connect(str(database), **kwargs)

    connection = PrefetchingConnection(connector, 64)
    # As the dialect does for aiosqlite's own: a thread left by an unclosed connection must
    # not keep the process alive.
    connection._thread.daemon = True
    return connection
