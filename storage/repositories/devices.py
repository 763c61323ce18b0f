"""Devices, who holds them, and the whole record `/device` shows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update

from storage import models as m
from storage.device_search import DeviceMatch, search_devices
from storage.repositories.base import SqlRepository
from workflows.errors import ConflictError


@dataclass(frozen=True)
class DeviceHistory:
    """Everything `/device` shows about one device, read in one transaction."""

    device: m.Device
    building: m.Building | None
    holder: m.Student | None
    assignments: list[tuple[m.DeviceAssignment, m.Student]]  # oldest first
    incidents: list[tuple[m.Incident, list[m.Invoice]]]  # newest first
    notes: list[m.Note]  # newest first, at most `recent_notes`
    note_count: int
    photo_count: int
    replaced_by: m.Device | None
    replaces: list[m.Device]


class SqlDeviceRepository(SqlRepository):
    async def get(self, device_id: int, *, lock: bool = False) -> m.Device | None:
        return await self._get(m.Device, device_id, lock)

    async def by_serial(self, serial: str, *, lock: bool = False) -> m.Device | None:
        stmt = select(m.Device).where(m.Device.serial == m.normalize_serial(serial))
        if lock and self._for_update:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def by_asset_tag(self, asset_tag: str) -> m.Device | None:
        stmt = select(m.Device).where(func.lower(m.Device.asset_tag) == asset_tag.strip().lower())
        return (await self.session.execute(stmt.limit(1))).scalar_one_or_none()

    async def building(self, building_id: int) -> m.Building | None:
        return await self.session.get(m.Building, building_id)

    async def add(
        self,
        *,
        serial: str,
        model: str,
        kind: str,
        building_id: int | None,
        asset_tag: str | None,
    ) -> m.Device:
        if asset_tag is not None:
            # Checked here so a reused tag is a message to the user, not an IntegrityError.
            stmt = select(m.Device).where(func.lower(m.Device.asset_tag) == asset_tag.lower())
            holder = (await self.session.execute(stmt.limit(1))).scalar_one_or_none()
            if holder is not None:
                raise ConflictError(
                    f"Asset tag {holder.asset_tag} is already on device {holder.serial}.",
                    field="asset_tag",
                )
        device = m.Device(
            serial=m.normalize_serial(serial),
            model=model,
            kind=kind,
            building_id=building_id,
            asset_tag=asset_tag,
            status="in_service",
            created_at=self._now(),
        )
        return await self._added(device)

    async def current_holder(self, device_id: int) -> int | None:
        stmt = select(m.DeviceAssignment.student_id).where(
            m.DeviceAssignment.device_id == device_id, m.DeviceAssignment.returned_at.is_(None)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def holder_at(self, device_id: int, at: datetime) -> int | None:
        """Who had the device at that moment (the assignment history, not today's holder)."""
        stmt = (
            select(m.DeviceAssignment.student_id)
            .where(
                m.DeviceAssignment.device_id == device_id,
                m.DeviceAssignment.assigned_at <= at,
                (m.DeviceAssignment.returned_at.is_(None)) | (m.DeviceAssignment.returned_at > at),
            )
            .order_by(m.DeviceAssignment.assigned_at.desc())
            .limit(1)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def assign(self, device_id: int, student_id: int, *, reason: str) -> None:
        self.session.add(
            m.DeviceAssignment(
                device_id=device_id,
                student_id=student_id,
                assigned_at=self._now(),
                reason=reason,
            )
        )
        await self.session.flush()

    async def unassign(self, device_id: int, *, reason: str) -> None:
        await self.session.execute(
            update(m.DeviceAssignment)
            .where(
                m.DeviceAssignment.device_id == device_id,
                m.DeviceAssignment.returned_at.is_(None),
            )
            .values(returned_at=self._now(), return_reason=reason)
        )

    async def search(self, text: str, *, limit: int) -> list[DeviceMatch]:
        """The one device search (the type-ahead and `/device`); see storage.device_search."""
        return await search_devices(self.session, text, limit=limit)

    async def history(self, device_id: int, *, recent_notes: int = 5) -> DeviceHistory | None:
        """A device's lifetime record: holders, replacements, incidents with their invoices,
        latest notes and how many photos it has."""
        device = await self.get(device_id)
        if device is None:
            return None
        building = None if device.building_id is None else await self.building(device.building_id)
        assignments = [
            (row, student)
            for row, student in (
                await self.session.execute(
                    select(m.DeviceAssignment, m.Student)
                    .join(m.Student, m.Student.id == m.DeviceAssignment.student_id)
                    .where(m.DeviceAssignment.device_id == device_id)
                    .order_by(m.DeviceAssignment.assigned_at, m.DeviceAssignment.id)
                )
            ).all()
        ]
        holder = next((s for a, s in assignments if a.returned_at is None), None)
        incidents = list(
            (
                await self.session.execute(
                    select(m.Incident)
                    .where(m.Incident.device_id == device_id)
                    .order_by(m.Incident.occurred_on.desc(), m.Incident.id.desc())
                )
            ).scalars()
        )
        invoices: dict[int, list[m.Invoice]] = {i.id: [] for i in incidents}
        if incidents:
            stmt = (
                select(m.Invoice)
                .where(m.Invoice.incident_id.in_(list(invoices)))
                .order_by(m.Invoice.id)
            )
            for invoice in (await self.session.execute(stmt)).scalars():
                if invoice.incident_id is not None:
                    invoices[invoice.incident_id].append(invoice)
        note_count = int(
            (
                await self.session.execute(
                    select(func.count(m.Note.id)).where(m.Note.device_id == device_id)
                )
            ).scalar_one()
        )
        notes = list(
            (
                await self.session.execute(
                    select(m.Note)
                    .where(m.Note.device_id == device_id)
                    .order_by(m.Note.created_at.desc(), m.Note.id.desc())
                    .limit(recent_notes)
                )
            ).scalars()
        )
        photo_count = int(
            (
                await self.session.execute(
                    select(func.count(m.Photo.id)).where(m.Photo.device_id == device_id)
                )
            ).scalar_one()
        )
        replaced_by = (
            None if device.replaced_by_id is None else await self.get(device.replaced_by_id)
        )
        replaces = list(
            (
                await self.session.execute(
                    select(m.Device)
                    .where(m.Device.replaced_by_id == device_id)
                    .order_by(m.Device.id)
                )
            ).scalars()
        )
        return DeviceHistory(
            device=device,
            building=building,
            holder=holder,
            assignments=assignments,
            incidents=[(i, invoices[i.id]) for i in incidents],
            notes=notes,
            note_count=note_count,
            photo_count=photo_count,
            replaced_by=replaced_by,
            replaces=replaces,
        )
