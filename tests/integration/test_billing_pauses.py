"""Billing pause windows: permission, validation, no overlaps, audit, and the run honouring them.

Every case runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
from datetime import date

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from storage import models as m
from storage.uow import UnitOfWorkFactory
from tests.builders import add_staff
from tests.integration.billing_helpers import TZ, add_family, add_invoice, at_run_time, runner
from workflows.billing_pauses import add_pause, list_pauses, remove_pause
from workflows.clock import FixedClock
from workflows.errors import NotFound, PermissionDenied, ValidationError
from workflows.permissions import Actor
from workflows.ports import Context

WINTER = (date(2026, 12, 21), date(2027, 1, 1))


def ctx(store: object, clock: FixedClock) -> Context:
    return Context(store, clock, TZ)  # type: ignore[arg-type]


async def _pauses(stores: UnitOfWorkFactory) -> list[m.BillingPause]:
    async with stores() as store:
        result = list(
            (
                await store.session.execute(select(m.BillingPause).order_by(m.BillingPause.id))
            ).scalars()
        )
        await store.commit()
        return result


async def _log(stores: UnitOfWorkFactory) -> list[m.ActivityEntry]:
    async with stores() as store:
        stmt = (
            select(m.ActivityEntry)
            .where(m.ActivityEntry.entity_type == "billing_pause")
            .order_by(m.ActivityEntry.id)
        )
        result = list((await store.session.execute(stmt)).scalars())
        await store.commit()
        return result


async def test_add_list_remove_with_audit(stores: UnitOfWorkFactory, clock: FixedClock) -> None:
    director = await add_staff(stores, "Finance Director")
    async with stores() as store:
        added = await add_pause(ctx(store, clock), director, *WINTER, "  Winter   break ")
        await store.commit()
    assert added.reason == "Winter break" and added.days == 12
    assert added.describe() == f"#{added.id} 2026-12-21 to 2027-01-01 (12 days): Winter break"
    (row,) = await _pauses(stores)
    assert (row.starts_on, row.ends_on, row.created_by_id) == (*WINTER, director.staff_id)

    async with stores() as store:
        listed = await list_pauses(ctx(store, clock), director)
        await store.commit()
    assert [p.id for p in listed] == [added.id]

    async with stores() as store:
        removed = await remove_pause(ctx(store, clock), director, added.id)
        await store.commit()
    assert removed == added and await _pauses(stores) == []

    entries = await _log(stores)
    assert [(e.action, e.entity_id, e.actor_staff_id) for e in entries] == [
        ("billing_pause_added", added.id, director.staff_id),
        ("billing_pause_removed", added.id, director.staff_id),
    ]
    assert entries[0].after == {
        "starts_on": "2026-12-21",
        "ends_on": "2027-01-01",
        "reason": "Winter break",
    }
    assert entries[1].before == entries[0].after


async def test_overlaps_are_refused_and_neighbours_allowed(
    stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    system = Actor.system()
    async with stores() as store:
        first = await add_pause(ctx(store, clock), system, *WINTER, "Winter break")
        await store.commit()
    for starts, ends in [
        (date(2026, 12, 1), date(2026, 12, 21)),  # ends on its first day
        (date(2027, 1, 1), date(2027, 1, 3)),  # starts on its last day
        (date(2026, 12, 24), date(2026, 12, 26)),  # inside
        (date(2026, 12, 1), date(2027, 2, 1)),  # around
    ]:
        async with stores() as store:
            with pytest.raises(ValidationError, match=f"overlaps the pause #{first.id}") as exc:
                await add_pause(ctx(store, clock), system, starts, ends, "Another")
            await store.commit()
        assert exc.value.field == "starts_on"
    async with stores() as store:
        await add_pause(ctx(store, clock), system, date(2026, 12, 14), date(2026, 12, 20), "Before")
        await add_pause(ctx(store, clock), system, date(2027, 1, 2), date(2027, 1, 2), "After")
        await store.commit()
    assert len(await _pauses(stores)) == 3
    # A system actor (the command line, the automation) has no staff row.
    assert {e.actor_staff_id for e in await _log(stores)} == {None}


@pytest.mark.parametrize(
    ("starts", "ends", "reason", "message"),
    [
        (date(2027, 1, 1), date(2026, 12, 21), "Winter break", "end on or after"),
        (date(2026, 6, 1), date(2026, 10, 1), "Summer", "at most 120 days"),
        (*WINTER, "   ", "Say what the pause is for"),
        (*WINTER, "x" * 201, "under 200 characters"),
    ],
)
async def test_invalid_windows_write_nothing(
    stores: UnitOfWorkFactory,
    clock: FixedClock,
    starts: date,
    ends: date,
    reason: str,
    message: str,
) -> None:
    async with stores() as store:
        with pytest.raises(ValidationError, match=message):
            await add_pause(ctx(store, clock), Actor.system(), starts, ends, reason)
        await store.commit()
    assert await _pauses(stores) == [] and await _log(stores) == []


async def test_only_manage_settings(stores: UnitOfWorkFactory, clock: FixedClock) -> None:
    clerk = await add_staff(stores, "Billing Clerk")
    async with stores() as store:
        added = await add_pause(ctx(store, clock), Actor.system(), *WINTER, "Winter break")
        await store.commit()
    async with stores() as store:
        with pytest.raises(PermissionDenied, match="Manage Settings"):
            await add_pause(ctx(store, clock), clerk, date(2027, 3, 1), date(2027, 3, 5), "Spring")
        with pytest.raises(PermissionDenied):
            await remove_pause(ctx(store, clock), clerk, added.id)
        with pytest.raises(PermissionDenied):
            await list_pauses(ctx(store, clock), clerk)
        await store.commit()
    assert len(await _pauses(stores)) == 1


async def test_removing_an_unknown_pause(stores: UnitOfWorkFactory, clock: FixedClock) -> None:
    async with stores() as store:
        with pytest.raises(NotFound, match="no billing pause #42"):
            await remove_pause(ctx(store, clock), Actor.system(), 42)
        await store.commit()


async def test_listing_leaves_out_past_pauses_unless_asked(
    stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    system = Actor.system()
    clock.set(at_run_time(date(2026, 3, 2)))
    async with stores() as store:
        c = ctx(store, clock)
        await add_pause(c, system, date(2026, 2, 16), date(2026, 2, 20), "Mid-winter break")
        await add_pause(c, system, date(2026, 3, 2), date(2026, 3, 6), "This week")
        await add_pause(c, system, *WINTER, "Winter break")
        await store.commit()
    async with stores() as store:
        coming = await list_pauses(ctx(store, clock), system)
        everything = await list_pauses(ctx(store, clock), system, include_past=True)
        await store.commit()
    assert [p.reason for p in coming] == ["This week", "Winter break"]
    assert [p.reason for p in everything] == ["Mid-winter break", "This week", "Winter break"]


async def test_two_overlapping_pauses_added_at_once(
    stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    async def add(reason: str, starts: date, ends: date) -> str:
        try:
            async with stores() as store:
                await add_pause(ctx(store, clock), Actor.system(), starts, ends, reason)
                # Both transactions are open at once before either commits.
                await asyncio.sleep(0.05)
                await store.commit()
        except ValidationError:
            return "refused"
        return "added"

    results = await asyncio.gather(
        add("Winter break", *WINTER), add("Holidays", date(2026, 12, 24), date(2027, 1, 3))
    )
    assert sorted(results) == ["added", "refused"]
    assert len(await _pauses(stores)) == 1


async def test_the_run_honours_a_pause_added_here(
    engine: AsyncEngine, stores: UnitOfWorkFactory, clock: FixedClock
) -> None:
    (student,), _ = await add_family(stores, "Okafor")
    # The 14-day reminder falls on 2026-03-18, inside the pause; the 7-day one after it.
    invoice_id = await add_invoice(stores, student, created=date(2026, 1, 1), due=date(2026, 4, 1))
    async with stores() as store:
        await add_pause(
            ctx(store, clock), Actor.system(), date(2026, 3, 16), date(2026, 3, 20), "Spring"
        )
        await store.commit()
    day = date(2026, 3, 18)
    clock.set(at_run_time(day))
    paused = await runner(engine, clock).run(day)
    assert paused.ran and paused.totals is not None and paused.totals.paused
    preview = await runner(engine, clock).run(date(2026, 3, 25), dry_run=True)
    assert [(p.invoice_id, p.step) for p in preview.planned] == [(invoice_id, "pre_due_7")]
