"""The one device search behind the `/incident` type-ahead and `/device`.

Each device is found by a search text of its serial and asset tag, each student by one of
"first last", "last first" and the student id (workflows.device_search). The texts are
indexed for LIKE with trigrams:

- PostgreSQL: GIN `gin_trgm_ops` indexes on the search-text expressions themselves, so every
  write path (roster import, bulk inserts, the CLI) keeps them current with no extra code.
  The query must spell the expression exactly as the index does (`device_text_sql`).
- SQLite: FTS5 tables with the trigram tokenizer (`device_search`, `student_search`, rowid =
  the record's id), kept in sync by triggers on `devices` and `students`.

Every rank (exact, prefix, part) is its own LIMITed query in id order, so a short query that
matches most of the district stops after `limit` rows instead of ranking them all.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from storage import models as m
from workflows.device_search import (
    IGNORED,
    MatchRank,
    SearchPatterns,
    search_patterns,
)

SQLITE_TABLES = ("device_search", "student_search")


def outside_models(name: str | None, type_: str, parent_names: Any = None) -> bool:
    """True for what the models don't describe: the FTS5 tables and their shadow tables, and
    the expression indexes. For Alembic's `include_name`, which wants the opposite."""
    if name is None:
        return False
    return name.startswith(SQLITE_TABLES) or name.endswith("_search_text")


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Alembic's `include_name`: compare only what the models describe."""
    return not outside_models(name, type_)


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def pg_key_sql(column: str) -> str:
    """PostgreSQL's `search_key(column)`: translate lowers A-Z and drops what has no partner."""
    upper = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return f"translate({column}, {_sql_string(upper + IGNORED)}, {_sql_string(upper.lower())})"


def sqlite_key_sql(column: str) -> str:
    """SQLite's `search_key(column)`: its lower() lowers only A-Z, as the domain function does."""
    sql = f"lower({column})"
    for char in IGNORED:
        sql = f"replace({sql}, {_sql_string(char)}, '')"
    return sql


def _text_sql(key_sql: Any, *columns: str) -> str:
    """`search_text` of the columns' keys, as SQL."""
    keys = " || '|' || ".join(f"coalesce({key_sql(c)}, '')" for c in columns)
    return f"'|' || {keys} || '|'"


def device_text_sql(key_sql: Any, prefix: str = "") -> str:
    return _text_sql(key_sql, f"{prefix}serial", f"{prefix}asset_tag")


def student_text_sql(key_sql: Any, prefix: str = "") -> str:
    return _text_sql(
        key_sql,
        f"{prefix}first_name || {prefix}last_name",
        f"{prefix}last_name || {prefix}first_name",
        f"{prefix}sis_id",
    )


@dataclass(frozen=True)
class DeviceMatch:
    device: m.Device
    holder: m.Student | None  # today's holder, whoever matched
    rank: MatchRank


@dataclass(frozen=True)
class _Hit:
    device_id: int
    order: tuple[Any, ...]


async def _ids_by_rank(
    session: AsyncSession, table: str, patterns: SearchPatterns, limit: int
) -> dict[int, MatchRank]:
    """Ids of `table` rows (devices or students) whose search text matches, best rank kept."""
    postgres = session.get_bind().dialect.name == "postgresql"
    found: dict[int, MatchRank] = {}
    for rank, pattern in patterns.by_rank():
        if postgres:
            # The pattern is inlined so each query is planned for its own pattern: a generic
            # plan can't tell a no-match query (index) from one that matches everyone (id order).
            # Keys hold no quote or backslash (IGNORED), so the literal is plain.
            expr = (device_text_sql if table == "devices" else student_text_sql)(pg_key_sql)
            stmt = text(
                f"SELECT id FROM {table} WHERE {expr} LIKE {_sql_string(pattern)} "
                "ORDER BY id LIMIT :n"
            )
        else:
            fts = "device_search" if table == "devices" else "student_search"
            stmt = text(
                f"SELECT rowid FROM {fts} WHERE search_text LIKE :pattern ORDER BY rowid LIMIT :n"
            ).bindparams(bindparam("pattern", pattern))
        for (ident,) in await session.execute(stmt, {"n": limit}):
            found.setdefault(int(ident), rank)
    return found


async def search_devices(session: AsyncSession, query: str, *, limit: int) -> list[DeviceMatch]:
    """Devices whose serial or tag, or whose holder's (today's or a past one's) name or
    student id, matches `query`: exact matches first, then prefixes, then parts; among equals,
    devices by serial before students' devices by last and first name (today's first)."""
    patterns = search_patterns(" ".join(query.split()))
    if patterns is None or limit <= 0:
        return []
    hits: list[_Hit] = []
    device_ranks = await _ids_by_rank(session, "devices", patterns, limit)
    if device_ranks:
        rows = await session.execute(
            select(m.Device.id, m.Device.serial).where(m.Device.id.in_(device_ranks))
        )
        hits += [_Hit(i, (device_ranks[i], 0, serial, "", 0, i)) for i, serial in rows]
    student_ranks = await _ids_by_rank(session, "students", patterns, limit)
    if student_ranks:
        held = await session.execute(
            select(
                m.DeviceAssignment.device_id,
                m.DeviceAssignment.student_id,
                m.DeviceAssignment.returned_at.is_not(None),
                m.Student.last_name,
                m.Student.first_name,
            )
            .join(m.Student, m.Student.id == m.DeviceAssignment.student_id)
            .where(m.DeviceAssignment.student_id.in_(student_ranks))
        )
        hits += [
            _Hit(d, (student_ranks[s], 1, last.lower(), first.lower(), int(past), d))
            for d, s, past, last, first in held
        ]
    best: dict[int, tuple[Any, ...]] = {}
    for hit in hits:
        if hit.device_id not in best or hit.order < best[hit.device_id]:
            best[hit.device_id] = hit.order
    chosen = sorted(best, key=lambda i: best[i])[:limit]
    return await _load(session, chosen, {i: MatchRank(best[i][0]) for i in chosen})


async def _load(
    session: AsyncSession, device_ids: Iterable[int], ranks: dict[int, MatchRank]
) -> list[DeviceMatch]:
    ids = list(device_ids)
    if not ids:
        return []
    stmt = (
        select(m.Device, m.Student)
        .outerjoin(
            m.DeviceAssignment,
            (m.DeviceAssignment.device_id == m.Device.id)
            & m.DeviceAssignment.returned_at.is_(None),
        )
        .outerjoin(m.Student, m.Student.id == m.DeviceAssignment.student_id)
        .where(m.Device.id.in_(ids))
    )
    loaded = {d.id: (d, s) for d, s in (await session.execute(stmt)).all()}
    return [
        DeviceMatch(device=loaded[i][0], holder=loaded[i][1], rank=ranks[i])
        for i in ids
        if i in loaded
    ]
