"""Engines and sessions for SQLite (default) and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from storage.card_refresh import CLOCK, CardRefreshingSession
from workflows.clock import Clock

SQLITE_BUSY_TIMEOUT_MS = 30_000
READ_ONLY = "devicecare_read_only"


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
        engine = create_async_engine(url, **kwargs)
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(url, **kwargs)


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
    dated by `clock` (or by the store's clock, for sessions a SqlStore is made with)."""
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


# The names services use for a transaction's session and the factory that opens them, so a use
# case that opens its own transactions (a run in batches) needn't import SQLAlchemy itself.
Engine = AsyncEngine
Session = AsyncSession
Sessions = async_sessionmaker[AsyncSession]
# A constraint broken by another transaction's commit (a unique key it took first): a service
# that retries its unit of work catches this.
ConstraintViolation = IntegrityError
