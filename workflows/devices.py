"""Device replacement: the student moves to a new serial; each device keeps its own history."""

from __future__ import annotations

from dataclasses import dataclass

from workflows.errors import ConflictError, NotFound, ValidationError
from workflows.permissions import Actor, Permission, require
from workflows.ports import Context, DeviceRecord


@dataclass(frozen=True)
class ReplaceDevice:
    old_device_id: int
    new_serial: str
    new_asset_tag: str | None = None
    new_model: str | None = None
    reason: str = "replacement"


@dataclass(frozen=True)
class Replacement:
    old: DeviceRecord
    new: DeviceRecord
    student_id: int


async def replace_device(ctx: Context, actor: Actor, cmd: ReplaceDevice) -> Replacement:
    require(actor, Permission.REPLACE_DEVICES)
    store = ctx.store
    old = await store.get_device(cmd.old_device_id, lock=True)
    if old is None:
        raise NotFound("That device isn't in DeviceCare.", field="device")
    student_id = await store.current_holder(old.id)
    if student_id is None:
        raise ConflictError(f"Device {old.serial} isn't assigned to a student.")
    serial = cmd.new_serial.strip()
    if not serial:
        raise ValidationError("Enter the new device's serial number.", field="new_serial")
    if serial.casefold() == old.serial.casefold():
        raise ValidationError("The new serial is the same as the old one.", field="new_serial")
    new = await store.get_device_by_serial(serial, lock=True)
    if new is None:
        try:
            new = await store.add_device(
                serial=serial,
                model=cmd.new_model or old.model,
                kind=getattr(old, "kind", "chromebook"),
                building_id=old.building_id,
                asset_tag=(cmd.new_asset_tag or "").strip() or None,
            )
        except ConflictError as exc:  # the asset tag is already on another device
            raise ConflictError(exc.message, field="new_asset_tag") from exc
    elif await store.current_holder(new.id) is not None:
        raise ConflictError(
            f"Device {new.serial} is already assigned to someone.", field="new_serial"
        )
    elif new.status in ("replaced", "retired", "lost"):
        raise ConflictError(
            f"Device {new.serial} is {new.status} and can't be issued.", field="new_serial"
        )
    await store.return_device(old.id, reason=cmd.reason)
    await store.assign_device(new.id, student_id, reason=cmd.reason)
    before = {"status": old.status}
    old.status = "replaced"
    old.replaced_by_id = new.id
    new.status = "in_service"
    await store.log(
        actor,
        "device",
        old.id,
        "replaced",
        before=before,
        after={"status": "replaced", "replaced_by_id": new.id, "student_id": student_id},
    )
    await store.log(
        actor,
        "device",
        new.id,
        "issued_as_replacement",
        after={"replaces_id": old.id, "student_id": student_id},
    )
    return Replacement(old=old, new=new, student_id=student_id)
