"""Incidents through the real store (SQLite and PostgreSQL): open, statuses, repeat offenders,
notes and photos, and the coverage badge as of the incident date."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from storage import models as m
from storage.blobs import LocalBlobStore, sha256_hex
from storage.uow import SqlUnitOfWork, UnitOfWorkFactory
from tests.builders import add_district, add_policy, add_staff, add_student_with_device
from workflows.clock import FixedClock
from workflows.errors import InvalidTransition, NotFound, PermissionDenied, ValidationError
from workflows.incident_status import IncidentStatus
from workflows.incidents import (
    MAX_DESCRIPTION,
    MAX_NOTE,
    OpenedIncident,
    OpenIncident,
    StoredPhoto,
    add_incident_note,
    attach_photo,
    change_incident_status,
    incident_coverage_badge,
    open_incident,
)
from workflows.insurance import CoverageBadge
from workflows.invoices import (
    CreatedInvoice,
    CreateInvoice,
    CustomLine,
    cancel_invoice,
    create_invoice_for_incident,
)
from workflows.permissions import Actor
from workflows.ports import Context

TZ = ZoneInfo("America/Chicago")
S = IncidentStatus
TODAY = date(2026, 3, 2)  # the district's local date at the conftest clock
YEAR_START = date(2025, 7, 1)


def ctx_for(store: SqlUnitOfWork, clock: FixedClock) -> Context:
    return Context(store=store, clock=clock, tz=TZ)


async def _open(
    stores: UnitOfWorkFactory,
    clock: FixedClock,
    actor: Actor,
    device_id: int,
    *,
    occurred: date = date(2026, 2, 20),
    flags: tuple[str, ...] = ("screen",),
    **kw: Any,
) -> OpenedIncident:
    async with stores() as store:
        result = await open_incident(
            ctx_for(store, clock),
            actor,
            OpenIncident(device_id=device_id, occurred_on=occurred, flags=flags, **kw),
        )
        await store.commit()
        return result


async def _move(
    stores: UnitOfWorkFactory, clock: FixedClock, actor: Actor, incident_id: int, target: S
) -> m.Incident:
    async with stores() as store:
        result = await change_incident_status(ctx_for(store, clock), actor, incident_id, target)
        await store.commit()
        return result


async def _count(stores: UnitOfWorkFactory, model: type[Any], *where: Any) -> int:
    async with stores() as store:
        stmt = select(func.count()).select_from(model).where(*where)
        result = int((await store.session.execute(stmt)).scalar_one())
        await store.commit()
        return result


async def _actions(stores: UnitOfWorkFactory, entity_type: str, entity_id: int) -> list[str]:
    async with stores() as store:
        result = [e.action for e in await store.activity.for_entity(entity_type, entity_id)]
        await store.commit()
        return result


async def _set_settings(stores: UnitOfWorkFactory, **values: Any) -> None:
    async with stores() as store:
        settings = await store.settings.get()
        for name, value in values.items():
            setattr(settings, name, value)
        await store.commit()


# --- open_incident --------------------------------------------------------------------------


async def test_open_prefills_student_from_current_assignment_and_logs(stores, clock) -> None:
    d = await add_district(stores)
    tech = await add_staff(stores, "Technician")
    opened = await _open(
        stores,
        clock,
        tech,
        d.device_id,
        flags=("Screen", "physical-damage", "screen", ""),
        description="  Cracked in the corner  ",
        ticket_ref="HD-1042",
    )
    assert opened.created and opened.new_offender_flags == ()
    async with stores() as store:
        incident = await store.incidents.get(opened.incident.id)
        assert incident is not None
        assert incident.student_id == d.student_id
        assert incident.device_id == d.device_id
        assert incident.reported_by_id == tech.staff_id
        assert incident.status == "open" and incident.closed_at is None
        assert incident.opened_at == clock.now()
        assert incident.description == "Cracked in the corner"
        assert incident.ticket_ref == "HD-1042"
        assert incident.flag_names == ["physical_damage", "screen"]
        log = await store.activity.for_entity("incident", incident.id)
        assert [e.action for e in log] == ["opened"]
        assert log[0].actor_staff_id == tech.staff_id
        assert log[0].after == {
            "device_id": d.device_id,
            "student_id": d.student_id,
            "flags": ["screen", "physical_damage"],
            "occurred_on": "2026-02-20",
            "status": "open",
        }
        await store.commit()


async def test_open_with_explicit_student(stores, clock) -> None:
    d = await add_district(stores)
    other, _ = await add_student_with_device(stores, sis_id="S2", serial="OTHER-1")
    tech = await add_staff(stores, "Technician")
    # Damage found on Ana's device, caused by another student.
    opened = await _open(stores, clock, tech, d.device_id, student_id=other)
    assert opened.incident.student_id == other
    with pytest.raises(NotFound) as err:
        await _open(stores, clock, tech, d.device_id, student_id=999_999)
    assert err.value.field == "student"


async def test_open_on_unassigned_device_has_no_student(stores, clock) -> None:
    await add_district(stores)
    async with stores() as store:
        spare = await store.devices.add(
            serial="SPARE-9", model="Dell 3100", kind="chromebook", building_id=None, asset_tag=None
        )
        spare_id = spare.id
        await store.commit()
    tech = await add_staff(stores, "Technician")
    opened = await _open(stores, clock, tech, spare_id, flags=("physical_damage",))
    assert opened.incident.student_id is None and opened.new_offender_flags == ()


async def test_open_unknown_device_is_not_found(stores, clock) -> None:
    await add_district(stores)
    tech = await add_staff(stores, "Technician")
    with pytest.raises(NotFound) as err:
        await _open(stores, clock, tech, 999_999)
    assert err.value.field == "device"
    assert await _count(stores, m.Incident) == 0


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"occurred": TODAY + timedelta(days=1)}, "occurred_on"),
        ({"occurred": TODAY - timedelta(days=6 * 366)}, "occurred_on"),
        ({"flags": ()}, "flags"),
        ({"flags": ("", "  ")}, "flags"),
        ({"flags": ("cracked screen!",)}, "flags"),
        ({"description": "x" * (MAX_DESCRIPTION + 1)}, "description"),
    ],
)
async def test_open_validation_names_the_field(
    stores, clock, changes: dict[str, Any], field: str
) -> None:
    d = await add_district(stores)
    tech = await add_staff(stores, "Technician")
    with pytest.raises(ValidationError) as err:
        await _open(stores, clock, tech, d.device_id, **changes)
    assert err.value.field == field
    assert await _count(stores, m.Incident) == 0
    async with stores() as store:
        log = (await store.session.execute(select(m.ActivityEntry))).scalars().all()
        assert log == []
        await store.commit()


async def test_open_accepts_today_in_the_district_zone_and_the_longest_description(
    stores, clock
) -> None:
    d = await add_district(stores)
    tech = await add_staff(stores, "Technician")
    # 03:00 UTC on March 3 is still the evening of March 2 in Chicago.
    clock.set(datetime(2026, 3, 3, 3, 0, tzinfo=UTC))
    with pytest.raises(ValidationError) as err:
        await _open(stores, clock, tech, d.device_id, occurred=date(2026, 3, 3))
    assert err.value.field == "occurred_on"
    opened = await _open(
        stores, clock, tech, d.device_id, occurred=TODAY, description="y" * MAX_DESCRIPTION
    )
    assert opened.incident.occurred_on == TODAY
    assert len(opened.incident.description) == MAX_DESCRIPTION


async def test_open_is_idempotent_by_key(stores, clock) -> None:
    d = await add_district(stores)
    tech = await add_staff(stores, "Technician")
    first = await _open(stores, clock, tech, d.device_id, idempotency_key="slack:evt-1")
    # A redelivered event (even with a different payload) returns the first incident.
    second = await _open(
        stores,
        clock,
        tech,
        d.device_id,
        flags=("battery",),
        idempotency_key="slack:evt-1",
    )
    assert first.created and not second.created
    assert second.incident.id == first.incident.id
    assert second.incident.flag_names == ["screen"]
    assert await _count(stores, m.Incident) == 1
    assert await _actions(stores, "incident", first.incident.id) == ["opened"]
    third = await _open(stores, clock, tech, d.device_id, idempotency_key="slack:evt-2")
    assert third.created and third.incident.id != first.incident.id


async def test_open_needs_manage_incidents(stores, clock) -> None:
    d = await add_district(stores)
    clerk = await add_staff(stores, "Billing Clerk")
    with pytest.raises(PermissionDenied):
        await _open(stores, clock, clerk, d.device_id)
    assert await _count(stores, m.Incident) == 0


# --- change_incident_status -----------------------------------------------------------------


async def test_allowed_transition_is_saved_and_logged(stores, clock) -> None:
    d = await add_district(stores)
    tech = await add_staff(stores, "Technician")
    incident_id = (await _open(stores, clock, tech, d.device_id)).incident.id
    moved = await _move(stores, clock, tech, incident_id, S.IN_REPAIR)
    assert moved.status == "in_repair"
    async with stores() as store:
        incident = await store.incidents.get(incident_id)
        assert incident is not None and incident.status == "in_repair"
        log = await store.activity.for_entity("incident", incident_id)
        assert [e.action for e in log] == ["opened", "status_changed"]
        assert (log[1].before, log[1].after) == ({"status": "open"}, {"status": "in_repair"})
        assert log[1].actor_staff_id == tech.staff_id
        await store.commit()


async def test_closing_sets_closed_at_and_reopening_clears_it(stores, clock) -> None:
    d = await add_district(stores)
    tech = await add_staff(stores, "Technician")
    incident_id = (await _open(stores, clock, tech, d.device_id)).incident.id
    await _move(stores, clock, tech, incident_id, S.IN_REPAIR)
    closed_at = clock.advance(hours=5)
    await _move(stores, clock, tech, incident_id, S.CLOSED)
    async with stores() as store:
        incident = await store.incidents.get(incident_id)
        assert incident is not None
        assert (incident.status, incident.closed_at) == ("closed", closed_at)
        await store.commit()
    clock.advance(days=30)
    await _move(stores, clock, tech, incident_id, S.OPEN)
    async with stores() as store:
        incident = await store.incidents.get(incident_id)
        assert incident is not None
        assert (incident.status, incident.closed_at) == ("open", None)
        log = await store.activity.for_entity("incident", incident_id)
        assert [(e.before, e.after) for e in log[-2:]] == [
            ({"status": "in_repair"}, {"status": "closed"}),
            ({"status": "closed"}, {"status": "open"}),
        ]
        await store.commit()


async def _assert_refused(
    stores: UnitOfWorkFactory,
    clock: FixedClock,
    actor: Actor,
    incident_id: int,
    target: S,
    error: type[Exception],
) -> None:
    """The use case raises, the transaction still commits, and nothing has changed."""
    async with stores() as store:
        before = await store.incidents.get(incident_id)
        assert before is not None
        state = (before.status, before.closed_at)
        entries = len(await store.activity.for_entity("incident", incident_id))
        await store.commit()
    async with stores() as store:
        with pytest.raises(error):
            await change_incident_status(ctx_for(store, clock), actor, incident_id, target)
        await store.commit()
    async with stores() as store:
        after = await store.incidents.get(incident_id)
        assert after is not None
        assert (after.status, after.closed_at) == state
        assert len(await store.activity.for_entity("incident", incident_id)) == entries
        await store.commit()


async def test_restricted_statuses_follow_the_role(stores, clock) -> None:
    d = await add_district(stores)
    tech = await add_staff(stores, "Technician")
    clerk = await add_staff(stores, "Billing Clerk")
    front = await add_staff(stores, "Front Desk")

    first = (await _open(stores, clock, tech, d.device_id)).incident.id
    await _move(stores, clock, tech, first, S.AWAITING_PARTS)

    second = (await _open(stores, clock, tech, d.device_id)).incident.id
    await _assert_refused(stores, clock, tech, second, S.INSURANCE_CLAIM, PermissionDenied)
    # The role the status is reserved to may move the incident into it.
    moved = await _move(stores, clock, clerk, second, S.INSURANCE_CLAIM)
    assert moved.status == "insurance_claim"

    third = (await _open(stores, clock, front, d.device_id)).incident.id
    for status in (S.AWAITING_PARTS, S.VENDOR_REPAIR, S.INSURANCE_CLAIM):
        await _assert_refused(stores, clock, front, third, status, PermissionDenied)
    assert (await _move(stores, clock, front, third, S.IN_REPAIR)).status == "in_repair"


async def test_refusal_does_not_name_the_hidden_status(stores, clock) -> None:
    d = await add_district(stores)
    front = await add_staff(stores, "Front Desk")
    incident_id = (await _open(stores, clock, front, d.device_id)).incident.id
    async with stores() as store:
        with pytest.raises(PermissionDenied) as err:
            await change_incident_status(ctx_for(store, clock), front, incident_id, S.VENDOR_REPAIR)
        await store.commit()
    assert "Vendor" not in err.value.message and err.value.field == "status"


async def test_restrictions_come_from_district_settings_and_superadmin_bypasses(
    stores, clock
) -> None:
    d = await add_district(stores)
    await _set_settings(stores, restricted_statuses=["ready_for_pickup"])
    tech = await add_staff(stores, "Technician")
    admin = await add_staff(stores, "Admin")
    boss = await add_staff(stores, "SuperAdmin")
    incident_id = (await _open(stores, clock, tech, d.device_id)).incident.id
    # No role holds ready_for_pickup; only the SuperAdmin gets past the lock.
    await _assert_refused(stores, clock, admin, incident_id, S.READY_FOR_PICKUP, PermissionDenied)
    await _assert_refused(stores, clock, tech, incident_id, S.READY_FOR_PICKUP, PermissionDenied)
    moved = await _move(stores, clock, boss, incident_id, S.READY_FOR_PICKUP)
    assert moved.status == "ready_for_pickup"
    # Statuses no longer restricted are open to everyone with Manage Incidents.
    other = (await _open(stores, clock, tech, d.device_id)).incident.id
    assert (await _move(stores, clock, tech, other, S.INSURANCE_CLAIM)).status == "insurance_claim"


async def test_invalid_transitions_are_refused(stores, clock) -> None:
    d = await add_district(stores)
    tech = await add_staff(stores, "Technician")
    boss = await add_staff(stores, "SuperAdmin")
    incident_id = (await _open(stores, clock, tech, d.device_id)).incident.id
    await _assert_refused(stores, clock, tech, incident_id, S.OPEN, InvalidTransition)
    await _move(stores, clock, tech, incident_id, S.CLOSED)
    await _assert_refused(stores, clock, tech, incident_id, S.AWAITING_PARTS, InvalidTransition)
    # Even a SuperAdmin follows the workflow.
    await _assert_refused(stores, clock, boss, incident_id, S.IN_REPAIR, InvalidTransition)


async def test_status_change_on_missing_incident_or_without_permission(stores, clock) -> None:
    d = await add_district(stores)
    tech = await add_staff(stores, "Technician")
    director = await add_staff(stores, "Finance Director")
    incident_id = (await _open(stores, clock, tech, d.device_id)).incident.id
    with pytest.raises(NotFound):
        await _move(stores, clock, tech, 999_999, S.IN_REPAIR)
    # Without Manage Incidents only a status reserved to the role is reachable.
    await _assert_refused(stores, clock, director, incident_id, S.IN_REPAIR, PermissionDenied)
    with pytest.raises(PermissionDenied):
        await _move(stores, clock, director, 999_999, S.IN_REPAIR)


# --- repeat offenders -----------------------------------------------------------------------


async def test_third_physical_damage_this_school_year_flags_the_student(stores, clock) -> None:
    d = await add_district(stores)
    tech = await add_staff(stores, "Technician")
    results = [
        await _open(stores, clock, tech, d.device_id, occurred=day, flags=flags)
        for day, flags in [
            (date(2025, 9, 10), ("physical_damage",)),
            (date(2025, 10, 1), ("screen",)),  # other flags don't count
            (date(2025, 12, 1), ("physical_damage", "screen")),
            (date(2026, 2, 20), ("Physical Damage",)),
        ]
    ]
    assert [r.new_offender_flags for r in results] == [(), (), (), ("physical_damage",)]
    third = results[-1].incident.id
    async with stores() as store:
        flags = (await store.session.execute(select(m.StudentFlag))).scalars().all()
        assert [
            (f.student_id, f.flag, f.window_start, f.incident_count, f.incident_id) for f in flags
        ] == [(d.student_id, "physical_damage", YEAR_START, 3, third)]
        assert flags[0].flagged_at == clock.now()
        log = await store.activity.for_entity("student", d.student_id)
        assert [e.action for e in log] == ["repeat_offender_flagged"]
        assert log[0].after == {"flag": "physical_damage", "count": 3, "threshold": 3}
        await store.commit()

    fourth = await _open(stores, clock, tech, d.device_id, flags=("physical_damage",))
    assert fourth.new_offender_flags == ()
    assert await _count(stores, m.StudentFlag) == 1
    assert await _actions(stores, "student", d.student_id) == ["repeat_offender_flagged"]


async def test_previous_school_year_and_other_students_do_not_count(stores, clock) -> None:
    d = await add_district(stores)
    sibling, sibling_device = await add_student_with_device(stores, sis_id="S2", serial="SIB-1")
    tech = await add_staff(stores, "Technician")
    pd = ("physical_damage",)
    for day in (date(2025, 3, 3), date(2025, 6, 30)):  # last school year
        await _open(stores, clock, tech, d.device_id, occurred=day, flags=pd)
    await _open(stores, clock, tech, sibling_device, occurred=date(2025, 9, 1), flags=pd)
    await _open(stores, clock, tech, d.device_id, occurred=date(2025, 7, 1), flags=pd)
    second = await _open(stores, clock, tech, d.device_id, occurred=date(2026, 1, 5), flags=pd)
    assert second.new_offender_flags == ()
    assert await _count(stores, m.StudentFlag) == 0
    # Backdating one more into last year doesn't flag either: its window is already over.
    late = await _open(stores, clock, tech, d.device_id, occurred=date(2025, 5, 1), flags=pd)
    assert late.new_offender_flags == ()
    third = await _open(stores, clock, tech, d.device_id, occurred=TODAY, flags=pd)
    assert third.new_offender_flags == ("physical_damage",)
    async with stores() as store:
        row = (await store.session.execute(select(m.StudentFlag))).scalar_one()
        assert (row.student_id, row.incident_count) == (d.student_id, 3)
        await store.commit()
    assert await _actions(stores, "student", sibling) == []


async def test_explicit_student_is_the_one_counted(stores, clock) -> None:
    d = await add_district(stores)
    other, _ = await add_student_with_device(stores, sis_id="S2", serial="OTHER-1")
    tech = await add_staff(stores, "Technician")
    results = [
        await _open(stores, clock, tech, d.device_id, flags=("physical_damage",), student_id=other)
        for _ in range(3)
    ]
    assert results[-1].new_offender_flags == ("physical_damage",)
    async with stores() as store:
        row = (await store.session.execute(select(m.StudentFlag))).scalar_one()
        assert row.student_id == other
        await store.commit()


async def test_custom_rule_from_district_settings(stores, clock) -> None:
    d = await add_district(stores)
    await _set_settings(
        stores,
        offender_rules=[
            {"flag": "physical_damage", "threshold": 3, "window": "school_year", "days": None},
            {"flag": "screen", "threshold": 2, "window": "days", "days": 30},
        ],
    )
    tech = await add_staff(stores, "Technician")
    # The last 30 days, today included, start on February 1.
    old = await _open(stores, clock, tech, d.device_id, occurred=date(2026, 1, 31))
    first = await _open(stores, clock, tech, d.device_id, occurred=date(2026, 2, 1))
    assert (old.new_offender_flags, first.new_offender_flags) == ((), ())
    second = await _open(
        stores, clock, tech, d.device_id, occurred=date(2026, 3, 1), flags=("screen", "battery")
    )
    assert second.new_offender_flags == ("screen",)
    async with stores() as store:
        row = (await store.session.execute(select(m.StudentFlag))).scalar_one()
        assert (row.flag, row.window_start, row.incident_count) == ("screen", date(2026, 2, 1), 2)
        log = await store.activity.for_entity("student", d.student_id)
        assert log[-1].after == {"flag": "screen", "count": 2, "threshold": 2}
        await store.commit()
    third = await _open(stores, clock, tech, d.device_id, occurred=TODAY)
    assert third.new_offender_flags == ()
    assert await _count(stores, m.StudentFlag) == 1


async def test_one_incident_can_trip_two_rules(stores, clock) -> None:
    d = await add_district(stores)
    await _set_settings(
        stores,
        offender_rules=[
            {"flag": "physical_damage", "threshold": 1, "window": "school_year"},
            {"flag": "water", "threshold": 1, "window": "days", "days": 7},
        ],
    )
    tech = await add_staff(stores, "Technician")
    opened = await _open(
        stores, clock, tech, d.device_id, occurred=TODAY, flags=("water", "physical_damage")
    )
    assert sorted(opened.new_offender_flags) == ["physical_damage", "water"]
    assert await _count(stores, m.StudentFlag, m.StudentFlag.student_id == d.student_id) == 2


# --- notes and photos -----------------------------------------------------------------------


async def test_notes_belong_to_the_device_and_outlive_the_incident(stores, clock) -> None:
    d = await add_district(stores)
    tech = await add_staff(stores, "Technician")
    incident_id = (await _open(stores, clock, tech, d.device_id)).incident.id
    async with stores() as store:
        note_id = await add_incident_note(
            ctx_for(store, clock), tech, incident_id, "  Ordered a panel from the vendor.  "
        )
        await store.commit()
    async with stores() as store:
        note = await store.session.get(m.Note, note_id)
        assert note is not None
        assert (note.device_id, note.incident_id) == (d.device_id, incident_id)
        assert note.body == "Ordered a panel from the vendor."
        assert (note.author_staff_id, note.author_label) == (tech.staff_id, tech.name)
        assert note.created_at == clock.now()
        await store.commit()
    # Even if the incident row goes away, the device keeps the note.
    async with stores() as store:
        incident = await store.session.get(m.Incident, incident_id)
        await store.session.delete(incident)
        await store.commit()
    async with stores() as store:
        notes = (
            (await store.session.execute(select(m.Note).where(m.Note.device_id == d.device_id)))
            .scalars()
            .all()
        )
        assert [(n.id, n.incident_id) for n in notes] == [(note_id, None)]
        await store.commit()


@pytest.mark.parametrize("body", ["", "   \n\t", "z" * (MAX_NOTE + 1)])
async def test_empty_or_oversized_note_is_refused(stores, clock, body: str) -> None:
    d = await add_district(stores)
    tech = await add_staff(stores, "Technician")
    incident_id = (await _open(stores, clock, tech, d.device_id)).incident.id
    async with stores() as store:
        with pytest.raises(ValidationError) as err:
            await add_incident_note(ctx_for(store, clock), tech, incident_id, body)
        await store.commit()
    assert err.value.field == "note"
    assert await _count(stores, m.Note) == 0


async def test_note_on_missing_incident_or_without_permission(stores, clock) -> None:
    d = await add_district(stores)
    tech = await add_staff(stores, "Technician")
    clerk = await add_staff(stores, "Billing Clerk")
    incident_id = (await _open(stores, clock, tech, d.device_id)).incident.id
    async with stores() as store:
        with pytest.raises(NotFound):
            await add_incident_note(ctx_for(store, clock), tech, 999_999, "hello")
        with pytest.raises(PermissionDenied):
            await add_incident_note(ctx_for(store, clock), clerk, incident_id, "hello")
        await store.commit()
    assert await _count(stores, m.Note) == 0


async def test_photo_links_to_device_and_incident(stores, clock, tmp_path: Path) -> None:
    d = await add_district(stores)
    tech = await add_staff(stores, "Technician")
    incident_id = (await _open(stores, clock, tech, d.device_id)).incident.id
    blobs = LocalBlobStore(tmp_path / "blobs")
    data = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
    key = await blobs.put(data, "image/png")
    photo = StoredPhoto(
        blob_key=key,
        content_type="image/png",
        size_bytes=len(data),
        sha256=sha256_hex(data),
        width=1280,
        height=960,
        original_filename="IMG_0042.png",
        source_ref="F0123ABC",
    )
    async with stores() as store:
        photo_id = await attach_photo(ctx_for(store, clock), tech, incident_id, photo)
        await store.commit()
    await _move(stores, clock, tech, incident_id, S.CLOSED)
    async with stores() as store:
        rows = (
            (await store.session.execute(select(m.Photo).where(m.Photo.device_id == d.device_id)))
            .scalars()
            .all()
        )
        assert [r.id for r in rows] == [photo_id]
        row = rows[0]
        assert (row.device_id, row.incident_id, row.uploaded_by_id) == (
            d.device_id,
            incident_id,
            tech.staff_id,
        )
        assert (row.blob_key, row.sha256, row.size_bytes) == (key, sha256_hex(data), len(data))
        assert (row.width, row.height, row.original_filename) == (1280, 960, "IMG_0042.png")
        assert (row.source, row.source_ref, row.content_type) == ("slack", "F0123ABC", "image/png")
        log = await store.activity.for_entity("incident", incident_id)
        assert log[1].action == "photo_added"
        assert log[1].after == {"photo_id": photo_id, "sha256": sha256_hex(data)}
        await store.commit()
    assert await blobs.get(row.blob_key) == data
    async with stores() as store:
        with pytest.raises(NotFound):
            await attach_photo(ctx_for(store, clock), tech, 999_999, photo)
        await store.commit()


# --- coverage badge -------------------------------------------------------------------------


async def _badge(stores: UnitOfWorkFactory, clock: FixedClock, incident_id: int) -> CoverageBadge:
    async with stores() as store:
        result = await incident_coverage_badge(ctx_for(store, clock), incident_id)
        await store.commit()
        return result


async def _bill(
    stores: UnitOfWorkFactory, clock: FixedClock, actor: Actor, incident_id: int
) -> CreatedInvoice:
    async with stores() as store:
        result = await create_invoice_for_incident(
            ctx_for(store, clock),
            actor,
            CreateInvoice(incident_id=incident_id, custom_lines=(CustomLine("Screen", 12500),)),
        )
        await store.commit()
        return result


async def test_badge_uses_the_enrollment_valid_on_the_incident_date(stores, clock) -> None:
    d = await add_district(stores)
    tech = await add_staff(stores, "Technician")
    # The term ended a month before today but covered the January incident.
    await add_policy(stores, d.student_id, max_claims=2, term=(date(2025, 7, 1), date(2026, 1, 31)))
    covered = (await _open(stores, clock, tech, d.device_id, occurred=date(2026, 1, 20))).incident
    badge = await _badge(stores, clock, covered.id)
    assert (badge.state, badge.label, badge.detail) == (
        "active",
        "District Plan (2025-2026)",
        "Claim 1 of 2 this term",
    )
    after_lapse = await _open(stores, clock, tech, d.device_id, occurred=date(2026, 2, 1))
    assert (await _badge(stores, clock, after_lapse.incident.id)).state == "none"
    term_end = await _open(stores, clock, tech, d.device_id, occurred=date(2026, 1, 31))
    assert (await _badge(stores, clock, term_end.incident.id)).state == "active"


async def test_badge_before_the_enrollment_started_is_none(stores, clock) -> None:
    d = await add_district(stores)
    tech = await add_staff(stores, "Technician")
    await add_policy(stores, d.student_id, term=(date(2026, 2, 1), date(2026, 6, 30)))
    before = await _open(stores, clock, tech, d.device_id, occurred=date(2026, 1, 31))
    badge = await _badge(stores, clock, before.incident.id)
    assert (badge.state, badge.label) == ("none", "No Active Coverage")
    first_day = await _open(stores, clock, tech, d.device_id, occurred=date(2026, 2, 1))
    badge = await _badge(stores, clock, first_day.incident.id)
    assert (badge.state, badge.detail) == ("active", "Claim 1 this term")  # no claim cap


async def test_badge_without_student_or_without_enrollment_is_none(stores, clock) -> None:
    d = await add_district(stores)
    tech = await add_staff(stores, "Technician")
    plain = await _open(stores, clock, tech, d.device_id)
    assert (await _badge(stores, clock, plain.incident.id)).state == "none"
    async with stores() as store:
        spare = await store.devices.add(
            serial="SPARE-9", model="Dell 3100", kind="chromebook", building_id=None, asset_tag=None
        )
        spare_id = spare.id
        await store.commit()
    await add_policy(stores, d.student_id)
    orphan = await _open(stores, clock, tech, spare_id)
    assert (await _badge(stores, clock, orphan.incident.id)).state == "none"
    with pytest.raises(NotFound):
        await _badge(stores, clock, 999_999)


async def test_badge_counts_claims_and_shows_each_incident_its_own(stores, clock) -> None:
    d = await add_district(stores)
    tech = await add_staff(stores, "Technician")
    clerk = await add_staff(stores, "Billing Clerk")
    await add_policy(stores, d.student_id, copay_cents=2500, max_claims=2)
    first = (await _open(stores, clock, tech, d.device_id, occurred=date(2025, 9, 1))).incident
    second = (await _open(stores, clock, tech, d.device_id, occurred=date(2025, 11, 1))).incident
    third = (await _open(stores, clock, tech, d.device_id, occurred=date(2026, 2, 1))).incident

    assert (await _badge(stores, clock, third.id)).detail == "Claim 1 of 2 this term"
    first_invoice = (await _bill(stores, clock, tech, first.id)).invoice
    await _bill(stores, clock, tech, second.id)

    badge = await _badge(stores, clock, third.id)
    assert (badge.state, badge.detail) == ("exhausted", "Coverage exhausted (2 of 2 this term)")
    own = await _badge(stores, clock, first.id)
    assert (own.state, own.detail) == ("active", "Claim 1 of 2 this term")
    assert (await _badge(stores, clock, second.id)).detail == "Claim 2 of 2 this term"

    # Billed at full price past the cap: the third incident used no claim, still exhausted.
    over = (await _bill(stores, clock, tech, third.id)).invoice
    assert over.claim_enrollment_id is None and over.cap_reached
    assert (await _badge(stores, clock, third.id)).state == "exhausted"

    # Cancelling a claim frees its slot; the cancelled incident no longer shows it as its own.
    async with stores() as store:
        await cancel_invoice(ctx_for(store, clock), clerk, first_invoice.id, reason="Duplicate")
        await store.commit()
    freed = await _badge(stores, clock, first.id)
    assert (freed.state, freed.detail) == ("active", "Claim 2 of 2 this term")
