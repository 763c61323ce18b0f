"""Device replacement: the student moves to a new serial; each device keeps its own history."""

from __future__ import annotations

from dataclasses import dataclass

from workflows.errors import ConflictError, NotFound, ValidationError
from workflows.i18n import _
from workflows.permissions import Actor, Permission, require
from workflows.ports import Context, DeviceRecord

# A device in one of these states is out of circulation: nobody can be given it.
OUT_OF_SERVICE = ("replaced", "retired", "lost")


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


async def existing_device(ctx: Context, device_id: int, *, lock: bool = False) -> DeviceRecord:
    """The device (locked for the change when `lock`), or NotFound."""
    device = await ctx.store.devices.get(device_id, lock=lock)
    if device is None:
        raise NotFound(_("That device isn't in DeviceCare."), field="device")
    return device


async def check_replacement(ctx: Context, actor: Actor, cmd: ReplaceDevice) -> None:
    """The rules `replace_device` applies, checked without locking or writing: a form shows a
    broken rule next to its field, then replaces the device once it has answered."""
    require(actor, Permission.REPLACE_DEVICES)
    old = await existing_device(ctx, cmd.old_device_id)
    _old, _cmd, new = await _checked(ctx, old, cmd, lock=False)
    tag = (cmd.new_asset_tag or "").strip()
    if new is None and tag:
        holder = await ctx.store.devices.by_asset_tag(tag)
        if holder is not None:
            raise ConflictError(
                _(
                    "Asset tag {asset_tag} is already on device {serial}.",
                    asset_tag=holder.asset_tag,
                    serial=holder.serial,
                ),
                field="new_asset_tag",
            )


async def _checked(
    ctx: Context, old: DeviceRecord, cmd: ReplaceDevice, *, lock: bool
) -> tuple[int, str, DeviceRecord | None]:
    """(the student, the new serial, the new device when it exists) once the rules hold."""
    store = ctx.store
    student_id = await store.devices.current_holder(old.id)
    if student_id is None:
        raise ConflictError(_("Device {serial} isn't assigned to a student.", serial=old.serial))
    serial = cmd.new_serial.strip()
    if not serial:
        raise ValidationError(_("Enter the new device's serial number."), field="new_serial")
    if serial.casefold() == old.serial.casefold():
        raise ValidationError(_("The new serial is the same as the old one."), field="new_serial")
    new = await store.devices.by_serial(serial, lock=lock)
    if new is not None and await store.devices.current_holder(new.id) is not None:
        raise ConflictError(
            _("Device {serial} is already assigned to someone.", serial=new.serial),
            field="new_serial",
        )
    if new is not None and new.status in OUT_OF_SERVICE:
        raise ConflictError(
            _(
                "Device {serial} is {status} and can't be issued.",
                serial=new.serial,
                status=new.status,
            ),
            field="new_serial",
        )
    return student_id, serial, new


async def replace_device(ctx: Context, actor: Actor, cmd: ReplaceDevice) -> Replacement:
    require(actor, Permission.REPLACE_DEVICES)
    store = ctx.store
    old = await existing_device(ctx, cmd.old_device_id, lock=True)
    student_id, serial, new = await _checked(ctx, old, cmd, lock=True)
    if new is None:
        try:
            new = await store.devices.add(
                serial=serial,
                model=cmd.new_model or old.model,
                kind=getattr(old, "kind", "chromebook"),
                building_id=old.building_id,
                asset_tag=(cmd.new_asset_tag or "").strip() or None,
            )
        except ConflictError as exc:  # the asset tag is already on another device
            raise ConflictError(exc.message, field="new_asset_tag") from exc
    await store.devices.unassign(old.id, reason=cmd.reason)
    await store.devices.assign(new.id, student_id, reason=cmd.reason)
    before = {"status": old.status}
    old.status = "replaced"
    old.replaced_by_id = new.id
    new.status = "in_service"
    await store.activity.log(
        actor,
        "device",
        old.id,
        "replaced",
        before=before,
        after={"status": "replaced", "replaced_by_id": new.id, "student_id": student_id},
    )
    await store.activity.log(
        actor,
        "device",
        new.id,
        "issued_as_replacement",
        after={"replaces_id": old.id, "student_id": student_id},
    )
    return Replacement(old=old, new=new, student_id=student_id)


@dataclass(frozen=True)
class AssignSuggestedHolder:
    """Staff accept a source's most recent user as the device's holder. `shown_holder_id` is
    who held the device when the suggestion was shown: a holder changed since then is not
    overwritten by a stale button."""

    device_id: int
    student_id: int
    shown_holder_id: int | None
    source_label: str


@dataclass(frozen=True)
class HolderChange:
    device: DeviceRecord
    student_id: int
    previous_holder_id: int | None
    changed: bool  # False: the student already held it (a second click, a redelivery)


async def assign_suggested_holder(
    ctx: Context, actor: Actor, cmd: AssignSuggestedHolder
) -> HolderChange:
    """Who holds a device is device upkeep, like replacing it: the same permission. The
    suggestion is only ever applied by a person choosing it; a sync never assigns."""
    require(actor, Permission.REPLACE_DEVICES)
    store = ctx.store
    device = await store.devices.get(cmd.device_id, lock=True)
    if device is None:
        raise NotFound(_("That device isn't in DeviceCare any more."))
    holder_id = await store.devices.current_holder(device.id)
    if holder_id == cmd.student_id:
        return HolderChange(device, cmd.student_id, holder_id, changed=False)
    if device.status in OUT_OF_SERVICE:
        raise ConflictError(
            _(
                "Device {serial} is {status} and can't be assigned.",
                serial=device.serial,
                status=device.status,
            )
        )
    if holder_id != cmd.shown_holder_id:
        raise ConflictError(
            _(
                "Who holds {serial} changed since this was shown; look the device up again with "
                "/device.",
                serial=device.serial,
            )
        )
    student = await store.people.student(cmd.student_id)
    if student is None:
        raise NotFound(_("That student isn't in DeviceCare any more."))
    reason = f"{cmd.source_label}'s most recent user"
    if holder_id is not None:
        await store.devices.unassign(device.id, reason=f"reassigned to {cmd.source_label}'s user")
    await store.devices.assign(device.id, student.id, reason=reason)
    await store.activity.log(
        actor,
        "device",
        device.id,
        "holder_assigned",
        before={"student_id": holder_id},
        after={"student_id": student.id, "from": reason},
    )
    return HolderChange(device, student.id, holder_id, changed=True)
