"""A family's bills put in the store through the real workflows, for the family page tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from storage import models as m
from storage.blobs import BlobStore, sha256_hex
from storage.notices import queue_guardian_notice
from storage.uow import UnitOfWorkFactory
from tests.builders import District, add_district, add_policy, add_staff, add_student_with_device
from workflows.clock import FixedClock
from workflows.incidents import OpenIncident, open_incident
from workflows.invoices import CreateInvoice, CustomLine, create_invoice_for_incident
from workflows.overrides import decide_cap_override, request_cap_override
from workflows.payments import PaymentMethod, RecordPayment, record_payment
from workflows.permissions import Actor
from workflows.ports import Context, InvoiceRecord

TZ = ZoneInfo("America/Chicago")
PNG = b"\x89PNG\r\n\x1a\n" + b"family-page-test-photo"


@dataclass
class Family:
    district: District
    tech: Actor
    clerk: Actor

    @property
    def guardian_id(self) -> int:
        return self.district.guardian_id


async def add_family(stores: UnitOfWorkFactory) -> Family:
    d = await add_district(stores)
    return Family(
        d, await add_staff(stores, "Technician"), await add_staff(stores, "Billing Clerk")
    )


async def add_incident(
    stores: UnitOfWorkFactory, clock: FixedClock, actor: Actor, device_id: int
) -> int:
    async with stores() as store:
        opened = await open_incident(
            Context(store, clock, TZ),
            actor,
            OpenIncident(
                device_id=device_id,
                occurred_on=date(2026, 2, 20),
                flags=("screen",),
                description="Cracked screen",
            ),
        )
        await store.commit()
        return opened.incident.id


async def add_invoice(
    stores: UnitOfWorkFactory,
    clock: FixedClock,
    actor: Actor,
    device_id: int,
    *,
    lines: tuple[CustomLine, ...] = (CustomLine("Screen replacement", 12500),),
) -> InvoiceRecord:
    incident_id = await add_incident(stores, clock, actor, device_id)
    async with stores() as store:
        created = await create_invoice_for_incident(
            Context(store, clock, TZ),
            actor,
            CreateInvoice(incident_id=incident_id, custom_lines=lines),
        )
        await store.commit()
        return created.invoice


async def pay(
    stores: UnitOfWorkFactory,
    clock: FixedClock,
    clerk: Actor,
    invoice_id: int,
    amount_cents: int,
    *,
    method: PaymentMethod = PaymentMethod.CHECK,
    reference: str | None = "1042",
) -> None:
    async with stores() as store:
        await record_payment(
            Context(store, clock, TZ),
            clerk,
            RecordPayment(
                invoice_id=invoice_id,
                amount_cents=amount_cents,
                method=method,
                idempotency_key=f"test:{invoice_id}:{amount_cents}:{method}",
                reference=reference,
                received_on=date(2026, 3, 1),
            ),
        )
        await store.commit()


async def add_override_invoice(
    stores: UnitOfWorkFactory, clock: FixedClock, family: Family
) -> tuple[InvoiceRecord, InvoiceRecord]:
    """A first claim on a one-claim policy, then a second incident past the cap that a
    director approves an override for. Returns (first, overridden)."""
    d = family.district
    await add_policy(
        stores,
        d.student_id,
        name="District Plan",
        copay_cents=2500,
        max_claims=1,
        allow_override=True,
    )
    first = await add_invoice(stores, clock, family.tech, d.device_id)
    second = await add_invoice(stores, clock, family.tech, d.device_id)
    director = await add_staff(stores, "Finance Director")
    async with stores() as store:
        request = await request_cap_override(
            Context(store, clock, TZ), family.tech, second.incident_id or 0, reason="Goodwill"
        )
        await store.commit()
    async with stores() as store:
        decision = await decide_cap_override(
            Context(store, clock, TZ), director, request.id, approve=True
        )
        assert decision.invoice is not None
        await store.commit()
        return first, decision.invoice


async def add_other_family(stores: UnitOfWorkFactory) -> tuple[int, int]:
    """A second household: (guardian id, student device id)."""
    student_id, device_id = await add_student_with_device(
        stores, sis_id="S-OTHER", serial="OTHER01"
    )
    async with stores() as store:
        guardian = m.Guardian(first_name="Olga", last_name="Other", email="olga@example.org")
        store.session.add(guardian)
        await store.session.flush()
        store.session.add(m.Guardianship(guardian_id=guardian.id, student_id=student_id))
        await store.commit()
        return guardian.id, device_id


async def add_photo(
    stores: UnitOfWorkFactory, blobs: BlobStore, device_id: int, incident_id: int | None
) -> int:
    key = await blobs.put(PNG, "image/png")
    async with stores() as store:
        photo = m.Photo(
            device_id=device_id,
            incident_id=incident_id,
            blob_key=key,
            content_type="image/png",
            size_bytes=len(PNG),
            width=40,
            height=30,
            sha256=sha256_hex(PNG),
            source="slack",
            created_at=datetime(2026, 2, 21, tzinfo=UTC),
        )
        store.session.add(photo)
        await store.session.flush()
        await store.commit()
        return photo.id


async def allow_photos(stores: UnitOfWorkFactory, allowed: bool = True) -> None:
    async with stores() as store:
        settings = await store.settings.get()
        settings.family_page_photos = allowed
        await store.commit()


async def add_notice(stores: UnitOfWorkFactory, guardian_id: int, invoice_id: int | None) -> int:
    async with stores() as store:
        guardian = await store.session.get(m.Guardian, guardian_id)
        assert guardian is not None
        notice = await queue_guardian_notice(
            store.session,
            store.clock.now(),
            guardian=guardian,
            template="invoice_issued",
            dedupe_key=f"test-notice:{invoice_id}:{guardian_id}",
            context={},
            mail_domain="example.org",
            invoice_id=invoice_id,
        )
        assert notice is not None
        await store.commit()
        return notice.id
