"""The one device search behind the `/incident` type-ahead and `/device`.

Each device is found by a search text of its serial and asset tag, each student by one of
"first last", "last first" and the student id (workflows.device_search). The texts are
indexed for LIKE with trigrams:

- PostgreSQL: a generated `search_text` column on `devices` and `students` with a GIN
  `gin_trgm_ops` index.
- SQLite: FTS5 tables with the trigram tokenizer (`device_search`, `student_search`, rowid =
  the record's id) filled by triggers on `devices` and `students`.

Either way the database computes the texts on every write, so every write path (roster
import, bulk inserts, the CLI) keeps the index current with no extra code. The SQL that
computes them is in storage/migrations/versions/0015_device_search.py; tests check it agrees
with workflows.device_search.search_key.

Every rank (exact, prefix, part) is its own LIMITed query in id order, so a short query that
matches most of the district stops early instead of ranking all of it.

On SQLite a read-only session whose first statement is the search runs it on a connection of
its own (`SqliteSearchReaders`): one hand-off to a thread and back, instead of the session's
BEGIN, the statement, COMMIT and the pool's reset, each a trip between the event loop and
aiosqlite's thread. The answer is the same: a transaction's first statement sees the latest
commit either way.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import weakref
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.pool import Pool

from storage.db import READ_ONLY, SQLITE_BUSY_TIMEOUT_MS
from workflows.device_search import (
    MatchRank,
    SearchPatterns,
    search_patterns,
)

SQLITE_TABLES = ("device_search", "student_search")
PG_CANDIDATES = 1000


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Alembic's `include_name`: leave out what the models don't describe (the search index:
    SQLite's FTS5 tables and their shadow tables, PostgreSQL's `search_text` columns and
    their indexes)."""
    return name is None or not (name.startswith(SQLITE_TABLES) or name.endswith("search_text"))


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True)
class DeviceMatch:
    """What a list of found devices shows. Plain values rather than ORM objects: a type-ahead
    answers with up to 100 of them, and building that many entities costs more than the query."""

    device_id: int
    serial: str
    asset_tag: str | None
    model: str
    status: str
    holder_name: str | None  # today's holder, whoever matched
    rank: MatchRank


def _tier_sql(postgres: bool, table: str, rank: MatchRank, pattern: str) -> str:
    """Ids of `table` rows whose search text matches `pattern`: the first `:n` by id, so a
    pattern that matches most of the district stops early."""
    if postgres:
        # Matches first (the trigram index, or a scan that stops early), at most
        # PG_CANDIDATES, then the first by id. A plain ORDER BY id LIMIT lets the planner walk
        # the primary key hoping to meet matches soon; tags and names that sort with the ids
        # (AT1897..., added late) made that walk read 90,000 rows. Past PG_CANDIDATES matches
        # the list is the first `n` by id of those found first (table order, which follows ids
        # for rows only added): still the same answer to the same query.
        inner = (
            f"SELECT id FROM (SELECT id FROM {table} WHERE search_text LIKE {pattern} "
            f"LIMIT {PG_CANDIDATES}) AS c ORDER BY id LIMIT :n"
        )
    else:
        fts = "device_search" if table == "devices" else "student_search"
        inner = (
            f"SELECT rowid AS id FROM {fts} WHERE search_text LIKE {pattern} "
            "ORDER BY rowid LIMIT :n"
        )
    return f"SELECT id, {int(rank)} AS rank FROM ({inner}) AS t{int(rank)}"


