"""The roster import's statements: each table's existing rows read in one query, and set-wise
upserts (one bulk INSERT for new rows, one executemany UPDATE for the rows that differ), so a
rerun with the same files writes nothing. The import itself is `services.roster`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from storage import models as m


@dataclass
class Counts:
    """What happened to the rows of one kind. `skipped` rows were read but not written."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0


# --- set-wise upserts -----------------------------------------------------------------------


@dataclass(frozen=True)
class RosterTable:
    """How one table is matched: by `key`, compared on `fields`, keys folded by `fold`."""

    key: InstrumentedAttribute[Any]
    fields: tuple[str, ...]
    fold: Callable[[str], str] = str

    @property
    def model(self) -> Any:
        return self.key.class_


BUILDINGS = RosterTable(m.Building.sis_id, ("name",))
STUDENTS = RosterTable(
    m.Student.sis_id,
    ("first_name", "last_name", "grade", "email", "building_id", "household_id", "active"),
)
GUARDIANS = RosterTable(
    m.Guardian.sis_id, ("first_name", "last_name", "email", "phone", "household_id")
)
# Serials are compared case-insensitively, like the device search does.
DEVICES = RosterTable(
    m.Device.serial, ("asset_tag", "model", "kind", "building_id", "status"), fold=str.lower
)

Existing = dict[str, dict[str, Any]]
# (key, fields that differ): an empty tuple is a new row.
ChangeNote = Callable[[str, tuple[str, ...]], None]


async def load_existing(session: AsyncSession, table: RosterTable) -> Existing:
    """Every row's key, id and compared fields in one query (folded key -> values)."""
    model = table.model
    columns = [model.id, table.key, *(getattr(model, f) for f in table.fields)]
    names = ("id", table.key.key, *table.fields)
    rows = await session.execute(select(*columns))
    return {
        table.fold(row[1]): dict(zip(names, row, strict=True)) for row in rows if row[1] is not None
    }


async def upsert(
    session: AsyncSession,
    table: RosterTable,
    existing: Existing,
    desired: dict[str, dict[str, Any]],
    counts: Counts,
    defaults: dict[str, Any] | None = None,
    changed: ChangeNote | None = None,
) -> dict[str, int]:
    """Write `desired` (folded key -> values incl. the key column); return folded key -> id.

    A field left out of a row's values keeps what is stored. Updates carry every compared field
    so all parameter sets share one shape and go out as a single executemany. `changed`, when
    given, hears of each row created or updated (with the fields that differ).
    """
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    ids: dict[str, int] = {}
    for key, values in desired.items():
        current = existing.get(key)
        if current is None:
            inserts.append({**(defaults or {}), **values})
            if changed:
                changed(key, ())
            continue
        ids[key] = current["id"]
        differ = [f for f in table.fields if f in values and current[f] != values[f]]
        if differ:
            updates.append(
                {"id": current["id"], **{f: values.get(f, current[f]) for f in table.fields}}
            )
            if changed:
                changed(key, tuple(differ))
        else:
            counts.unchanged += 1
    if updates:
        await session.execute(update(table.model), updates)
        counts.updated += len(updates)
    if inserts:
        # RETURNING the natural key as well makes the row order irrelevant, which keeps
        # SQLAlchemy's batched insertmanyvalues mode (ordered RETURNING is row-at-a-time).
        stmt = insert(table.model).returning(table.model.id, table.key)
        for ident, key in await session.execute(stmt, inserts):
            ids[table.fold(key)] = ident
        counts.created += len(inserts)
    return ids


# --- the other tables the import writes -------------------------------------------------------


async def buildings(session: AsyncSession) -> list[tuple[int, str | None, str]]:
    """Every building's (id, sis_id, name)."""
    b = m.Building
    rows = await session.execute(select(b.id, b.sis_id, b.name))
    return [(ident, sis_id, name) for ident, sis_id, name in rows]


async def insert_households(session: AsyncSession, names: list[str]) -> list[tuple[int, str]]:
    """One household per name, in one INSERT; (id, name) of each, in no particular order."""
    stmt = insert(m.Household).returning(m.Household.id, m.Household.name)
    return [(i, name) for i, name in await session.execute(stmt, [{"name": n} for n in names])]


async def guardianships(session: AsyncSession) -> dict[tuple[int, int], str]:
    """(guardian id, student id) -> relationship kind, for every guardianship."""
    g = m.Guardianship
    return {
        (gid, sid): kind
        for gid, sid, kind in await session.execute(
            select(g.guardian_id, g.student_id, g.relationship_kind)
        )
    }


async def _write(
    session: AsyncSession,
    model: type[m.Base],
    updates: list[dict[str, Any]],
    inserts: list[dict[str, Any]],
) -> None:
    """Bulk UPDATE by primary key, then bulk INSERT."""
    if updates:
        await session.execute(update(model), updates)
    if inserts:
        await session.execute(insert(model), inserts)


async def write_guardianships(
    session: AsyncSession, updates: list[dict[str, Any]], inserts: list[dict[str, Any]]
) -> None:
    await _write(session, m.Guardianship, updates, inserts)


async def open_assignments(session: AsyncSession) -> dict[int, tuple[int, int]]:
    """device id -> (assignment id, student id) of its open assignment."""
    a = m.DeviceAssignment
    return {
        device_id: (ident, student_id)
        for ident, device_id, student_id in await session.execute(
            select(a.id, a.device_id, a.student_id).where(a.returned_at.is_(None))
        )
    }


async def write_assignments(
    session: AsyncSession, closes: list[dict[str, Any]], opens: list[dict[str, Any]]
) -> None:
    # Close first: the partial unique index allows one open assignment per device.
    await _write(session, m.DeviceAssignment, closes, opens)


# --- the OneRoster sync's leavers -----------------------------------------------------------


async def active_students(session: AsyncSession) -> dict[str, int]:
    """sis_id -> id of the active students (erased ones left out)."""
    s = m.Student
    stmt = select(s.sis_id, s.id).where(s.active.is_(True), s.erased_at.is_(None))
    return {sis_id: ident for sis_id, ident in await session.execute(stmt)}


async def deactivate_students(session: AsyncSession, ids: list[int]) -> None:
    """The students become inactive (never deleted)."""
    await session.execute(update(m.Student), [{"id": i, "active": False} for i in ids])
