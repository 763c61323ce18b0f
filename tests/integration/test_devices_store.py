"""Device replacement through the real store (SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, update

from storage import models as m
from storage.blobs import LocalBlobStore, sha256_hex
from storage.uow import SqlUnitOfWork, UnitOfWorkFactory
from tests.builders import T0, add_district, add_staff, add_student_with_device
from workflows.clock import FixedClock
from workflows.devices import ReplaceDevice, Replacement, replace_device
from workflows.errors import ConflictError, NotFound, PermissionDenied, ValidationError
from workflows.incidents import (
    OpenIncident,
    StoredPhoto,
    add_incident_note,
    attach_photo,
    open_incident,
)
from workflows.permissions import Actor
from workflows.ports import Context

TZ = ZoneInfo("America/Chicago")


def ctx_for(store: SqlUnitOfWork, clock: FixedClock) -> Context:
    return Context(store=store, clock=clock, tz=TZ)


async def _replace(
    stores: UnitOfWorkFactory,
    clock: FixedClock,
    actor: Actor,
    old_device_id: int,
    serial: str,
    **kw: Any,
) -> Replacement:
    async with stores() as store:
        result = await replace_device(
            ctx_for(store, clock), actor, ReplaceDevice(old_device_id, serial, **kw)
        )
        await store.commit()
        return result


async def _add_spare(stores: UnitOfWorkFactory, serial: str, status: str = "in_service") -> int:
    async with stores() as store:
        device = m.Device(serial=serial, model="Dell Chromebook 3100", status=status, created_at=T0)
        store.session.add(device)
        await store.session.flush()
        await store.commit()
        return device.id


async def _history(store: SqlUnitOfWork, device_id: int) -> tuple[list[int], list[int], list[int]]:
    """Ids of the incidents, notes and photos on a device."""
    result: list[list[int]] = []
    for model in (m.Incident, m.Note, m.Photo):
        stmt = select(model.id).where(model.device_id == device_id).order_by(model.id)
        result.append(list((await store.session.execute(stmt)).scalars()))
    return result[0], result[1], result[2]


async def _assignments(store: SqlUnitOfWork, device_id: int) -> list[m.DeviceAssignment]:
    stmt = (
        select(m.DeviceAssignment)
        .where(m.DeviceAssignment.device_id == device_id)
        .order_by(m.DeviceAssignment.id)
    )
    return list((await store.session.execute(stmt)).scalars())


async def _snapshot(stores: UnitOfWorkFactory) -> tuple[Any, ...]:
    """Everything a refused replacement must leave alone."""
    async with stores() as store:
        s = store.session
        devices = (
            await s.execute(
                select(
                    m.Device.id, m.Device.serial, m.Device.status, m.Device.replaced_by_id
                ).order_by(m.Device.id)
            )
        ).all()
        assignments = (
            await s.execute(
                select(
                    m.DeviceAssignment.device_id,
                    m.DeviceAssignment.student_id,
                    m.DeviceAssignment.returned_at,
                ).order_by(m.DeviceAssignment.id)
            )
        ).all()
        log = (await s.execute(select(func.count(m.ActivityEntry.id)))).scalar_one()
        await store.commit()
        return tuple(devices), tuple(assignments), log


async def test_replace_moves_the_student_and_keeps_each_history(
    stores, clock, tmp_path: Path
) -> None:
    d = await add_district(stores)
    tech = await add_staff(stores, "Technician")
    blobs = LocalBlobStore(tmp_path / "blobs")
    data = b"\xff\xd8\xff" + b"shattered" * 50
    async with stores() as store:
        ctx = ctx_for(store, clock)
        opened = await open_incident(ctx, tech, OpenIncident(d.device_id, ctx.today(), ("screen",)))
        incident_id = opened.incident.id
        note_id = await add_incident_note(ctx, tech, incident_id, "Screen shattered at recess.")
        photo_id = await attach_photo(
            ctx,
            tech,
            incident_id,
            StoredPhoto(
                blob_key=await blobs.put(data, "image/jpeg"),
                content_type="image/jpeg",
                size_bytes=len(data),
                sha256=sha256_hex(data),
            ),
        )
        await store.commit()
    when = clock.advance(days=3)

    done = await _replace(
        stores, clock, tech, d.device_id, "  5CD9999NEW ", new_asset_tag=" LMS-0777 "
    )
    assert done.student_id == d.student_id
    assert done.old.id == d.device_id and done.new.id != d.device_id

    async with stores() as store:
        old = await store.devices.get(d.device_id)
        new = await store.devices.by_serial("5cd9999new")
        assert old is not None and new is not None and new.id == done.new.id
        assert (old.status, old.replaced_by_id) == ("replaced", new.id)
        assert (new.serial, new.asset_tag, new.status) == ("5CD9999NEW", "LMS-0777", "in_service")
        # The new device inherits the model, kind and building, nothing else.
        assert (new.model, new.kind, new.building_id) == (old.model, old.kind, old.building_id)
        assert new.replaced_by_id is None and new.created_at == when

        assert await store.devices.current_holder(old.id) is None
        assert await store.devices.current_holder(new.id) == d.student_id
        (old_assignment,) = await _assignments(store, old.id)
        assert (old_assignment.assigned_at, old_assignment.returned_at) == (T0, when)
        (new_assignment,) = await _assignments(store, new.id)
        assert new_assignment.student_id == d.student_id
        assert (new_assignment.assigned_at, new_assignment.returned_at) == (when, None)
        assert new_assignment.reason == "replacement"

        assert await _history(store, old.id) == ([incident_id], [note_id], [photo_id])
        assert await _history(store, new.id) == ([], [], [])
        assert await blobs.get((await store.session.get(m.Photo, photo_id)).blob_key) == data

        old_log = await store.activity.for_entity("device", old.id)
        assert [e.action for e in old_log] == ["replaced"]
        assert old_log[0].before == {"status": "in_service"}
        assert old_log[0].after == {
            "status": "replaced",
            "replaced_by_id": new.id,
            "student_id": d.student_id,
        }
        new_log = await store.activity.for_entity("device", new.id)
        assert [e.action for e in new_log] == ["issued_as_replacement"]
        assert new_log[0].after == {"replaces_id": old.id, "student_id": d.student_id}
        assert old_log[0].actor_staff_id == tech.staff_id
        await store.commit()

    # The next incident on the student's device lands on the new serial.
    async with stores() as store:
        ctx = ctx_for(store, clock)
        again = await open_incident(ctx, tech, OpenIncident(new.id, ctx.today(), ("keyboard",)))
        assert again.incident.student_id == d.student_id
        await store.commit()


async def test_replace_with_an_unassigned_spare(stores, clock) -> None:
    d = await add_district(stores)
    tech = await add_staff(stores, "Technician")
    spare_id = await _add_spare(stores, "SPARE-001", status="spare")
    done = await _replace(stores, clock, tech, d.device_id, " spare-001 ", new_model="Ignored")
    assert done.new.id == spare_id
    async with stores() as store:
        spare = await store.devices.get(spare_id)
        assert spare is not None
        assert (spare.serial, spare.model, spare.status) == (
            "SPARE-001",
            "Dell Chromebook 3100",
            "in_service",
        )
        assert await store.devices.current_holder(spare_id) == d.student_id
        old = await store.devices.get(d.device_id)
        assert old is not None and old.replaced_by_id == spare_id
        count = await store.session.execute(select(func.count(m.Device.id)))
        assert count.scalar_one() == 2  # no new device row
        await store.commit()


async def test_a_returned_device_can_be_reissued_as_a_spare(stores, clock) -> None:
    d = await add_district(stores)
    other, other_device = await add_student_with_device(stores, sis_id="S2", serial="OTHER-1")
    tech = await add_staff(stores, "Technician")
    async with stores() as store:
        await store.devices.unassign(other_device, reason="withdrew")
        await store.commit()
    done = await _replace(stores, clock, tech, d.device_id, "OTHER-1")
    assert done.new.id == other_device
    async with stores() as store:
        history = await _assignments(store, other_device)
        assert [(a.student_id, a.returned_at is None) for a in history] == [
            (other, False),
            (d.student_id, True),
        ]
        await store.commit()


async def test_spare_already_assigned_is_a_conflict(stores, clock) -> None:
    d = await add_district(stores)
    _, other_device = await add_student_with_device(stores, sis_id="S2", serial="OTHER-1")
    tech = await add_staff(stores, "Technician")
    before = await _snapshot(stores)
    async with stores() as store:
        with pytest.raises(ConflictError) as err:
            await replace_device(ctx_for(store, clock), tech, ReplaceDevice(d.device_id, "other-1"))
        await store.commit()
    assert err.value.field == "new_serial"
    assert await _snapshot(stores) == before


@pytest.mark.parametrize("status", ["replaced", "retired", "lost"])
async def test_spare_that_cannot_be_issued_is_a_conflict(stores, clock, status: str) -> None:
    d = await add_district(stores)
    tech = await add_staff(stores, "Technician")
    await _add_spare(stores, "DEAD-1", status=status)
    before = await _snapshot(stores)
    async with stores() as store:
        with pytest.raises(ConflictError) as err:
            await replace_device(ctx_for(store, clock), tech, ReplaceDevice(d.device_id, "DEAD-1"))
        await store.commit()
    assert err.value.field == "new_serial"
    assert await _snapshot(stores) == before


@pytest.mark.parametrize("serial", ["5CD1234XYZ", " 5cd1234xyz ", "", "   "])
async def test_same_or_empty_serial_is_refused(stores, clock, serial: str) -> None:
    d = await add_district(stores)
    tech = await add_staff(stores, "Technician")
    before = await _snapshot(stores)
    async with stores() as store:
        with pytest.raises(ValidationError) as err:
            await replace_device(ctx_for(store, clock), tech, ReplaceDevice(d.device_id, serial))
        await store.commit()
    assert err.value.field == "new_serial"
    assert await _snapshot(stores) == before


async def test_asset_tag_already_in_use_is_a_conflict(stores, clock) -> None:
    d = await add_district(stores)
    tech = await add_staff(stores, "Technician")
    before = await _snapshot(stores)
    async with stores() as store:
        with pytest.raises(ConflictError) as err:
            await replace_device(
                ctx_for(store, clock),
                tech,
                ReplaceDevice(d.device_id, "5CD9999NEW", new_asset_tag="lms-0001"),
            )
        await store.commit()
    assert err.value.field == "new_asset_tag"
    assert "LMS-0001" in err.value.message
    assert await _snapshot(stores) == before


async def test_front_desk_cannot_replace_devices(stores, clock) -> None:
    d = await add_district(stores)
    front = await add_staff(stores, "Front Desk")
    before = await _snapshot(stores)
    with pytest.raises(PermissionDenied, match="Replace Devices"):
        await _replace(stores, clock, front, d.device_id, "5CD9999NEW")
    assert await _snapshot(stores) == before


async def test_unknown_or_unassigned_old_device(stores, clock) -> None:
    await add_district(stores)
    tech = await add_staff(stores, "Technician")
    spare_id = await _add_spare(stores, "SPARE-001")
    with pytest.raises(NotFound) as err:
        await _replace(stores, clock, tech, 999_999, "5CD9999NEW")
    assert err.value.field == "device"
    with pytest.raises(ConflictError, match="isn't assigned"):
        await _replace(stores, clock, tech, spare_id, "5CD9999NEW")


async def test_a_replaced_device_cannot_be_replaced_again(stores, clock) -> None:
    d = await add_district(stores)
    tech = await add_staff(stores, "Technician")
    first = await _replace(stores, clock, tech, d.device_id, "NEW-1")
    with pytest.raises(ConflictError):
        await _replace(stores, clock, tech, d.device_id, "NEW-2")
    # The chain continues from the device the student holds now.
    second = await _replace(stores, clock, tech, first.new.id, "NEW-2")
    async with stores() as store:
        middle = await store.devices.get(first.new.id)
        assert middle is not None
        assert (middle.status, middle.replaced_by_id) == ("replaced", second.new.id)
        assert await store.devices.current_holder(second.new.id) == d.student_id
        await store.commit()


async def test_backdated_incident_goes_to_whoever_had_the_device_that_day(stores, clock) -> None:
    """After a device changes hands, an incident dated before the handover is the first
    student's."""
    from datetime import date, timedelta

    from workflows.incidents import OpenIncident, open_incident

    d = await add_district(stores)
    second, _ = await add_student_with_device(stores, sis_id="S9", serial="OTHER-9")
    tech = await add_staff(stores, "Technician")
    handover = clock.now() - timedelta(days=10)
    async with stores() as store:
        await store.session.execute(
            update(m.DeviceAssignment)
            .where(m.DeviceAssignment.device_id == d.device_id)
            .values(returned_at=handover, return_reason="withdrew")
        )
        store.session.add(
            m.DeviceAssignment(
                device_id=d.device_id, student_id=second, assigned_at=handover, reason="reissued"
            )
        )
        await store.commit()
    ctx_day = {"before": date(2026, 2, 1), "after": date(2026, 3, 1)}
    owners = {}
    for label, day in ctx_day.items():
        async with stores() as store:
            opened = await open_incident(
                Context(store, clock, TZ),
                tech,
                OpenIncident(device_id=d.device_id, occurred_on=day, flags=("screen",)),
            )
            owners[label] = opened.incident.student_id
            await store.commit()
    assert owners == {"before": d.student_id, "after": second}
