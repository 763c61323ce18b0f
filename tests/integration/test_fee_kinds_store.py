"""Fee schedule kinds through the real store (SQLite and PostgreSQL): each form offers only its
kind, forged ids of another kind are refused, items are added and re-kinded with a log entry,
the database refuses an unknown kind, and migration 0017 maps the old kinds."""

from __future__ import annotations

import asyncio
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from storage import models as m
from storage.collections import Collections
from storage.db import create_engine
from storage.fee_item_store import SqlFeeItemStore
from storage.migrate import downgrade, upgrade
from storage.uow import UnitOfWorkFactory
from tests.builders import add_collection_fees, add_district, add_staff
from workflows.clock import FixedClock
from workflows.collection import preview_collection
from workflows.errors import PermissionDenied, ValidationError
from workflows.fee_items import FeeItemChange, list_fee_items, set_fee_item
from workflows.fee_kinds import FeeKind
from workflows.invoices import CreateInvoice, applicable_fees, create_invoice_for_incident
from workflows.ports import Context

TZ = ZoneInfo("America/Chicago")


async def _open_incident(stores: UnitOfWorkFactory, device_id: int, student_id: int) -> int:
    async with stores() as store:
        incident = m.Incident(
            device_id=device_id,
            student_id=student_id,
            occurred_on=store.clock.now().date(),
            description="Dropped",
            opened_at=store.clock.now(),
        )
        store.session.add(incident)
        await store.session.flush()
        await store.commit()
        return incident.id


async def test_each_form_offers_only_its_kind(stores: UnitOfWorkFactory, clock: FixedClock) -> None:
    d = await add_district(stores)
    collection = await add_collection_fees(stores)
    tech = await add_staff(stores, "Technician")
    async with stores() as store:
        offered = applicable_fees(await store.fee_items.active(), "HP Chromebook 11 G9", ())
        assert {f.kind for f in offered} == {"damage"}
        assert collection.charger_id not in {f.id for f in offered}
        preview = await preview_collection(
            Context(store, clock, TZ), Collections(store), tech, "LMS-0001"
        )
        assert {f.kind for f in preview.fees} == {"collection"}
        assert d.fee_screen_id not in {f.id for f in preview.fees}
        await store.commit()


async def test_an_incident_invoice_refuses_a_collection_item(
    stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    d = await add_district(stores)
    collection = await add_collection_fees(stores)
    clerk = await add_staff(stores, "Billing Clerk")
    incident_id = await _open_incident(stores, d.device_id, d.student_id)
    with pytest.raises(ValidationError, match="collection fee; an incident's invoice takes"):
        async with stores() as store:
            await create_invoice_for_incident(
                Context(store, clock, TZ),
                clerk,
                CreateInvoice(incident_id, fee_item_ids=(d.fee_screen_id, collection.charger_id)),
            )
            await store.commit()
    async with stores() as store:
        assert (await store.session.execute(select(m.Invoice))).first() is None
        await store.commit()


async def test_add_rekind_and_list_fee_items(stores: UnitOfWorkFactory, clock: FixedClock) -> None:
    await add_district(stores)
    clerk = await add_staff(stores, "Billing Clerk")
    async with stores() as store:
        ctx, items = Context(store, clock, TZ), SqlFeeItemStore.beside(store)
        item, added = await set_fee_item(
            ctx,
            items,
            clerk,
            FeeItemChange("cable", name="Charging cable", price_cents=1200, kind=FeeKind.OTHER),
        )
        assert added and item.kind == "other"
        await store.commit()
    async with stores() as store:
        ctx, items = Context(store, clock, TZ), SqlFeeItemStore.beside(store)
        item, added = await set_fee_item(
            ctx, items, clerk, FeeItemChange("cable", kind=FeeKind.COLLECTION, device_model="")
        )
        assert not added
        assert (item.kind, item.name, item.price_cents) == ("collection", "Charging cable", 1200)
        listed = await list_fee_items(items, clerk, FeeKind.COLLECTION)
        assert [i.code for i in listed] == ["cable"]
        every = await list_fee_items(items, clerk)
        assert [i.kind for i in every] == ["damage", "damage", "damage", "collection"]
        await store.commit()
    async with stores() as store:
        actions = (
            await store.session.execute(
                select(m.ActivityEntry.action, m.ActivityEntry.after).where(
                    m.ActivityEntry.entity_type == "fee_item"
                )
            )
        ).all()
        await store.commit()
    assert [a for a, _ in actions] == ["fee_item_added", "fee_item_changed"]
    assert actions[-1][1]["kind"] == "collection"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (FeeItemChange("new-one", name="Thing", price_cents=100), "needs a name, an amount"),
        (FeeItemChange("Bad Code!", kind=FeeKind.DAMAGE), "lowercase letters"),
        (FeeItemChange("screen", name="  "), "needs a name"),
        (FeeItemChange("screen", price_cents=-1), "out of range"),
    ],
)
async def test_bad_changes_change_nothing(
    stores: UnitOfWorkFactory, clock: FixedClock, change: FeeItemChange, message: str
) -> None:
    await add_district(stores)
    clerk = await add_staff(stores, "Billing Clerk")
    with pytest.raises(ValidationError, match=message):
        async with stores() as store:
            await set_fee_item(
                Context(store, clock, TZ), SqlFeeItemStore.beside(store), clerk, change
            )
            await store.commit()
    async with stores() as store:
        screen = await SqlFeeItemStore.beside(store).find_fee_item("screen")
        assert screen is not None
        assert (screen.name, screen.price_cents, screen.kind) == (
            "Screen replacement",
            12500,
            "damage",
        )
        await store.commit()


async def test_only_fee_managers_change_the_schedule(
    stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    await add_district(stores)
    tech = await add_staff(stores, "Technician")
    with pytest.raises(PermissionDenied):
        async with stores() as store:
            await set_fee_item(
                Context(store, clock, TZ),
                SqlFeeItemStore.beside(store),
                tech,
                FeeItemChange("screen", kind=FeeKind.COLLECTION),
            )
            await store.commit()


async def test_the_database_refuses_an_unknown_kind(stores: UnitOfWorkFactory) -> None:
    with pytest.raises(IntegrityError):
        async with stores() as store:
            store.session.add(m.FeeItem(code="x", name="X", kind="part", price_cents=1))
            await store.session.flush()
            await store.commit()


async def test_migration_0017_maps_the_old_kinds(database_url: str) -> None:
    await asyncio.to_thread(downgrade, database_url, "0016")
    try:
        engine = create_engine(database_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(text("DELETE FROM fee_items"))
                for code, kind in [
                    ("screen", "part"),
                    ("charger", "fine"),
                    ("collect-screen", "collection"),
                    ("tech", "Annual"),
                    ("odd", "labor"),
                ]:
                    await conn.execute(
                        text(
                            "INSERT INTO fee_items (code, name, kind, price_cents, active) "
                            "VALUES (:code, :code, :kind, 100, :active)"
                        ),
                        {"code": code, "kind": kind, "active": True},
                    )
            await asyncio.to_thread(upgrade, database_url)
            async with engine.connect() as conn:
                kinds = dict((await conn.execute(text("SELECT code, kind FROM fee_items"))).all())
                await conn.execute(text("DELETE FROM fee_items"))
                await conn.commit()
        finally:
            await engine.dispose()
    finally:
        await asyncio.to_thread(upgrade, database_url)
    assert kinds == {
        "screen": "damage",
        "charger": "damage",
        "collect-screen": "collection",
        "tech": "annual",
        "odd": "other",
    }
