"""One holder at a time across processes: a PostgreSQL advisory lock, or a file lock for SQLite.

Both locks belong to the holder's connection or file handle, so a process that dies releases
them with it: a crash can never leave the billing run locked.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

# Locks on in-memory SQLite databases (tests) are per process.
_local_locks: dict[str, asyncio.Lock] = {}


def _lock_key(name: str) -> int:
    """A stable signed 64-bit key for pg_advisory_lock from the lock's name."""
    digest = hashlib.blake2b(f"devicecare:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@contextlib.asynccontextmanager
async def exclusive(engine: AsyncEngine, name: str) -> AsyncIterator[bool]:
    """Yields True while this process holds the lock `name`, False if someone else does."""
    if engine.dialect.name == "postgresql":
        async with _advisory(engine, name) as held:
            yield held
        return
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        lock = _local_locks.setdefault(f"{id(engine)}:{name}", asyncio.Lock())
        if lock.locked():
            yield False
            return
        async with lock:
            yield True
        return
    async with _file_lock(Path(f"{database}.{name}.lock")) as held:
        yield held


@contextlib.asynccontextmanager
async def _advisory(engine: AsyncEngine, name: str) -> AsyncIterator[bool]:
    key = _lock_key(name)
    # Autocommit: a session-level lock on a connection that is not left idle in a transaction.
    conn = await (await engine.connect()).execution_options(isolation_level="AUTOCOMMIT")
    try:
        held = bool(
            (await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key})).scalar()
        )
        try:
            yield held
        finally:
            if held:
                await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
    except BaseException:
        # If unlocking failed, the pooled connection could still hold the lock: discard it.
        await conn.invalidate()
        raise
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def _file_lock(path: Path) -> AsyncIterator[bool]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
