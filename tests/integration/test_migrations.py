"""The schema comes only from migrations, and they match the models on both backends."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import event, inspect

from storage.db import create_engine
from storage.device_search import include_name
from storage.migrate import downgrade, upgrade
from storage.models import Base


async def _diff(url: str) -> list[object]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:

            def compare(sync_conn):  # type: ignore[no-untyped-def]
                context = MigrationContext.configure(
                    sync_conn, opts={"compare_type": True, "include_name": include_name}
                )
                return compare_metadata(context, Base.metadata)

            return await conn.run_sync(compare)
    finally:
        await engine.dispose()


async def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    finally:
        await engine.dispose()


async def test_models_match_the_migrated_schema(database_url: str) -> None:
    assert await _diff(database_url) == []


async def test_downgrade_and_upgrade_again(database_url: str) -> None:
    await asyncio.to_thread(downgrade, database_url, "base")
    assert await _tables(database_url) <= {"alembic_version"}
    await asyncio.to_thread(upgrade, database_url)
    assert {"invoices", "activity_log", "outbox"} <= await _tables(database_url)
    assert await _diff(database_url) == []


def test_sqlite_steps_run_with_references_unchecked_then_checked_once(tmp_path: Path) -> None:
    """A step that copies a table (alembic's batch mode) must not fail on the rows referring
    to it, and a step that really breaks a reference must still stop the upgrade."""
    from sqlalchemy import create_engine as create_sync_engine

    from storage.migrate import check_references, take_schema_lock

    engine = create_sync_engine(f"sqlite:///{tmp_path / 'refs.db'}")
    # As DeviceCare's engines do: references checked on every connection.
    event.listen(engine, "connect", lambda dbapi, _: dbapi.execute("PRAGMA foreign_keys=ON"))
    with engine.connect() as conn:
        conn.exec_driver_sql("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        conn.exec_driver_sql(
            "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent (id))"
        )
        conn.exec_driver_sql("INSERT INTO parent VALUES (1)")
        conn.exec_driver_sql("INSERT INTO child VALUES (1, 1)")
        conn.commit()
    with engine.connect() as conn:
        take_schema_lock(conn)
        conn.exec_driver_sql("CREATE TABLE parent_copy (id INTEGER PRIMARY KEY)")
        conn.exec_driver_sql("INSERT INTO parent_copy SELECT id FROM parent")
        conn.exec_driver_sql("DROP TABLE parent")  # refused with references checked
        conn.exec_driver_sql("ALTER TABLE parent_copy RENAME TO parent")
        check_references(conn)  # every child still has its parent
        conn.exec_driver_sql("DELETE FROM parent")
        with pytest.raises(RuntimeError, match="1 broken references in child"):
            check_references(conn)
        conn.rollback()
    engine.dispose()
