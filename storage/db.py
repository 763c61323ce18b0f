"""Engines and sessions for SQLite (default) and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeAlias

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from storage import sqlite_driver
from storage.card_refresh import CLOCK, CardRefreshingSession
from storage.session_of import Db, session_of
from storage.write_queue import QueuedWritersPool
from workflows.clock import Clock

SQLITE_BUSY_TIMEOUT_MS = 30_000
READ_ONLY = "devicecare_read_only"

# The names the service layers hold these by, handing them on to storage without looking inside.
Engine: TypeAlias = AsyncEngine
DbSession: TypeAlias = AsyncSession
Sessions: TypeAlias = async_sessionmaker[AsyncSession]


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _ensure_sqlite_folder(url: str) -> None:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An engine with the settings DeviceCare relies on for each backend."""
    if is_sqlite(url):
        _ensure_sqlite_folder(url)
        # One trip to the driver's thread per statement instead of four (storage.sqlite_driver).
        connect_args = {"async_creator_fn": sqlite_driver.connect, **kwargs.pop("connect_args", {})}
        engine = create_async_engine(url, connect_args=connect_args, **kwargs)
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(url, **kwargs)


def create_writer_engine(
    url: str,
    *,
    pool_size: int,
    max_overflow: int,
    reserved: int,
    turn_wait_seconds: float,
    pool_timeout: float,
) -> AsyncEngine:
    """An engine whose writers wait their turn first come, first served, up to
    `turn_wait_seconds`, for `pool_size + max_overflow - reserved` connections; the `reserved`
    rest serve a task that opens a second write while holding one, within `pool_timeout`
    (storage.write_queue)."""
    engine = create_engine(
        url,
        poolclass=QueuedWritersPool,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout,
    )
    pool = engine.sync_engine.pool
    assert isinstance(pool, QueuedWritersPool)
    pool.configure(turn_wait_seconds=turn_wait_seconds, reserved=reserved)
    return engine


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take over transaction control so every transaction can start with BEGIN IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        # SQLite has one writer; taking the write lock up front means a read-then-write
        # transaction (claim counting, invoice numbers) never fails halfway with SQLITE_BUSY
        # and two of them can never interleave. Read-only sessions begin deferred: in WAL mode
        # they read a snapshot and never wait for, or hold up, a writer.
        read_only = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def session_factory(
    engine: AsyncEngine, *, read_only: bool = False, clock: Clock | None = None
) -> async_sessionmaker[AsyncSession]:
    """Sessions for writing, or (read_only) for queries that never write.

    Writing sessions refresh the incident cards their changes touch (storage.card_refresh),
    dated by `clock` (or by the store's clock, for sessions a SqlUnitOfWork is made with)."""
    bind = engine.execution_options(**{READ_ONLY: True}) if read_only else engine
    return async_sessionmaker(
        bind,
        expire_on_commit=False,
        sync_session_class=CardRefreshingSession,
        info={} if clock is None else {CLOCK: clock},
    )


async def maintain_sqlite(engine: AsyncEngine, *, optimize: bool = True) -> None:
    """Refresh planner statistics and empty the write-ahead log (SQLite only).

    A checkpoint can't run inside a transaction, and every transaction here begins with
    BEGIN IMMEDIATE, so the pragmas go straight to the driver connection, outside one.
    """
    if engine.dialect.name != "sqlite":
        return
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        if optimize:
            await driver.execute("PRAGMA optimize")
        cursor = await driver.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        busy = (await cursor.fetchone() or (0,))[0]
        if busy:
            raise RuntimeError("the SQLite checkpoint could not finish: a reader held the log")


async def ping(engine: AsyncEngine) -> None:
    """A round trip to the database; raises whatever stops it."""
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def read_one_snapshot(db: Db) -> None:
    """Make every query of this (read) transaction see one snapshot. SQLite's deferred read
    transaction in WAL mode does already; PostgreSQL needs REPEATABLE READ, set before the
    transaction's first query."""
    session = session_of(db)
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
