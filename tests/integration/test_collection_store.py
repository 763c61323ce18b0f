"""Device collection through the real store (SQLite and PostgreSQL): check-in, the one invoice,
idempotency, refusals, and the money split adding up after every scenario."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from storage import models as m
from storage.collections import Collections, collections_for_device
from storage.uow import UnitOfWorkFactory
from tests.builders import T0, add_collection_fees, add_district, add_staff
from workflows.adjustments import apply_waiver
from workflows.clock import FixedClock
from workflows.collection import (
    CollectDevice,
    CollectionReason,
    CollectionResult,
    collect_device,
    preview_collection,
)
from workflows.errors import ConflictError, NotFound, PermissionDenied, ValidationError
from workflows.ledger import split_money
from workflows.payments import PaymentMethod, RecordPayment, record_payment
from workflows.permissions import Actor
from workflows.ports import Context

TZ = ZoneInfo("America/Chicago")


async def _collect(
    stores: UnitOfWorkFactory, clock: FixedClock, actor: Actor, cmd: CollectDevice
) -> CollectionResult:
    async with stores() as store:
        result = await collect_device(Context(store, clock, TZ), Collections(store), actor, cmd)
        await store.commit()
        return result


async def _count(stores: UnitOfWorkFactory, model: type[m.Base]) -> int:
    async with stores() as store:
        result = int(
            (await store.session.execute(select(func.count()).select_from(model))).scalar_one()
        )
        await store.commit()
        return result


async def _all_invoices_add_up(stores: UnitOfWorkFactory) -> None:
    async with stores() as store:
        for invoice in (await store.session.execute(select(m.Invoice))).scalars():
            assert split_money(invoice).adds_up(), invoice.number
        await store.commit()


async def test_missing_items_make_one_invoice_linked_to_device_student_and_collection(
    stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    d = await add_district(stores)
    fees = await add_collection_fees(stores)
    tech = await add_staff(stores, "Technician")

    result = await _collect(
        stores,
        clock,
        tech,
        CollectDevice(
            device="lms-0001",  # asset tags match in any case
            fee_item_ids=(fees.charger_id, fees.keys_id),
            note="Charger never came back",
            idempotency_key="k1",
        ),
    )

    assert result.created and result.invoice is not None and not result.unbilled
    assert result.student is not None and result.student.id == d.student_id
    async with stores() as store:
        invoice = await store.session.get(m.Invoice, result.invoice.id)
        assert invoice is not None
        assert (invoice.kind, invoice.student_id, invoice.device_id) == (
            "collection",
            d.student_id,
            d.device_id,
        )
        assert invoice.collection_id == result.collection.id
        assert invoice.incident_id is None
        assert [(ln.description, ln.unit_cents, ln.fee_item_id) for ln in invoice.lines] == [
            ("Charger", 3500, fees.charger_id),
            ("Keyboard keys", 1500, fees.keys_id),
        ]
        assert (invoice.subtotal_cents, invoice.total_cents, invoice.status) == (
            5000,
            5000,
            "unpaid",
        )
        assert invoice.created_by_id == tech.staff_id
        assert split_money(invoice).adds_up()

        collection = await store.session.get(m.DeviceCollection, result.collection.id)
        assert collection is not None
        assert collection.reason == "end_of_year"
        assert collection.student_id == d.student_id
        assert collection.collected_by_id == tech.staff_id
        assert collection.note == "Charger never came back"
        assert collection.missing == [
            {
                "fee_item_id": fees.charger_id,
                "code": "c-charger",
                "name": "Charger",
                "unit_cents": 3500,
            },
            {
                "fee_item_id": fees.keys_id,
                "code": "c-keys",
                "name": "Keyboard keys",
                "unit_cents": 1500,
            },
        ]

        notices = (
            (await store.session.execute(select(m.Notice).where(m.Notice.invoice_id == invoice.id)))
            .scalars()
            .all()
        )
        assert [n.template for n in notices] == ["invoice_issued"]

        assert await store.devices.current_holder(d.device_id) is None
        assignment = (
            await store.session.execute(
                select(m.DeviceAssignment).where(m.DeviceAssignment.device_id == d.device_id)
            )
        ).scalar_one()
        assert assignment.returned_at == clock.now()
        assert assignment.return_reason == "collected: end of year"
        device = await store.session.get(m.Device, d.device_id)
        assert device is not None and device.status == "collected"

        device_log = await store.activity.for_entity("device", d.device_id)
        assert [e.action for e in device_log] == ["collected"]
        assert device_log[0].after is not None
        assert device_log[0].after["invoice_id"] == invoice.id
        assert device_log[0].after["missing"] == ["c-charger", "c-keys"]
        assert [e.action for e in await store.activity.for_entity("invoice", invoice.id)] == [
            "created"
        ]

        record = await collections_for_device(store.session, d.device_id)
        assert [(e.student_name, e.collected_by, e.invoice_number) for e in record] == [
            ("Ana Rivera", "Technician Person", invoice.number)
        ]
        assert record[0].invoice_total_cents == 5000
        await store.commit()
    await _all_invoices_add_up(stores)


async def test_nothing_missing_checks_in_without_an_invoice(
    stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    d = await add_district(stores)
    await add_collection_fees(stores)
    desk = await add_staff(stores, "Front Desk")

    result = await _collect(
        stores, clock, desk, CollectDevice(device="5cd1234xyz", reason=CollectionReason.WITHDRAWAL)
    )

    assert result.invoice is None and result.items == () and not result.unbilled
    assert await _count(stores, m.Invoice) == 0
    assert await _count(stores, m.Notice) == 0
    async with stores() as store:
        assert await store.devices.current_holder(d.device_id) is None
        collection = await store.session.get(m.DeviceCollection, result.collection.id)
        assert collection is not None and collection.reason == "withdrawal"
        record = await collections_for_device(store.session, d.device_id)
        assert [e.invoice_number for e in record] == [None]
        await store.commit()


async def test_a_repeated_key_returns_the_first_result_and_writes_nothing_twice(
    stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    d = await add_district(stores)
    fees = await add_collection_fees(stores)
    tech = await add_staff(stores, "Technician")
    cmd = CollectDevice(device="LMS-0001", fee_item_ids=(fees.case_id,), idempotency_key="slack:1")

    first = await _collect(stores, clock, tech, cmd)
    clock.advance(seconds=5)
    again = await _collect(stores, clock, tech, cmd)

    assert not again.created
    assert again.collection.id == first.collection.id
    assert again.invoice is not None and first.invoice is not None
    assert again.invoice.id == first.invoice.id
    assert again.student is not None and again.student.id == d.student_id
    assert again.items == first.items
    assert await _count(stores, m.DeviceCollection) == 1
    assert await _count(stores, m.Invoice) == 1
    assert await _count(stores, m.Notice) == 1
    async with stores() as store:
        assert [e.action for e in await store.activity.for_entity("device", d.device_id)] == [
            "collected"
        ]
        await store.commit()
    await _all_invoices_add_up(stores)


async def test_an_already_collected_device_is_refused_until_issued_again(
    stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    d = await add_district(stores)
    await add_collection_fees(stores)
    tech = await add_staff(stores, "Technician")
    await _collect(stores, clock, tech, CollectDevice(device="LMS-0001", idempotency_key="a"))

    clock.advance(hours=1)
    with pytest.raises(ConflictError) as refused:
        await _collect(stores, clock, tech, CollectDevice(device="LMS-0001", idempotency_key="b"))
    assert "already checked in on Mar 2, 2026 from Ana Rivera" in refused.value.message
    async with stores() as store:
        with pytest.raises(ConflictError):
            await preview_collection(
                Context(store, clock, TZ), Collections(store), tech, "LMS-0001"
            )
        await store.commit()
    assert await _count(stores, m.DeviceCollection) == 1

    # Issued again in August: it can be collected again next June.
    clock.advance(days=1)
    async with stores() as store:
        await store.devices.assign(d.device_id, d.student_id, reason="new school year")
        await store.commit()
    clock.advance(days=1)
    second = await _collect(
        stores, clock, tech, CollectDevice(device="LMS-0001", idempotency_key="c")
    )
    assert second.created and second.student is not None
    async with stores() as store:
        assert len(await collections_for_device(store.session, d.device_id)) == 2
        await store.commit()


async def test_a_device_nobody_holds_is_checked_in_but_nothing_is_billed(
    stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    await add_district(stores)
    fees = await add_collection_fees(stores)
    tech = await add_staff(stores, "Technician")
    async with stores() as store:
        spare = m.Device(
            serial="SPARE1", asset_tag="LMS-SPARE", model="HP Chromebook 11 G9", created_at=T0
        )
        store.session.add(spare)
        await store.session.flush()
        spare_id = spare.id
        await store.commit()

    async with stores() as store:
        preview = await preview_collection(
            Context(store, clock, TZ), Collections(store), tech, "LMS-SPARE"
        )
        assert preview.student is None
        assert [f.name for f in preview.fees] == ["Case", "Charger", "Keyboard keys"]
        await store.commit()

    result = await _collect(
        stores, clock, tech, CollectDevice(device="LMS-SPARE", fee_item_ids=(fees.charger_id,))
    )
    assert result.student is None and result.invoice is None and result.unbilled
    assert await _count(stores, m.Invoice) == 0
    async with stores() as store:
        collection = await store.session.get(m.DeviceCollection, result.collection.id)
        assert collection is not None and collection.student_id is None
        assert [i["code"] for i in collection.missing] == ["c-charger"]
        device = await store.session.get(m.Device, spare_id)
        assert device is not None and device.status == "collected"
        await store.commit()


async def test_refusals_change_nothing(stores: UnitOfWorkFactory, clock: FixedClock) -> None:
    d = await add_district(stores)
    fees = await add_collection_fees(stores)
    clerk = await add_staff(stores, "Billing Clerk")
    tech = await add_staff(stores, "Technician")

    with pytest.raises(PermissionDenied) as denied:
        await _collect(
            stores, clock, clerk, CollectDevice(device="LMS-0001", fee_item_ids=(fees.charger_id,))
        )
    assert "Collect Devices" in denied.value.message
    with pytest.raises(NotFound) as unknown:
        await _collect(stores, clock, tech, CollectDevice(device="NOPE-9"))
    assert unknown.value.field == "device"
    with pytest.raises(ValidationError) as other_model:  # the stylus is for iPads only
        await _collect(
            stores, clock, tech, CollectDevice(device="LMS-0001", fee_item_ids=(fees.stylus_id,))
        )
    assert other_model.value.field == "missing"
    with pytest.raises(ValidationError):  # an incident part is not a collection fee
        await _collect(
            stores, clock, tech, CollectDevice(device="LMS-0001", fee_item_ids=(d.fee_screen_id,))
        )

    assert await _count(stores, m.DeviceCollection) == 0
    assert await _count(stores, m.Invoice) == 0
    async with stores() as store:
        assert await store.devices.current_holder(d.device_id) == d.student_id
        device = await store.session.get(m.Device, d.device_id)
        assert device is not None and device.status == "in_service"
        await store.commit()


async def test_collection_invoice_reconciles_after_payment_and_waiver(
    stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    await add_district(stores)
    fees = await add_collection_fees(stores)
    tech = await add_staff(stores, "Technician")
    director = await add_staff(stores, "Finance Director")
    result = await _collect(
        stores,
        clock,
        tech,
        CollectDevice(device="LMS-0001", fee_item_ids=(fees.charger_id, fees.case_id)),
    )
    assert result.invoice is not None
    invoice_id = result.invoice.id
    await _all_invoices_add_up(stores)

    async with stores() as store:
        await record_payment(
            Context(store, clock, TZ),
            director,
            RecordPayment(invoice_id, 2000, PaymentMethod.CASH, idempotency_key="pay-1"),
        )
        await store.commit()
    await _all_invoices_add_up(stores)
    async with stores() as store:
        invoice = await store.invoices.get(invoice_id, lock=True)
        assert invoice is not None
        await apply_waiver(
            Context(store, clock, TZ), director, invoice, 4000, "Charger found later"
        )
        await store.commit()
    async with stores() as store:
        invoice = await store.invoices.get(invoice_id)
        assert invoice is not None
        split = split_money(invoice)
        assert (split.billed, split.collected, split.waived, split.outstanding) == (
            6000,
            2000,
            4000,
            0,
        )
        assert invoice.status == "paid"
        await store.commit()
    await _all_invoices_add_up(stores)


async def test_the_demo_district_offers_collection_fees(
    stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    from storage.demo import load_demo

    async with stores() as store:
        await load_demo(store.session, clock, "America/Chicago")
        await store.commit()
    tech = await add_staff(stores, "Technician")
    async with stores() as store:
        ctx, records = Context(store, clock, TZ), Collections(store)
        chromebook = await preview_collection(ctx, records, tech, "DEMO-AT1001")
        ipad = await preview_collection(ctx, records, tech, "demo-at1003")
        await store.commit()
    assert chromebook.student is not None and chromebook.student.first_name == "Ana"
    assert "Charger" in [f.name for f in chromebook.fees]
    assert "Stylus" not in [f.name for f in chromebook.fees]
    assert "Stylus" in [f.name for f in ipad.fees]
    async with stores() as store:  # a second run adds nothing
        await load_demo(store.session, clock, "America/Chicago")
        stmt = select(func.count()).select_from(m.FeeItem).where(m.FeeItem.kind == "collection")
        assert (await store.session.execute(stmt)).scalar_one() == 6
        await store.commit()
