"""Device collection: a device is checked in (end of year or withdrawal), what is missing or
damaged is picked from the collection fee schedule, and one invoice bills it, all at once.

Only Collect Devices is needed, for the check-in and for the invoice it creates: the prices
come from the fee schedule, so nobody types an amount at the collection table.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any, Protocol

from workflows.clock import local_date
from workflows.devices import existing_device
from workflows.errors import ConflictError, NotFound, ValidationError
from workflows.fee_kinds import FeeKind
from workflows.i18n import N_, _
from workflows.invoices import InvoiceKind, IssueInvoice, applicable_fees, issue_invoice
from workflows.permissions import Actor, Permission, require
from workflows.ports import (
    Context,
    DeviceRecord,
    FeeItemRecord,
    InvoiceLineSpec,
    InvoiceRecord,
    StudentRecord,
)

COLLECTION_FEE_KIND = FeeKind.COLLECTION.value
COLLECTED_STATUS = "collected"
MAX_NOTE = 1000
MAX_CODE = 100


class CollectionReason(StrEnum):
    END_OF_YEAR = "end_of_year"
    WITHDRAWAL = "withdrawal"

    @property
    def label(self) -> str:
        return _(REASON_LABELS[self.value])

    @property
    def return_reason(self) -> str:
        """What the closed assignment says the device came back for."""
        return {
            "end_of_year": "collected: end of year",
            "withdrawal": "collected: withdrawal",
        }[self.value]


REASON_LABELS: dict[str, str] = {"end_of_year": N_("End of year"), "withdrawal": N_("Withdrawal")}


class CollectionRecord(Protocol):
    id: int
    device_id: int
    student_id: int | None
    reason: str
    missing: list[Any]
    note: str | None
    collected_by_id: int | None
    collected_at: datetime


class CollectionRecords(Protocol):
    """What collection needs from the store beyond `UnitOfWork` (storage.collections)."""

    async def device_by_code(self, code: str, *, lock: bool = False) -> DeviceRecord | None: ...
    async def find_collection_by_key(self, key: str) -> CollectionRecord | None: ...
    async def last_collection(self, device_id: int) -> CollectionRecord | None: ...
    async def reassigned_since(self, device_id: int, since: datetime) -> bool: ...
    async def invoice_for_collection(self, collection_id: int) -> InvoiceRecord | None: ...
    async def add_collection(
        self,
        *,
        device_id: int,
        student_id: int | None,
        reason: str,
        missing: list[dict[str, Any]],
        note: str | None,
        collected_by_id: int | None,
        idempotency_key: str | None,
    ) -> CollectionRecord: ...


# --- rules ------------------------------------------------------------------------------------


def collection_fees(items: Iterable[FeeItemRecord], device_model: str) -> list[FeeItemRecord]:
    """The items offered at collection: active fees of kind "collection", general ones and those
    for this device's model (the same model rule as incident fees; flagged fees never apply)."""
    offered = applicable_fees(items, device_model, (), FeeKind.COLLECTION)
    return sorted(offered, key=lambda i: (i.name.casefold(), i.id))


def chosen_items(offered: Sequence[FeeItemRecord], ids: Iterable[int]) -> list[FeeItemRecord]:
    """The picked items in schedule order, each once; an id not offered is refused."""
    by_id = {item.id: item for item in offered}
    wanted = set(ids)
    unknown = wanted - by_id.keys()
    if unknown:
        raise ValidationError(
            _(
                "One of the chosen items isn't on the collection fee schedule for this device; "
                "scan the device again."
            ),
            field="missing",
        )
    return [item for item in offered if item.id in wanted]


def missing_snapshot(items: Iterable[FeeItemRecord]) -> list[dict[str, Any]]:
    """What the collection keeps of each item, so later price or name changes alter nothing."""
    return [
        {"fee_item_id": i.id, "code": i.code, "name": i.name, "unit_cents": i.price_cents}
        for i in items
    ]


