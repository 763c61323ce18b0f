"""Device collections in the store: what `workflows.collection` needs, and the device record's
list of check-ins (`collections_for_device`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from storage import models as m
from storage.uow import SqlUnitOfWork


class Collections:
    """Collection queries and changes, in the transaction of the `SqlUnitOfWork` it wraps."""

    def __init__(self, store: SqlUnitOfWork) -> None:
        self.store = store
        self.session = store.session
        self._for_update = store.session.bind is not None and (
            store.session.bind.dialect.name != "sqlite"
        )

    async def device_by_code(self, code: str, *, lock: bool = False) -> m.Device | None:
        """The device with this asset tag (any case) or, failing that, this serial."""
        text = code.strip()
        by_tag = select(m.Device).where(func.lower(m.Device.asset_tag) == text.lower())
        by_serial = select(m.Device).where(m.Device.serial == m.normalize_serial(text))
        for stmt in (by_tag, by_serial):
            if lock and self._for_update:
                stmt = stmt.with_for_update()
            device = (await self.session.execute(stmt.limit(1))).scalar_one_or_none()
            if device is not None:
                return device
        return None

    async def find_collection_by_key(self, key: str) -> m.DeviceCollection | None:
        stmt = select(m.DeviceCollection).where(m.DeviceCollection.idempotency_key == key)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def last_collection(self, device_id: int) -> m.DeviceCollection | None:
        stmt = (
            select(m.DeviceCollection)
            .where(m.DeviceCollection.device_id == device_id)
            .order_by(m.DeviceCollection.collected_at.desc(), m.DeviceCollection.id.desc())
            .limit(1)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def reassigned_since(self, device_id: int, since: datetime) -> bool:
        """Issued again after `since`: a collection closes the open assignment, so any open
        one, or one that started later, means the device went back out."""
        stmt = select(
            exists().where(
                m.DeviceAssignment.device_id == device_id,
                or_(
                    m.DeviceAssignment.returned_at.is_(None),
                    m.DeviceAssignment.assigned_at > since,
                ),
            )
        )
        return bool((await self.session.execute(stmt)).scalar_one())

    async def invoice_for_collection(self, collection_id: int) -> m.Invoice | None:
        stmt = (
            select(m.Invoice)
            .where(m.Invoice.collection_id == collection_id)
            .order_by(m.Invoice.id)
            .limit(1)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

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
    ) -> m.DeviceCollection:
        row = m.DeviceCollection(
            device_id=device_id,
            student_id=student_id,
            reason=reason,
            missing=missing,
            note=note,
            collected_by_id=collected_by_id,
            collected_at=self.store.clock.now(),
            idempotency_key=idempotency_key,
        )
        self.session.add(row)
        await self.session.flush()
        return row


@dataclass(frozen=True)
class CollectionEntry:
    """One check-in as the device record shows it."""

    collection: m.DeviceCollection
    student_name: str | None
    collected_by: str | None
    invoice_number: str | None
    invoice_total_cents: int | None
    invoice_status: str | None


async def collections_for_device(session: AsyncSession, device_id: int) -> list[CollectionEntry]:
    """A device's check-ins, newest first, with who returned it, who took it and the invoice."""
    collector = aliased(m.Staff)
    stmt = (
        select(
            m.DeviceCollection,
            m.Student.first_name,
            m.Student.last_name,
            collector.display_name,
            m.Invoice.number,
            m.Invoice.total_cents,
            m.Invoice.status,
        )
        .outerjoin(m.Student, m.Student.id == m.DeviceCollection.student_id)
        .outerjoin(collector, collector.id == m.DeviceCollection.collected_by_id)
        .outerjoin(m.Invoice, m.Invoice.collection_id == m.DeviceCollection.id)
        .where(m.DeviceCollection.device_id == device_id)
        .order_by(m.DeviceCollection.collected_at.desc(), m.DeviceCollection.id.desc())
    )
    entries: list[CollectionEntry] = []
    for row, first, last, by, number, total, status in (await session.execute(stmt)).all():
        entries.append(
            CollectionEntry(
                collection=row,
                student_name=None if first is None else f"{first} {last}".strip(),
                collected_by=by,
                invoice_number=number,
                invoice_total_cents=total,
                invoice_status=status,
            )
        )
    return entries
