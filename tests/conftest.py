"""Database fixtures: every store test runs on SQLite and on PostgreSQL.

PostgreSQL comes from TEST_POSTGRES_URL (an asyncpg URL to a server where the user may create
databases). Without it the PostgreSQL cases skip with that reason; with
TEST_REQUIRE_POSTGRES=1 (CI) an unreachable server is a failure instead of a skip.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.db import create_engine, session_factory
from storage.migrate import upgrade
from storage.models import Base
from storage.seed import ensure_defaults
from storage.uow import UnitOfWorkFactory
from workflows.clock import FixedClock

PG_URL = os.environ.get("TEST_POSTGRES_URL", "")
PG_REQUIRED = os.environ.get("TEST_REQUIRE_POSTGRES") == "1"
NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def _pg_unavailable_reason() -> str | None:
    if not PG_URL:
        return "TEST_POSTGRES_URL is not set; PostgreSQL tests skipped"
    try:
        asyncio.run(_ping(PG_URL))
    except Exception as exc:  # noqa: BLE001 - any failure means the server isn't usable
        if PG_REQUIRED:
            raise RuntimeError(
                f"PostgreSQL at {PG_URL} is required but unreachable: {exc}"
            ) from exc
        return f"PostgreSQL at {PG_URL} is unreachable ({exc})"
    return None


async def _ping(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    finally:
        await engine.dispose()


async def _admin(sql: str) -> None:
    engine = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(sql))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("db") / "template.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    reason = _pg_unavailable_reason()
    if reason:
        pytest.skip(reason)
    name = f"devicecare_test_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    yield url
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> str:
    if request.param == "sqlite":
        path = tmp_path / "devicecare.db"
        shutil.copy(sqlite_template, path)
        return f"sqlite+aiosqlite:///{path}"
    return str(request.getfixturevalue("pg_database"))


_TABLES = [t.name for t in Base.metadata.sorted_tables]
# Every table emptied in one round trip, with triggers off for the transaction (so the
# append-only activity log empties too, and foreign keys don't order the deletes): 8 ms, where
# a TRUNCATE of the 45 tables took 150 ms of every PostgreSQL test.
_EMPTY_TABLES = "SET LOCAL session_replication_role = replica; " + "; ".join(
    f'DELETE FROM "{name}"' for name in reversed(_TABLES)
)
# What TRUNCATE's RESTART IDENTITY did: the tables' own id sequences start again at 1.
_RESTART_IDS = text(
    "SELECT setval(s.oid, 1, false) FROM pg_class s "
    "JOIN pg_depend d ON d.objid = s.oid AND d.deptype IN ('a', 'i') "
    "JOIN pg_class t ON t.oid = d.refobjid "
    "WHERE s.relkind = 'S' AND t.relname = ANY(:tables)"
)


async def _empty_postgres(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        raw = await conn.get_raw_connection()
        assert raw.driver_connection is not None
        await raw.driver_connection.execute(_EMPTY_TABLES)  # asyncpg: several statements
        await conn.execute(_RESTART_IDS, {"tables": _TABLES})


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    if engine.dialect.name == "postgresql":
        await _empty_postgres(engine)
    async with session_factory(engine)() as session:
        await ensure_defaults(session)
        await session.commit()
    yield engine
    await engine.dispose()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def stores(engine: AsyncEngine, clock: FixedClock) -> UnitOfWorkFactory:
    return UnitOfWorkFactory(session_factory(engine), clock)
