"""A device source's listing compared with and applied to the store (SQLite and PostgreSQL)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from storage import models as m
from storage.db import session_factory
from storage.device_sync import DeviceSyncJob
from storage.uow import UnitOfWorkFactory
from tests.builders import add_district
from tests.sync.listed_source import APPLECARE, ListedSource, chromebook, counting_writes, ipad
from workflows.clock import FixedClock
from workflows.devices import ReplaceDevice, replace_device
from workflows.permissions import Actor
from workflows.ports import Context
from workflows.sync import SyncPlan

NOW = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)
LATER = NOW + timedelta(days=1)


async def sync(engine: AsyncEngine, source: ListedSource, now: datetime = NOW) -> SyncPlan:
    """Compare and apply in one transaction, as the runner does."""
    job = DeviceSyncJob(source)
    snapshot = await job.read(None)
    async with session_factory(engine)() as session:
        plan = await job.compare(session, snapshot, now)
        await job.apply(session, snapshot, plan, now)
        await session.commit()
    return plan


async def devices(engine: AsyncEngine) -> dict[str, m.Device]:
    async with session_factory(engine)() as session:
        rows = (await session.execute(select(m.Device))).scalars()
        return {d.serial: d for d in rows}


async def records(engine: AsyncEngine, source: str) -> dict[str, m.SourceRecord]:
    async with session_factory(engine)() as session:
        stmt = select(m.SourceRecord).where(m.SourceRecord.source == source)
        return {r.external_id: r for r in (await session.execute(stmt)).scalars()}


async def coverages(engine: AsyncEngine) -> list[tuple[str, str, date, date, str | None]]:
    async with session_factory(engine)() as session:
        stmt = (
            select(m.Device.serial, m.DeviceCoverage)
            .join(m.DeviceCoverage, m.DeviceCoverage.device_id == m.Device.id)
            .order_by(m.Device.serial, m.DeviceCoverage.coverage_start)
        )
        return [
            (serial, c.plan, c.coverage_start, c.coverage_end, c.source)
            for serial, c in (await session.execute(stmt)).all()
        ]


async def test_new_devices_are_added_with_their_records_and_coverage(engine: AsyncEngine) -> None:
    source = ListedSource("apple", [ipad(1), ipad(2, asset_tag="T-2")])
    plan = await sync(engine, source)
    assert plan.counts == {"new": 2, "coverage added": 2}
    assert plan.sample[0] == "new DMP0000001 iPad (9th generation)"
    stored = await devices(engine)
    assert stored["DMP0000002"].asset_tag == "T-2"
    assert stored["DMP0000001"].part_number == "MK2K3LL/A"
    assert stored["DMP0000001"].kind == "ipad"
    assert await coverages(engine) == [
        ("DMP0000001", APPLECARE, date(2024, 9, 1), date(2027, 8, 31), "Apple School Manager"),
        ("DMP0000002", APPLECARE, date(2024, 9, 1), date(2027, 8, 31), "Apple School Manager"),
    ]
    record = (await records(engine, "apple"))["DMP0000001"]
    assert record.entity == "device" and record.entity_id == stored["DMP0000001"].id
    assert record.facts["coverage"] == [
        {"provider": "Apple", "plan": APPLECARE, "start": "2024-09-01", "end": "2027-08-31"}
    ]


async def test_a_rerun_with_nothing_new_writes_nothing(engine: AsyncEngine) -> None:
    source = ListedSource("apple", [ipad(n, last_user_email=f"s{n}@x.org") for n in range(40)])
    await sync(engine, source)
    before = await records(engine, "apple")
    with counting_writes(engine) as writes:
        plan = await sync(engine, source, LATER)
    assert writes.statements == []
    assert plan.counts == {"unchanged": 40} and plan.changes == 0
    assert {k: r.changed_at for k, r in (await records(engine, "apple")).items()} == {
        k: r.changed_at for k, r in before.items()
    }


async def test_changed_facts_update_only_the_rows_that_differ(engine: AsyncEngine) -> None:
    source = ListedSource("google", [chromebook(n) for n in range(5)])
    await sync(engine, source)
    source.devices[1] = replace(source.devices[1], model="HP Chromebook 14 G7")
    source.devices[2] = replace(source.devices[2], org_unit="/Students/Grade 7")
    with counting_writes(engine) as writes:
        plan = await sync(engine, source, LATER)
    assert plan.counts == {"unchanged": 3, "changed": 1, "details updated": 1}
    assert plan.sample == [
        "model changed 5CD0000001: HP Chromebook 11 G9 → HP Chromebook 14 G7",
    ]
    # One UPDATE of devices, one of source records: executemany, whatever the number.
    assert len(writes.statements) == 2
    assert (await devices(engine))["5CD0000001"].model == "HP Chromebook 14 G7"
    changed = await records(engine, "google")
    assert changed["dev-2"].facts["org_unit"] == "/Students/Grade 7"
    assert changed["dev-2"].changed_at == LATER and changed["dev-3"].changed_at == NOW


async def test_an_asset_tag_on_another_device_is_reported_and_left_off(
    engine: AsyncEngine, stores: UnitOfWorkFactory
) -> None:
    await add_district(stores)  # device 5CD1234XYZ holds LMS-0001
    source = ListedSource(
        "google",
        [
            chromebook(1, asset_tag="lms-0001"),
            chromebook(2, asset_tag="A-9"),
            chromebook(3, asset_tag="A-9"),
        ],
    )
    plan = await sync(engine, source)
    assert plan.counts == {"new": 3, "problems": 2}
    assert "asset tag lms-0001 on 5CD0000001 left off: it is on 5CD1234XYZ" in plan.sample
    assert "asset tag A-9 on 5CD0000003 left off: it is on 5CD0000002" in plan.sample
    stored = await devices(engine)
    assert stored["5CD0000001"].asset_tag is None
    assert stored["5CD0000002"].asset_tag == "A-9"
    assert stored["5CD1234XYZ"].asset_tag == "LMS-0001"


async def test_retired_by_the_source_or_missing_from_a_complete_listing(
    engine: AsyncEngine, stores: UnitOfWorkFactory
) -> None:
    await add_district(stores)  # 5CD1234XYZ: a device this source never listed
    source = ListedSource("google", [chromebook(n) for n in range(4)])
    await sync(engine, source)
    source.devices = [
        replace(source.devices[0], status="retired"),
        source.devices[1],
        source.devices[2],
    ]
    plan = await sync(engine, source, LATER)
    assert plan.counts == {"retired": 2, "unchanged": 2}
    assert plan.removals == 2 and plan.base == 4
    assert plan.sample == [
        "retired 5CD0000000 (Google Admin lists it as retired)",
        "retired 5CD0000003 (no longer in Google Admin)",
    ]
    stored = await devices(engine)
    assert [stored[f"5CD000000{n}"].status for n in range(4)] == [
        "retired", "in_service", "in_service", "retired"
    ]  # fmt: skip
    assert stored["5CD1234XYZ"].status == "in_service"
    with counting_writes(engine) as writes:
        again = await sync(engine, source, LATER)
    assert writes.count == 0 and again.removals == 0


async def test_an_incremental_listing_retires_nothing(engine: AsyncEngine) -> None:
    source = ListedSource("google", [chromebook(n) for n in range(3)])
    await sync(engine, source)
    source.devices, source.complete = [replace(chromebook(0), model="HP Chromebook 14")], False
    plan = await sync(engine, source, LATER)
    assert plan.counts == {"changed": 1} and plan.removals == 0
    assert {d.status for d in (await devices(engine)).values()} == {"in_service"}


async def test_staff_statuses_are_never_changed(engine: AsyncEngine) -> None:
    source = ListedSource("google", [chromebook(n) for n in range(3)])
    await sync(engine, source)
    async with session_factory(engine)() as session:
        for serial, status in (("5CD0000000", "lost"), ("5CD0000001", "replaced")):
            device = (
                await session.execute(select(m.Device).where(m.Device.serial == serial))
            ).scalar_one()
            device.status = status
        await session.commit()
    source.devices = [replace(chromebook(0), status="retired")]  # and 1, 2 are gone
    plan = await sync(engine, source, LATER)
    assert plan.counts == {"details updated": 1, "retired": 1}
    stored = await devices(engine)
    assert (stored["5CD0000000"].status, stored["5CD0000001"].status) == ("lost", "replaced")
    assert stored["5CD0000002"].status == "retired"


async def test_an_empty_listing_would_retire_everything_it_listed(engine: AsyncEngine) -> None:
    source = ListedSource("google", [chromebook(n) for n in range(3)])
    await sync(engine, source)
    source.devices = []
    job = DeviceSyncJob(source)
    async with session_factory(engine)() as session:
        plan = await job.compare(session, await job.read(None), LATER)
    assert (plan.removals, plan.base, plan.removal_share) == (3, 3, 1.0)


async def test_coverage_is_kept_updated_or_removed_per_plan_and_start(
    engine: AsyncEngine,
) -> None:
    source = ListedSource("apple", [ipad(1), ipad(2), ipad(3)])
    await sync(engine, source)
    async with session_factory(engine)() as session:  # a row from a CSV import stays
        device = (
            await session.execute(select(m.Device).where(m.Device.serial == "DMP0000003"))
        ).scalar_one()
        session.add(
            m.DeviceCoverage(
                device_id=device.id,
                provider="Acme",
                plan="Accidental damage",
                coverage_start=date(2025, 1, 1),
                coverage_end=date(2026, 12, 31),
                source="coverage.csv",
                imported_at=NOW,
            )
        )
        await session.commit()
    source.devices = [
        ipad(1, end=date(2028, 8, 31)),  # extended
        ipad(2, coverages=None),  # not read this time: kept
        ipad(3, coverages=()),  # none any more: the source's row goes, the CSV's stays
    ]
    plan = await sync(engine, source, LATER)
    assert plan.counts == {"unchanged": 1, "coverage changed": 1, "coverage removed": 1}
    assert plan.sample == [
        f"coverage {APPLECARE} on DMP0000001 ends 2028-08-31 (was 2027-08-31)",
        f"coverage {APPLECARE} on DMP0000003 removed: Apple School Manager no longer lists it",
    ]
    assert [(s, p, end) for s, p, _start, end, _src in await coverages(engine)] == [
        ("DMP0000001", APPLECARE, date(2028, 8, 31)),
        ("DMP0000002", APPLECARE, date(2027, 8, 31)),
        ("DMP0000003", "Accidental damage", date(2026, 12, 31)),
    ]
    kept = (await records(engine, "apple"))["DMP0000002"].facts["coverage"]
    assert kept and kept[0]["end"] == "2027-08-31"


async def _replace(stores: UnitOfWorkFactory, clock: FixedClock, old_id: int, serial: str) -> None:
    async with stores() as store:
        ctx = Context(store, clock, ZoneInfo("America/Chicago"))
        await replace_device(ctx, Actor.system(), ReplaceDevice(old_id, serial))
        await store.commit()


async def test_a_replacement_synced_after_staff_recorded_it_keeps_the_link(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    district = await add_district(stores)
    await _replace(stores, clock, district.device_id, "dmp0000009")
    plan = await sync(engine, ListedSource("apple", [ipad(9)]))
    assert plan.counts == {"changed": 1, "coverage added": 1}
    stored = await devices(engine)
    old, new = stored["5CD1234XYZ"], stored["DMP0000009"]
    assert old.replaced_by_id == new.id and old.status == "replaced"
    assert (new.model, new.part_number) == ("iPad (9th generation)", "MK2K3LL/A")


async def test_a_device_synced_before_staff_replace_with_it_keeps_the_link(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    district = await add_district(stores)
    source = ListedSource("apple", [ipad(9)])
    await sync(engine, source)
    await _replace(stores, clock, district.device_id, "DMP0000009")
    source.devices = [ipad(9, asset_tag="T-9")]
    await sync(engine, source, LATER)
    stored = await devices(engine)
    old, new = stored["5CD1234XYZ"], stored["DMP0000009"]
    assert old.replaced_by_id == new.id and new.asset_tag == "T-9"
    async with session_factory(engine)() as session:
        count = await session.scalar(select(func.count()).select_from(m.Device))
    assert count == 2


async def test_the_most_recent_user_is_recorded_and_never_assigned(
    engine: AsyncEngine, stores: UnitOfWorkFactory
) -> None:
    district = await add_district(stores)
    async with stores() as store:
        student = await store.people.student(district.student_id)
        assert student is not None
        student.email = "ana@students.example.org"
        await store.commit()
    source = ListedSource(
        "google",
        [
            chromebook(1, serial="5CD1234XYZ", last_user_email="Ben@students.example.org"),
            chromebook(2, last_user_email="ana@students.example.org"),
        ],
    )
    await sync(engine, source)
    facts = (await records(engine, "google"))["dev-1"].facts
    assert facts["last_user_email"] == "Ben@students.example.org"
    async with session_factory(engine)() as session:
        rows = (await session.execute(select(m.DeviceAssignment))).scalars().all()
    assert [(a.device_id, a.student_id, a.returned_at) for a in rows] == [
        (district.device_id, district.student_id, None)
    ]
