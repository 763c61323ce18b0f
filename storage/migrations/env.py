"""Alembic environment: runs migrations over the async engine DeviceCare uses."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from storage.db import create_engine
from storage.device_search import include_name
from storage.migrate import (
    check_references,
    record_step,
    release_schema_lock,
    take_schema_lock,
)
from storage.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    # Locked before alembic reads the version table, so an upgrade that waited sees what the
    # one before it applied. The lock query opens the transaction that all steps then share.
    take_schema_lock(connection, config.attributes.get("on_wait"))
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_name=include_name,
        on_version_apply=record_step(config.attributes.setdefault("applied", [])),
    )
    with context.begin_transaction():
        context.run_migrations()
        check_references(connection)


async def _run_online() -> None:
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
            await connection.run_sync(release_schema_lock)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_online())