def collection_lines(items: Iterable[FeeItemRecord]) -> tuple[InvoiceLineSpec, ...]:
    return tuple(
        InvoiceLineSpec(
            description=i.name, kind=i.kind, unit_cents=i.price_cents, quantity=1, fee_item_id=i.id
        )
        for i in items
    )


def parse_reason(value: str | None) -> CollectionReason:
    """End of year unless withdrawal is chosen; anything else is refused."""
    text = (value or "").strip().lower().replace(" ", "_").replace("-", "_")
    if not text:
        return CollectionReason.END_OF_YEAR
    try:
        return CollectionReason(text)
    except ValueError:
        raise ValidationError(
            _("The reason is either end of year or withdrawal."), field="reason"
        ) from None


def clean_note(note: str | None) -> str | None:
    text = (note or "").strip()
    if len(text) > MAX_NOTE:
        raise ValidationError(
            _("Keep the note under {max} characters.", max=MAX_NOTE), field="note"
        )
    return text or None


def clean_code(code: str) -> str:
    """A scanned or typed asset tag or serial (scanners may add spaces or a line end)."""
    text = code.strip()
    if not text:
        raise ValidationError(_("Scan or type the asset tag or serial number."), field="device")
    if len(text) > MAX_CODE:
        raise ValidationError(_("That's too long for an asset tag or serial."), field="device")
    return text


def device_name(device: DeviceRecord) -> str:
    """How staff call a device at the table: its asset tag, else its serial."""
    return device.asset_tag or device.serial


def day_text(day: date) -> str:
    return f"{day:%b} {day.day}, {day.year}"


def already_collected_message(
    device: DeviceRecord, collected_on: date, student: StudentRecord | None
) -> str:
    if student is None:
        return _(
            "{device} was already checked in on {day}, and hasn't been issued to anyone since.",
            device=device_name(device),
            day=day_text(collected_on),
        )
    return _(
        "{device} was already checked in on {day} from {student}, and hasn't been issued to "
        "anyone since.",
        device=device_name(device),
        day=day_text(collected_on),
        student=f"{student.first_name} {student.last_name}",
    )


# --- use cases --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CollectionPreview:
    """What the technician sees after scanning: the device, who holds it, what may be missing."""

    device: DeviceRecord
    student: StudentRecord | None
    fees: tuple[FeeItemRecord, ...]


@dataclass(frozen=True)
class CollectDevice:
    device: str = ""  # asset tag or serial, as scanned
    device_id: int | None = None  # instead of `device`, when the device is already known
    reason: CollectionReason = CollectionReason.END_OF_YEAR
    fee_item_ids: tuple[int, ...] = ()
    note: str | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True)
class CollectionResult:
    collection: CollectionRecord
    device: DeviceRecord
    student: StudentRecord | None
    items: tuple[dict[str, Any], ...]  # the missing-items snapshot
    invoice: InvoiceRecord | None
    created: bool = True  # False: an earlier submission with the same key did this

    @property
    def unbilled(self) -> bool:
        """Items were marked missing but nobody held the device, so nobody was billed."""
        return bool(self.items) and self.student is None


async def _find_device(records: CollectionRecords, code: str, *, lock: bool) -> DeviceRecord:
    text = clean_code(code)
    device = await records.device_by_code(text, lock=lock)
    if device is None:
        raise NotFound(
            _('No device has the asset tag or serial "{text}".', text=text), field="device"
        )
    return device


async def _refuse_if_collected(
    ctx: Context, records: CollectionRecords, device: DeviceRecord
) -> None:
    previous = await records.last_collection(device.id)
    if previous is None or await records.reassigned_since(device.id, previous.collected_at):
        return
    student = (
        None if previous.student_id is None else await ctx.store.people.student(previous.student_id)
    )
    on = local_date(previous.collected_at, ctx.tz)
    raise ConflictError(already_collected_message(device, on, student), field="device")


