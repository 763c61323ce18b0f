"""The one device search on SQLite (FTS5) and PostgreSQL (pg_trgm), through every write path."""

from __future__ import annotations

import gc
import itertools
import string
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, insert, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from services.roster import import_roster
from storage import models as m
from storage.db import session_factory
from storage.device_search import DeviceMatch, candidates_sql, sqlite_readers
from storage.uow import UnitOfWorkFactory
from tests.builders import T0
from workflows.clock import FixedClock
from workflows.device_search import IGNORED, MatchRank, search_key, search_patterns, search_text

ROSTER = Path(__file__).parent.parent / "fixtures" / "roster"
MODEL = "HP Chromebook 11 G9"
_serials = itertools.count(1)


async def find(stores: UnitOfWorkFactory, query: str, limit: int = 100) -> list[DeviceMatch]:
    async with stores() as store:
        result = await store.devices.search(query, limit=limit)
        await store.commit()
        return result


def serials(found: list[DeviceMatch]) -> list[str]:
    return [x.serial for x in found]


async def add(
    stores: UnitOfWorkFactory,
    serial: str,
    tag: str | None = None,
    student: tuple[str, str, str] | None = None,
    *,
    returned: bool = False,
) -> int:
    async with stores() as store:
        s = store.session
        device = m.Device(serial=serial, asset_tag=tag, model=MODEL, created_at=T0)
        s.add(device)
        await s.flush()
        if student is not None:
            first, last, sis_id = student
            row = m.Student(sis_id=sis_id, first_name=first, last_name=last)
            s.add(row)
            await s.flush()
            s.add(
                m.DeviceAssignment(
                    device_id=device.id,
                    student_id=row.id,
                    assigned_at=T0,
                    returned_at=T0 if returned else None,
                )
            )
        await store.commit()
        return device.id


async def stored_texts(engine: AsyncEngine, table: str, ident: int) -> str:
    """The search text the database computed for a row (its trigger or generated column)."""
    async with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            fts = {"devices": "device_search", "students": "student_search"}[table]
            sql = f"SELECT search_text FROM {fts} WHERE rowid = :id"
        else:
            sql = f"SELECT search_text FROM {table} WHERE id = :id"
        return str((await conn.execute(text(sql), {"id": ident})).scalar_one())


async def test_the_cases_technicians_typed(stores: UnitOfWorkFactory) -> None:
    await add(stores, "SN1001", "AT1001", ("Ana", "Rivera", "S-4401"))
    await add(stores, "SN1003", "AT1005", ("Mia", "Chen-Okafor", "S-4402"))
    await add(stores, "5CD-77A", None)

    assert serials(await find(stores, "1003")) == ["SN1003"]  # part of a serial
    assert serials(await find(stores, "sn1001")) == ["SN1001"]  # any case
    assert serials(await find(stores, "AT1005")) == ["SN1003"]  # the asset tag
    assert serials(await find(stores, "at 1005")) == ["SN1003"]  # spaces
    assert serials(await find(stores, "5cd77a")) == ["5CD-77A"]  # dashes either side
    assert serials(await find(stores, "5CD 77-A")) == ["5CD-77A"]
    assert serials(await find(stores, "ivera")) == ["SN1001"]  # part of a name
    assert serials(await find(stores, "chen okafor")) == ["SN1003"]
    assert serials(await find(stores, "okafor mia")) == ["SN1003"]  # last name first
    assert serials(await find(stores, "s4402")) == ["SN1003"]  # the student id
    [ana] = await find(stores, "ANA RIVERA")
    assert (ana.holder_name, ana.asset_tag, ana.model, ana.rank) == (
        "Ana Rivera",
        "AT1001",
        MODEL,
        MatchRank.EXACT,
    )
    assert await find(stores, "1004") == []
    assert await find(stores, "x") == []
    assert await find(stores, "%_") == []  # LIKE wildcards are left out, not matched