# A found device with what is shown of it and its holder today (the open assignment).
_SHOWN = (
    "SELECT {id} AS id, {rank} AS rank, {via} AS via, d.serial AS serial, d.asset_tag AS tag, "
    "d.model AS model, d.status AS status, h.first_name AS first, h.last_name AS last, "
    "{k1} AS k1, {k2} AS k2, {past} AS past "
    "FROM {source} JOIN devices d ON d.id = {id} "
    "LEFT JOIN device_assignments o ON o.device_id = d.id AND o.returned_at IS NULL "
    "LEFT JOIN students h ON h.id = o.student_id"
)
_BY_OWN_KEYS = _SHOWN.format(
    id="dev.id", rank="dev.rank", via=0, k1="d.serial", k2="''", past=0, source="dev"
)
_THROUGH_STUDENTS = _SHOWN.format(
    id="a.device_id",
    rank="stu.rank",
    via=1,
    k1="s.last_name",
    k2="s.first_name",
    past="CASE WHEN a.returned_at IS NULL THEN 0 ELSE 1 END",
    source="stu JOIN students s ON s.id = stu.id JOIN device_assignments a ON a.student_id = s.id",
)


def candidates_sql(postgres: bool, patterns: SearchPatterns) -> tuple[str, dict[str, str]]:
    """One statement for every rank on both tables (a round trip costs more than the query).

    One row per (device, way it matched): id, rank, 0 by its own keys or 1 through a student,
    what is shown, then what equals sort by (serial; or the student's last and first name and
    whether the device was returned).
    """
    params: dict[str, str] = {}
    tiers: dict[str, list[str]] = {"devices": [], "students": []}
    for rank, pattern in patterns.by_rank():
        if postgres:
            # Inlined so each query is planned for its own pattern: a generic plan can't tell
            # a no-match query (the index) from one that matches everyone (id order). Keys
            # hold no quote or backslash (IGNORED), so the literal is plain.
            pattern_sql = _sql_string(pattern)
        else:
            params[f"p{int(rank)}"] = pattern
            pattern_sql = f":p{int(rank)}"
        for table, parts in tiers.items():
            parts.append(_tier_sql(postgres, table, rank, pattern_sql))
    sql = (
        f"WITH dev AS ({' UNION ALL '.join(tiers['devices'])}), "
        f"stu AS ({' UNION ALL '.join(tiers['students'])}) "
        f"{_BY_OWN_KEYS} UNION ALL {_THROUGH_STUDENTS}"
    )
    return sql, params


def as_one_row(sql: str) -> str:
    """SQLite: the candidate rows as one JSON array in one row.

    Python's sqlite3 lets go of the GIL while SQLite works but takes it back for every row it
    steps to. In a burst the event loop holds the GIL, so each of a short query's several
    hundred rows waited up to a switch interval (5 ms) for it: a 3 ms search took about a
    second (docs/performance.md, "Bursts"). One row is one wait."""
    return (
        "SELECT json_group_array(json_array(id, rank, via, serial, tag, model, status, first, "
        f"last, k1, k2, past)) FROM ({sql})"
    )


# --- SQLite: the search on connections of its own ----------------------------------------------

# A search is a few milliseconds of SQLite without the GIL, then a wait for the GIL to hand its
# row back; in a burst that wait is most of its time, so more threads than cores overlap waits.
SEARCH_THREADS = 16


class SqliteSearchReaders:
    """Plain sqlite3 connections to one database file, one per thread of a small pool, that
    run the search statement and hand back its rows in one trip. Read only (`query_only`):
    nothing but the search ever runs on them."""

    def __init__(self, path: str, threads: int = SEARCH_THREADS) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="device-search")
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            # Not shared between threads; close() runs once every search has finished.
            connection = sqlite3.connect(self.path, check_same_thread=False)
            connection.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            connection.execute("PRAGMA query_only=ON")
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    def _fetch(self, sql: str, params: dict[str, Any]) -> list[Any]:
        return self._connection().execute(sql, params).fetchall()

    async def fetch(self, sql: str, params: dict[str, Any]) -> list[Any]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._fetch, sql, params)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()


# One set of readers per connection pool: `engine.dispose()` replaces the pool, and the old
# pool's readers close when it is gone.
_READERS: weakref.WeakKeyDictionary[Pool, SqliteSearchReaders] = weakref.WeakKeyDictionary()
_READERS_LOCK = threading.Lock()