async def _holder(ctx: Context, device: DeviceRecord) -> StudentRecord | None:
    holder_id = await ctx.store.devices.current_holder(device.id)
    return None if holder_id is None else await ctx.store.people.student(holder_id)


async def preview_collection(
    ctx: Context, records: CollectionRecords, actor: Actor, code: str
) -> CollectionPreview:
    """The scan step: refuses unknown and already collected devices before anything is picked."""
    require(actor, Permission.COLLECT_DEVICES)
    device = await _find_device(records, code, lock=False)
    await _refuse_if_collected(ctx, records, device)
    fees = collection_fees(await ctx.store.fee_items.active(), device.model)
    return CollectionPreview(device, await _holder(ctx, device), tuple(fees))


async def _earlier_result(
    ctx: Context, records: CollectionRecords, device: DeviceRecord, earlier: CollectionRecord
) -> CollectionResult:
    if earlier.device_id != device.id:
        raise ConflictError(_("That form was already used for another device; scan again."))
    student = (
        None if earlier.student_id is None else await ctx.store.people.student(earlier.student_id)
    )
    return CollectionResult(
        collection=earlier,
        device=device,
        student=student,
        items=tuple(earlier.missing),
        invoice=await records.invoice_for_collection(earlier.id),
        created=False,
    )


async def collect_device(
    ctx: Context, records: CollectionRecords, actor: Actor, cmd: CollectDevice
) -> CollectionResult:
    """Check the device in, close its assignment, and bill what is missing in one invoice.

    A repeated idempotency key returns the first result and changes nothing; a device already
    collected and not issued again since is refused.
    """
    require(actor, Permission.COLLECT_DEVICES)
    note = clean_note(cmd.note)
    store = ctx.store
    # The device's lock serialises two check-ins of the same device (and a double submit).
    if cmd.device_id is not None:
        device = await existing_device(ctx, cmd.device_id, lock=True)
    else:
        device = await _find_device(records, cmd.device, lock=True)
    if cmd.idempotency_key:
        earlier = await records.find_collection_by_key(cmd.idempotency_key)
        if earlier is not None:
            return await _earlier_result(ctx, records, device, earlier)
    await _refuse_if_collected(ctx, records, device)
    student = await _holder(ctx, device)
    offered = collection_fees(await store.fee_items.active(), device.model)
    items = chosen_items(offered, cmd.fee_item_ids)
    snapshot = missing_snapshot(items)
    collection = await records.add_collection(
        device_id=device.id,
        student_id=None if student is None else student.id,
        reason=cmd.reason.value,
        missing=snapshot,
        note=note,
        collected_by_id=actor.staff_id,
        idempotency_key=cmd.idempotency_key,
    )
    await store.devices.unassign(device.id, reason=cmd.reason.return_reason)
    before = {"status": device.status}
    device.status = COLLECTED_STATUS
    invoice: InvoiceRecord | None = None
    billable = sum(i.price_cents for i in items)
    if student is not None and billable > 0:
        issued = await issue_invoice(
            ctx,
            actor,
            IssueInvoice(
                student_id=student.id,
                kind=InvoiceKind.COLLECTION,
                lines=collection_lines(items),
                device_id=device.id,
                collection_id=collection.id,
                idempotency_key=f"collection:{collection.id}",
            ),
        )
        invoice = issued.invoice
    await store.activity.log(
        actor,
        "device",
        device.id,
        "collected",
        before=before,
        after={
            "status": COLLECTED_STATUS,
            "collection_id": collection.id,
            "student_id": None if student is None else student.id,
            "reason": cmd.reason.value,
            "missing": [i["code"] for i in snapshot],
            "invoice_id": None if invoice is None else invoice.id,
        },
        comment=note,
    )
    return CollectionResult(
        collection=collection,
        device=device,
        student=student,
        items=tuple(snapshot),
        invoice=invoice,
    )