async def test_exact_then_prefix_then_part_in_a_stable_order(stores: UnitOfWorkFactory) -> None:
    await add(stores, "XAB12")  # 'ab12' in the middle
    await add(stores, "AB123")  # prefix
    await add(stores, "AB12")  # exact
    await add(stores, "ZZ1", "AB12-9")  # prefix, by its tag
    await add(stores, "ZZ2", None, ("Abby", "Stone", "AB129"))  # prefix, by student id
    await add(stores, "ZZ3", None, ("Abigail", "Stone", "S9"), returned=True)  # held before

    found = await find(stores, "ab-12")

    assert serials(found) == ["AB12", "AB123", "ZZ1", "ZZ2", "XAB12"]
    assert [x.rank for x in found] == [MatchRank.EXACT] + [MatchRank.PREFIX] * 3 + [MatchRank.PART]
    assert serials(await find(stores, "ab-12")) == serials(found)
    assert serials(await find(stores, "ab-12", limit=2)) == ["AB12", "AB123"]
    # A past holder finds the device too, shown with who has it today (nobody).
    [old] = await find(stores, "abigail")
    assert (old.serial, old.holder_name) == ("ZZ3", None)
    # Today's device before one the student held before.
    await add(stores, "ZZ4", None, ("Cy", "Wu", "S10"))
    async with stores() as store:
        cy = await store.session.execute(text("SELECT id FROM students WHERE sis_id = 'S10'"))
        zz3 = await store.devices.by_serial("ZZ3")
        assert zz3 is not None
        store.session.add(
            m.DeviceAssignment(
                device_id=zz3.id, student_id=cy.scalar_one(), assigned_at=T0, returned_at=T0
            )
        )
        await store.commit()
    assert serials(await find(stores, "cy wu")) == ["ZZ4", "ZZ3"]


async def test_bulk_writes_updates_and_deletes_keep_the_index(
    stores: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            insert(m.Device),
            [
                {
                    "serial": f"BULK{i:03d}",
                    "asset_tag": f"BK-{i:03d}",
                    "model": MODEL,
                    "created_at": T0,
                }
                for i in range(50)
            ],
        )
        await conn.execute(
            insert(m.Student), [{"sis_id": "S-77", "first_name": "Noor", "last_name": "Haddad"}]
        )
    assert len(await find(stores, "bulk0")) == 50
    assert serials(await find(stores, "bk 042")) == ["BULK042"]

    async with engine.begin() as conn:
        await conn.execute(
            update(m.Device).where(m.Device.serial == "BULK042").values(asset_tag="NEW-9")
        )
        await conn.execute(
            update(m.Student).where(m.Student.sis_id == "S-77").values(last_name="Said")
        )
        await conn.execute(delete(m.Device).where(m.Device.serial == "BULK007"))
    assert await find(stores, "bk042") == []
    assert serials(await find(stores, "new9")) == ["BULK042"]
    assert await find(stores, "bulk007") == []
    async with stores() as store:
        student = await store.session.execute(text("SELECT id FROM students WHERE sis_id='S-77'"))
        student_id = student.scalar_one()
        device = await store.devices.by_serial("BULK001")
        assert device is not None
        store.session.add(
            m.DeviceAssignment(device_id=device.id, student_id=student_id, assigned_at=T0)
        )
        await store.commit()
    assert serials(await find(stores, "noor said")) == ["BULK001"]
    assert await find(stores, "haddad") == []


async def test_a_roster_import_is_searchable_at_once(stores: UnitOfWorkFactory) -> None:
    for day in ("district", "next_day"):
        await import_roster(
            stores.sessions,
            ROSTER / day,
            ROSTER / day / "devices.csv",
            strict=False,
            clock=stores.clock,
        )
        if day == "district":
            [mia] = await find(stores, "mia chen")
            assert (mia.serial, mia.asset_tag) == ("PF0003", "HMS-0003")
            assert serials(await find(stores, "hms0003")) == ["PF0003"]
            assert serials(await find(stores, "STU 3")) == ["PF0003"]  # her id (stu-3)
    # The next day 5CD0001 went to Zoe Okafor.
    [zoe] = await find(stores, "zoe oka")
    assert (zoe.serial, zoe.holder_name) == ("5CD0001", "Zoe Okafor")