def _database_file(bind: Engine) -> str | None:
    """The file a SQLite engine opens, or None when it isn't one plain file (in memory, or a
    URL with options a plain connection wouldn't apply)."""
    url = bind.url
    database = url.database
    if url.get_backend_name() != "sqlite" or url.query or not database:
        return None
    if database == ":memory:" or database.startswith("file:"):
        return None
    return database


def sqlite_readers(bind: Engine) -> SqliteSearchReaders | None:
    """The search readers for a SQLite engine's database file (made on first use), or None
    when it has none."""
    pool = bind.pool
    readers = _READERS.get(pool)
    if readers is not None:
        return readers
    path = _database_file(bind)
    if path is None:
        return None
    with _READERS_LOCK:
        readers = _READERS.get(pool)
        if readers is None:
            readers = SqliteSearchReaders(path)
            _READERS[pool] = readers
            weakref.finalize(pool, readers.close)
    return readers


def _own_connection(session: AsyncSession) -> SqliteSearchReaders | None:
    """The readers to search with instead of the session's connection: only for a read-only
    session on SQLite that hasn't begun its transaction (so it would see the latest commit
    too, and no write of its own is missed)."""
    if session.in_transaction():
        return None
    bind = session.get_bind()
    if not isinstance(bind, Engine) or bind.dialect.name != "sqlite":
        return None  # a session bound to a connection shares that connection's transaction
    if not bind.get_execution_options().get(READ_ONLY):
        return None
    return sqlite_readers(bind)


async def search_devices(session: AsyncSession, query: str, *, limit: int) -> list[DeviceMatch]:
    """Devices whose serial or tag, or whose holder's (today's or a past one's) name or
    student id, matches `query`: exact matches first, then prefixes, then parts; among equals,
    devices by serial before students' devices by last and first name (today's first)."""
    patterns = search_patterns(" ".join(query.split()))
    if patterns is None or limit <= 0:
        return []
    postgres = session.get_bind().dialect.name == "postgresql"
    sql, params = candidates_sql(postgres, patterns)
    if postgres:
        return _ranked(await session.execute(text(sql), {**params, "n": limit}), limit)
    sql = as_one_row(sql)
    if (readers := _own_connection(session)) is not None:
        packed = await readers.fetch(sql, {**params, "n": limit})
    else:
        # aiosqlite hands every call (cursor, execute, fetch, close) to the connection's
        # thread and back through the event loop; in a burst those hand-offs were most of a
        # type-ahead's time (docs/performance.md, "Bursts"). One call does it all, inside the
        # session's transaction; sqlite3 binds the same `:name` parameters.
        connection = await session.connection()
        raw = await connection.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None  # a checked-out connection
        packed = list(await driver.execute_fetchall(sql, {**params, "n": limit}))
    return _ranked(json.loads(packed[0][0]), limit)


def _ranked(rows: Iterable[Any], limit: int) -> list[DeviceMatch]:
    """Each device once, by its best way of matching, best first. Only the `limit` shown are
    made into matches: a short query brings several hundred candidate rows."""
    best: dict[int, tuple[tuple[Any, ...], tuple[Any, ...]]] = {}
    for row in rows:
        ident, rank, via, _serial, _tag, _model, _status, _first, _last, k1, k2, past = row
        order = (rank, via, k1.lower(), k2.lower(), past, ident)
        found = best.get(ident)
        if found is None or order < found[0]:
            best[ident] = (order, row)
    shown = sorted(best.values(), key=lambda x: x[0])[:limit]
    return [
        DeviceMatch(
            ident,
            serial,
            tag,
            model,
            status,
            None if first is None else f"{first} {last}".strip(),
            MatchRank(rank),
        )
        for _order, (ident, rank, _via, serial, tag, model, status, first, last, *_keys) in shown
    ]
