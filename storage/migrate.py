"""Schema migrations, driven from code so no alembic.ini is needed at the top level.

Only `devicecare db upgrade` changes a PostgreSQL schema, and it does so holding a PostgreSQL
advisory lock, so upgrades started together run one after the other (the later ones find nothing
left to do). Every other command checks the schema before it starts and stops with one line
when it is behind or ahead. SQLite is a file on one host: there every command may upgrade it,
serialized by SQLite's own write lock, so `make run` stays one command on a fresh machine.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError

from workflows.i18n import _

log = logging.getLogger("devicecare.migrate")

MIGRATIONS = Path(__file__).parent / "migrations"
UPGRADE_COMMAND = "devicecare db upgrade"
# The advisory lock every schema change takes on PostgreSQL (a fixed, arbitrary 64-bit key:
# "DCschema" in ASCII). Seeding the shipped rows takes it too, so it never races an upgrade.
SCHEMA_LOCK_KEY = 0x4443_7363_6865_6D61


class SchemaNotReady(Exception):
    """The database's schema isn't the one this version of DeviceCare runs on (one line)."""


@dataclass(frozen=True)
class Applied:
    """One migration step that ran."""

    revision: str
    message: str
    forward: bool = True  # False: a downgrade step


@dataclass(frozen=True)
class SchemaState:
    current: tuple[str, ...]  # what the database's alembic_version holds (empty: no schema)
    heads: tuple[str, ...]  # what this code's migrations lead to
    unknown: tuple[str, ...]  # revisions in the database this code has never heard of

    @property
    def is_current(self) -> bool:
        return set(self.current) == set(self.heads)

    @property
    def is_ahead(self) -> bool:
        return bool(self.unknown)

    @property
    def is_behind(self) -> bool:
        return not self.is_current and not self.is_ahead

    def describe(self) -> str:
        """How the schema stands, in words; for a database that needs work, what to do."""
        at = ", ".join(self.current)
        needs = ", ".join(self.heads)
        if self.is_current:
            return _("schema at {at} (current)", at=at)
        if self.is_ahead:
            return _(
                "The database schema is at {at}, newer than this version of DeviceCare "
                "(it knows up to {needs}): run the newer version, or restore the backup taken "
                "before upgrading.",
                at=at,
                needs=needs,
            )
        if not self.current:
            return _(
                "The database has no DeviceCare schema yet: run `{command}`.",
                command=UPGRADE_COMMAND,
            )
        return _(
            "The database schema is at {at} but this version needs {needs}: run `{command}`.",
            at=at,
            needs=needs,
            command=UPGRADE_COMMAND,
        )


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(
    database_url: str,
    revision: str = "head",
    *,
    on_wait: Callable[[], None] | None = None,
) -> list[Applied]:
    """Bring the schema to `revision`; returns the steps that ran (none when already there).

    Blocking: call it before the event loop or in a thread. `on_wait` is called when another
    upgrade holds the lock and this one waits for it.
    """
    config = alembic_config(database_url)
    applied: list[Applied] = []
    config.attributes.update(applied=applied, on_wait=on_wait)
    command.upgrade(config, revision)
    return applied


def downgrade(database_url: str, revision: str) -> list[Applied]:
    config = alembic_config(database_url)
    applied: list[Applied] = []
    config.attributes["applied"] = applied
    command.downgrade(config, revision)
    return applied


def make_revision(database_url: str, message: str) -> None:
    command.revision(alembic_config(database_url), message=message, autogenerate=True)


# --- used by migrations/env.py ----------------------------------------------------------------


def take_schema_lock(connection: Connection, on_wait: Callable[[], None] | None = None) -> None:
    """Before any migration reads the version table: one schema change at a time.

    PostgreSQL: a session advisory lock on the migration connection (released by
    `release_schema_lock`, or by the server when the connection ends). SQLite: the write lock,
    by opening the transaction every step then runs in (our engines begin IMMEDIATE).
    """
    if connection.dialect.name == "postgresql":
        key = {"key": SCHEMA_LOCK_KEY}
        if not connection.execute(text("SELECT pg_try_advisory_lock(:key)"), key).scalar():
            if on_wait is not None:
                on_wait()
            connection.execute(text("SELECT pg_advisory_lock(:key)"), key)
    elif connection.dialect.name == "sqlite":
        # A step that alters a table copies it and drops the old one, which fails while other
        # tables' rows refer to it. SQLite's own recipe: references unchecked during the
        # change (only possible outside a transaction), then checked once before the commit
        # (check_references).
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        cursor.execute("PRAGMA foreign_keys=OFF")
        cursor.close()
        connection.begin()


def check_references(connection: Connection) -> None:
    """SQLite: every reference still points at a row, after the steps ran unchecked."""
    if connection.dialect.name != "sqlite":
        return
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        tables = sorted({str(row[0]) for row in broken})
        raise RuntimeError(
            f"the migration left {len(broken)} broken references in {', '.join(tables)}; "
            "nothing was changed"
        )


def release_schema_lock(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": SCHEMA_LOCK_KEY})
        connection.commit()


def record_step(applied: list[Applied]) -> Callable[..., None]:
    """An alembic `on_version_apply` hook that keeps each step that ran."""

    def record(*, step: Any, **_: Any) -> None:
        if step.is_stamp:
            return
        revision = step.up_revision_id if step.is_upgrade else step.down_revision_ids
        script = step.revision_map.get_revision(step.up_revision_id)
        message = (script.doc or "").strip().splitlines()[0] if script is not None else ""
        name = revision if isinstance(revision, str) else ", ".join(revision) or "base"
        applied.append(Applied(name, message, step.is_upgrade))

    return record


# --- checking -----------------------------------------------------------------------------------


def schema_state_of(connection: Connection, database_url: str) -> SchemaState:
    """Read the database's revision (never creating the version table) and compare."""
    current = MigrationContext.configure(connection).get_current_heads()
    scripts = ScriptDirectory.from_config(alembic_config(database_url))
    heads = tuple(scripts.get_heads())
    unknown: list[str] = []
    for revision in current:
        try:
            if scripts.get_revision(revision) is None:
                unknown.append(revision)
        except CommandError:
            unknown.append(revision)
    return SchemaState(tuple(current), heads, tuple(unknown))