printable = st.text(
    alphabet=string.ascii_letters + string.digits + IGNORED + "éÉøß#+", min_size=1, max_size=20
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(serial=printable, tag=st.none() | printable, first=printable, last=printable)
async def test_the_database_keys_agree_with_search_key(
    stores: UnitOfWorkFactory,
    engine: AsyncEngine,
    serial: str,
    tag: str | None,
    first: str,
    last: str,
) -> None:
    n = next(_serials)
    serial, tag = f"{serial}{n}", None if tag is None else f"{tag}{n}"
    sis_id = f"{first}{n}"
    async with engine.begin() as conn:
        device_id = (
            await conn.execute(
                insert(m.Device).returning(m.Device.id),
                {"serial": serial, "asset_tag": tag, "model": MODEL, "created_at": T0},
            )
        ).scalar_one()
        student_id = (
            await conn.execute(
                insert(m.Student).returning(m.Student.id),
                {"sis_id": sis_id, "first_name": first, "last_name": last},
            )
        ).scalar_one()

    assert await stored_texts(engine, "devices", device_id) == search_text(
        search_key(serial), None if tag is None else search_key(tag)
    )
    assert await stored_texts(engine, "students", student_id) == search_text(
        search_key(first + last), search_key(last + first), search_key(sis_id)
    )


async def test_postgres_answers_from_the_trigram_indexes(
    stores: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    if engine.dialect.name != "postgresql":
        return  # SQLite's FTS5 table is the index; there is no other way to read it
    async with engine.begin() as conn:
        await conn.execute(
            insert(m.Device),
            [
                {
                    "serial": f"PG{i:05d}X",
                    "asset_tag": f"T{i:05d}",
                    "model": MODEL,
                    "created_at": T0,
                }
                for i in range(3000)
            ],
        )
        await conn.execute(
            insert(m.Student),
            [
                {"sis_id": f"P{i:05d}", "first_name": "Kid", "last_name": f"N{i}"}
                for i in range(3000)
            ],
        )
        await conn.execute(text("ANALYZE devices, students"))
    patterns = search_patterns("pg01234")
    assert patterns is not None
    sql, _params = candidates_sql(True, patterns)
    async with engine.connect() as conn:
        plan = "\n".join(row[0] for row in await conn.execute(text(f"EXPLAIN {sql}"), {"n": 100}))
    assert "ix_devices_search_text" in plan and "ix_students_search_text" in plan
    assert serials(await find(stores, "pg01234")) == ["PG01234X"]


async def test_a_read_only_search_on_sqlite_runs_on_a_connection_of_its_own(
    stores: UnitOfWorkFactory, engine: AsyncEngine, clock: FixedClock
) -> None:
    if engine.dialect.name != "sqlite":
        return  # PostgreSQL runs the statement in one round trip already
    await add(stores, "AB12", "AT1001", ("Ana", "Rivera", "S-4401"))
    await add(stores, "AB123")
    await add(stores, "ZZ3", None, ("Abigail", "Stone", "S9"), returned=True)
    reads = UnitOfWorkFactory(session_factory(engine, read_only=True), clock)

    for query in ("ab12", "ana rivera", "s4401", "abigail", "at1001", "nothing", "x"):
        async with reads() as store:
            found = await store.devices.search(query, limit=100)
            assert not store.session.in_transaction()  # the session never began one
        assert found == await find(stores, query)  # the same answer as a session's
    readers = sqlite_readers(engine.sync_engine)
    assert readers is not None and readers._connections

    # Once a read transaction has begun, the search reads its snapshot, not a newer commit.
    async with reads() as store:
        await store.settings.get()
        await add(stores, "AB12-9")
        assert serials(await store.devices.search("ab12", limit=100)) == ["AB12", "AB123"]
    assert serials(await find(stores, "ab12")) == ["AB12", "AB12-9", "AB123"]

    # Disposing of the engine closes the readers with the pool they belonged to.
    await engine.dispose()
    gc.collect()
    assert readers._connections == []
    assert sqlite_readers(engine.sync_engine) is not readers
