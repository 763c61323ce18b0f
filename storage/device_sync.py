"""A device source's sync job: read the source, compare its listing with the store, apply.

Set-wise, for districts with tens of thousands of devices: one query each loads the devices,
their coverage and this source's records; new rows go in with one bulk INSERT per table and
only rows whose values differ get a bulk UPDATE. A rerun of an unchanged listing writes
nothing, not even a timestamp. The rules are workflows/device_sync.py.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage import models as m
from storage.roster_files import guess_kind
from storage.session_of import Db, session_of
from workflows.device_sync import (
    DeviceDiff,
    StoredCoverage,
    StoredDevice,
    StoredRecord,
    plan_device_sync,
)
from workflows.sync import SOURCE_LABELS, DeviceSnapshot, DeviceSource, SourceName, SyncPlan

ENTITY = "device"
DELETE_CHUNK = 1000


async def load_state(
    session: AsyncSession, source: str
) -> tuple[dict[str, StoredDevice], dict[str, StoredRecord], list[StoredCoverage]]:
    """The store as a sync compares it: every device by serial, this source's device records by
    external id, and every device coverage row (three queries, whatever the numbers)."""
    d = m.Device
    devices = {
        m.normalize_serial(row.serial): StoredDevice(
            row.id, row.serial, row.model, row.part_number, row.asset_tag, row.status
        )
        for row in await session.execute(
            select(d.id, d.serial, d.model, d.part_number, d.asset_tag, d.status)
        )
    }
    r = m.SourceRecord
    records = {
        row.external_id: StoredRecord(row.id, row.external_id, row.entity_id, row.facts)
        for row in await session.execute(
            select(r.id, r.external_id, r.entity_id, r.facts).where(
                r.source == source, r.entity == ENTITY
            )
        )
    }
    c = m.DeviceCoverage
    coverages = [
        StoredCoverage(row.id, row.device_id, row.provider, row.plan, row[4], row[5], row.source)
        for row in await session.execute(
            select(
                c.id, c.device_id, c.provider, c.plan, c.coverage_start, c.coverage_end, c.source
            )
        )
    ]
    return devices, records, coverages


async def compare_devices(session: AsyncSession, snapshot: DeviceSnapshot) -> DeviceDiff:
    devices, records, coverages = await load_state(session, snapshot.source)
    return plan_device_sync(snapshot, devices, records, coverages)


async def apply_device_diff(
    session: AsyncSession, diff: DeviceDiff, source: str, now: datetime
) -> None:
    """Write `diff` in the caller's transaction (devices, then records and coverage)."""
    ids: dict[str, int] = {}
    if diff.device_updates:
        await session.execute(update(m.Device), diff.device_updates)
    if diff.new_devices:
        rows = [
            {
                "serial": new.serial,
                "model": new.model,
                "part_number": new.part_number,
                "asset_tag": new.asset_tag,
                "status": new.status,
                "kind": guess_kind(new.model) if new.model else "chromebook",
                "building_id": None,
                "replaced_by_id": None,
                "created_at": now,
            }
            for new in diff.new_devices
        ]
        # RETURNING the serial too keeps SQLAlchemy's batched insertmanyvalues mode.
        stmt = insert(m.Device).returning(m.Device.id, m.Device.serial)
        ids.update({serial: ident for ident, serial in await session.execute(stmt, rows)})
    wanted = {w.serial for w in diff.records} | {w.serial for w in diff.coverages}
    missing = wanted - ids.keys()
    if missing:
        stmt2 = select(m.Device.serial, m.Device.id).where(m.Device.serial.in_(missing))
        ids.update({serial: ident for serial, ident in await session.execute(stmt2)})
    await _write_records(session, diff, source, ids, now)
    await _write_coverages(session, diff, source, ids, now)


async def _write_records(
    session: AsyncSession, diff: DeviceDiff, source: str, ids: dict[str, int], now: datetime
) -> None:
    inserts = [
        {
            "source": source,
            "external_id": w.external_id,
            "entity": ENTITY,
            "entity_id": ids[w.serial],
            "facts": w.facts,
            "first_seen_at": now,
            "changed_at": now,
        }
        for w in diff.records
        if w.record_id is None
    ]
    updates = [
        {"id": w.record_id, "entity_id": ids[w.serial], "facts": w.facts, "changed_at": now}
        for w in diff.records
        if w.record_id is not None
    ]
    if updates:
        await session.execute(update(m.SourceRecord), updates)
    if inserts:
        await session.execute(insert(m.SourceRecord), inserts)


async def _write_coverages(
    session: AsyncSession, diff: DeviceDiff, source: str, ids: dict[str, int], now: datetime
) -> None:
    label = SOURCE_LABELS.get(source, source)
    for start in range(0, len(diff.coverage_deletes), DELETE_CHUNK):
        chunk = diff.coverage_deletes[start : start + DELETE_CHUNK]
        await session.execute(delete(m.DeviceCoverage).where(m.DeviceCoverage.id.in_(chunk)))
    updates: list[dict[str, Any]] = []
    inserts: list[dict[str, Any]] = []
    for w in diff.coverages:
        c = w.coverage
        values = {
            "provider": c.provider,
            "coverage_end": c.end,
            "source": label,
            "imported_at": now,
        }
        if w.coverage_id is not None:
            updates.append({"id": w.coverage_id, **values})
        else:
            inserts.append(
                {"device_id": ids[w.serial], "plan": c.plan, "coverage_start": c.start, **values}
            )
    if updates:
        await session.execute(update(m.DeviceCoverage), updates)
    if inserts:
        await session.execute(insert(m.DeviceCoverage), inserts)


class DeviceSyncJob:
    """The SyncJob (bot/sync/job.py) for any DeviceSource: Apple School Manager, Google Admin.

    `compare` keeps its difference for the `apply` that follows in the same transaction, so a
    run loads the store once.
    """

    def __init__(self, client: DeviceSource) -> None:
        self.client = client
        self.source: SourceName = client.name
        self._compared: tuple[DeviceSnapshot, DeviceDiff] | None = None

    async def read(self, cursor: str | None) -> DeviceSnapshot:
        return await self.client.fetch(cursor)

    async def compare(self, db: Db, snapshot: DeviceSnapshot, now: datetime) -> SyncPlan:
        diff = await compare_devices(session_of(db), snapshot)
        self._compared = (snapshot, diff)
        return diff.plan

    async def apply(self, db: Db, snapshot: DeviceSnapshot, plan: SyncPlan, now: datetime) -> None:
        session = session_of(db)
        compared, self._compared = self._compared, None
        if compared is not None and compared[0] is snapshot and compared[1].plan is plan:
            diff = compared[1]
        else:
            diff = await compare_devices(session, snapshot)
        await apply_device_diff(session, diff, self.source, now)