async def read_schema_state(database_url: str) -> SchemaState:
    from storage.db import create_engine

    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(schema_state_of, database_url)
    finally:
        await engine.dispose()


async def probe_database(
    database_url: str, *, connect_timeout: float | None = None
) -> tuple[SchemaState, str]:
    """The schema's state and the server's version, over a connection of its own that changes
    nothing (a configuration check; PostgreSQL gets `connect_timeout` seconds to answer)."""
    from storage.db import create_engine, is_sqlite

    waits = connect_timeout is not None and not is_sqlite(database_url)
    engine = create_engine(
        database_url, **({"connect_args": {"timeout": connect_timeout}} if waits else {})
    )
    try:
        async with engine.connect() as conn:
            state = await conn.run_sync(schema_state_of, database_url)
            version = ".".join(str(n) for n in conn.dialect.server_version_info or ())
    finally:
        await engine.dispose()
    return state, version


def shipped_head() -> str:
    """The newest revision this code ships."""
    return str(ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head())


def may_upgrade_by_itself(database_url: str) -> bool:
    """SQLite may be upgraded by any command; PostgreSQL only by `devicecare db upgrade`."""
    return make_url(database_url).get_backend_name() == "sqlite"


def check_schema(database_url: str) -> SchemaState:
    """Where the schema stands; SchemaNotReady (one line) when the database can't be reached."""
    try:
        return asyncio.run(read_schema_state(database_url))
    except (OSError, TimeoutError, DBAPIError) as exc:
        raise SchemaNotReady(
            _(
                "Can't reach the database at {where}: {error}",
                where=where(database_url),
                error=connect_error(exc),
            )
        ) from exc


def ensure_schema(database_url: str) -> list[Applied]:
    """Before a command opens its runtime: SQLite is upgraded; PostgreSQL must be current.

    Raises SchemaNotReady (one line) when the schema is behind on PostgreSQL, when it is ahead
    of this code anywhere, or when the database can't be reached. Blocking, like `upgrade`.
    """
    state = check_schema(database_url)
    if state.is_current:
        return []
    if state.is_behind and may_upgrade_by_itself(database_url):
        applied = upgrade(database_url)
        for step in applied:
            log.info("upgraded the SQLite schema: %s %s", step.revision, step.message)
        return applied
    raise SchemaNotReady(state.describe())


def where(database_url: str) -> str:
    """The database's host and name (or file) without its user or password."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        return url.database or ":memory:"
    port = f":{url.port}" if url.port else ""
    return f"{url.host or 'localhost'}{port}/{url.database or ''}"


def connect_error(exc: BaseException) -> str:
    """The driver's own words for a failed connection, on one line."""
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    lines = str(cause).strip().splitlines()
    return lines[0] if lines else type(cause).__name__
