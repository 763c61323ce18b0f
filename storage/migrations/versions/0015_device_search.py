"""one device search: trigram indexes over serials, asset tags, student names and ids

Revision ID: 0015
Revises: 0012
Create Date: 2026-12-07 05:30:00.000000

Each device is found by its search text "|serial|tag|", each student by "|firstlast|lastfirst|
sisid|", every key through workflows.device_search.search_key (A-Z lowered, spaces, dashes and
the like left out). See storage/device_search.py.

- PostgreSQL: the pg_trgm extension (trusted: the database owner may create it), a generated
  `search_text` column on `devices` and `students` (the database computes it on every write,
  whatever writes) and a GIN trigram index on it. A stored column rather than an expression
  index: a search that must filter many rows then compares text instead of recomputing keys.
  fastupdate is off: with it on, new rows wait in a pending list that every search reads
  through until a vacuum, which made a no-match search take milliseconds instead of 0.1.
- SQLite: FTS5 tables with the trigram tokenizer (SQLite 3.34 or later), filled from today's
  rows and kept in sync by triggers. A later migration that rebuilds `devices` or `students`
  (batch mode copies the table) drops these triggers with the old table and must create them
  again (`create_sqlite_triggers`).

The SQL is written out here rather than imported, so this migration stays what it was when
storage/device_search.py changes; tests check the two still agree.
"""

from collections.abc import Callable, Sequence

from alembic import op
from sqlalchemy.exc import DBAPIError

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

IGNORED = " -\u2010\u2013\u2014_.,'\u2019/\\%|"
UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
DEVICE_KEYS = ("{p}serial", "{p}asset_tag")
STUDENT_KEYS = ("{p}first_name || {p}last_name", "{p}last_name || {p}first_name", "{p}sis_id")


def _string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def pg_key(column: str) -> str:
    return f"translate({column}, {_string(UPPER + IGNORED)}, {_string(UPPER.lower())})"


def sqlite_key(column: str) -> str:
    sql = f"lower({column})"
    for char in IGNORED:
        sql = f"replace({sql}, {_string(char)}, '')"
    return sql


def search_text(key: Callable[[str], str], columns: Sequence[str], prefix: str = "") -> str:
    keys = " || '|' || ".join(f"coalesce({key(c.format(p=prefix))}, '')" for c in columns)
    return f"'|' || {keys} || '|'"


# (table, its FTS5 table, its keys, the columns they are made of)
TABLES = (
    ("devices", "device_search", DEVICE_KEYS, "serial, asset_tag"),
    ("students", "student_search", STUDENT_KEYS, "first_name, last_name, sis_id"),
)


def create_sqlite_triggers() -> None:
    for table, fts, keys, columns in TABLES:
        op.execute(
            f"CREATE TRIGGER {fts}_insert AFTER INSERT ON {table} BEGIN "
            f"INSERT INTO {fts}(rowid, search_text) "
            f"VALUES (new.id, {search_text(sqlite_key, keys, 'new.')}); END"
        )
        op.execute(
            f"CREATE TRIGGER {fts}_update AFTER UPDATE OF id, {columns} ON {table} BEGIN "
            f"DELETE FROM {fts} WHERE rowid = old.id; "
            f"INSERT INTO {fts}(rowid, search_text) "
            f"VALUES (new.id, {search_text(sqlite_key, keys, 'new.')}); END"
        )
        op.execute(
            f"CREATE TRIGGER {fts}_delete AFTER DELETE ON {table} BEGIN "
            f"DELETE FROM {fts} WHERE rowid = old.id; END"
        )


def _create_pg_trgm() -> None:
    try:
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except DBAPIError as exc:
        raise RuntimeError(
            "Could not create the pg_trgm extension, which the device search needs "
            f"({exc.orig}). Ask a superuser to run `CREATE EXTENSION pg_trgm;` in this "
            "database, then run `devicecare db upgrade` again."
        ) from exc


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        _create_pg_trgm()
        for table, _fts, keys, _columns in TABLES:
            op.execute(
                f"ALTER TABLE {table} ADD COLUMN search_text text "
                f"GENERATED ALWAYS AS ({search_text(pg_key, keys)}) STORED"
            )
            op.execute(
                f"CREATE INDEX ix_{table}_search_text ON {table} "
                "USING gin (search_text gin_trgm_ops) WITH (fastupdate = off)"
            )
    elif dialect == "sqlite":
        version = op.get_bind().exec_driver_sql("SELECT sqlite_version()").scalar_one()
        if tuple(int(p) for p in str(version).split(".")[:2]) < (3, 34):
            raise RuntimeError(
                f"DeviceCare's device search needs SQLite 3.34 or later (FTS5 trigram "
                f"tokenizer); this Python uses SQLite {version}."
            )
        for table, fts, keys, _columns in TABLES:
            op.execute(f"CREATE VIRTUAL TABLE {fts} USING fts5(search_text, tokenize='trigram')")
            op.execute(
                f"INSERT INTO {fts}(rowid, search_text) "
                f"SELECT id, {search_text(sqlite_key, keys)} FROM {table}"
            )
        create_sqlite_triggers()


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table, fts, _keys, _columns in TABLES:
        if dialect == "postgresql":
            op.execute(f"DROP INDEX IF EXISTS ix_{table}_search_text")
            op.execute(f"ALTER TABLE {table} DROP COLUMN IF EXISTS search_text")
        elif dialect == "sqlite":
            for event in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {fts}_{event}")
            op.execute(f"DROP TABLE IF EXISTS {fts}")
    # pg_trgm stays: other objects may use it, and it costs nothing unused.
